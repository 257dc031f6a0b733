"""The alicloud plugin's secondary ENIs, their attachments and route entries without a kernel: Check (aliases,
field-named errors, refused arguments) and Diff (what replaces)."""

from __future__ import annotations

from acklab.provider.base import Context
from acklab.provider.ecs import EcsNetworkInterface, EcsNetworkInterfaceAttachment
from acklab.provider.vpc import RouteEntry
from acklab.provider.wire import UNKNOWN


def check(kind, news: dict) -> tuple[dict, dict[str, str]]:
    inputs, found = kind.check(Context(lab="lab1", name="x", region="cn-hangzhou", label=f"{kind.label} 'x'"), news)
    return inputs, {f.field: f.reason for f in found}


def failures(kind, news: dict) -> dict[str, str]:
    return check(kind, news)[1]


ENI = {"vswitch_id": "vsw-0123abcd", "security_group_ids": ["sg-0123abcd"]}


def test_eni_deprecated_aliases_fill_the_current_arguments():
    inputs, found = check(EcsNetworkInterface(), {"vswitch_id": "vsw-0123abcd", "security_groups": ["sg-0123abcd"],
                                                  "private_ip": "10.0.0.5", "private_ips_count": 2, "name": "pods"})
    assert found == {}
    assert (inputs["security_group_ids"], inputs["primary_ip_address"], inputs["secondary_private_ip_address_count"],
            inputs["network_interface_name"]) == (["sg-0123abcd"], "10.0.0.5", 2, "pods")


def test_eni_errors_name_the_field():
    assert failures(EcsNetworkInterface(), {}) == {"vswitch_id": "is required"}
    assert failures(EcsNetworkInterface(), {**ENI, "primary_ip_address": "10.0.0"}) == {
        "primary_ip_address": "'10.0.0' is not an IPv4 address"}
    assert failures(EcsNetworkInterface(), {**ENI, "private_ip_addresses": ["10.0.0.5", "10.0.0.5"]}) == {
        "private_ip_addresses": "an address is listed twice"}
    assert "at most 5" in failures(EcsNetworkInterface(), {**ENI, "security_group_ids": [
        f"sg-0000000{i}" for i in range(6)]})["security_group_ids"]
    assert "IPv4 only" in failures(EcsNetworkInterface(), {**ENI, "ipv6_address_count": 1})["ipv6_address_count"]
    assert "kernel keeps at most 255" in failures(EcsNetworkInterface(), {**ENI, "secondary_private_ip_address_count":
                                                                          20})["secondary_private_ip_address_count"]
    assert failures(EcsNetworkInterface(), {"vswitch_id": UNKNOWN, "security_group_ids": [UNKNOWN]}) == {}


def test_eni_diff():
    kind = EcsNetworkInterface()
    olds, _ = check(kind, ENI)
    state = kind.state({**olds, "primary_ip_address": "10.0.0.1", "private_ip": "10.0.0.1",
                        "private_ip_addresses": [], "secondary_private_ip_address_count": 0, "status": "Available"})
    assert kind.diff(state, check(kind, ENI)[0]).changed == ()  # the allocated address left out again: no change
    assert kind.diff(state, check(kind, {**ENI, "description": "d"})[0]).replaces == ()
    assert kind.diff(state, check(kind, {**ENI, "security_group_ids": ["sg-4567abcd"]})[0]).replaces == (
        "security_group_ids",)
    assert kind.diff(state, check(kind, {**ENI, "secondary_private_ip_address_count": 2})[0]).replaces == (
        "secondary_private_ip_address_count",)


def test_attachment():
    kind = EcsNetworkInterfaceAttachment()
    assert set(failures(kind, {})) == {"instance_id", "network_interface_id"}
    assert "not a network interface id" in failures(kind, {"instance_id": "i-0123abcd",
                                                            "network_interface_id": "i-0123abcd"})[
        "network_interface_id"]
    assert "trunk ENIs" in failures(kind, {"instance_id": "i-0123abcd", "network_interface_id": "eni-0123abcd",
                                           "trunk_network_instance_id": "eni-4567abcd"})["trunk_network_instance_id"]
    olds = kind.state({"instance_id": "i-0123abcd", "network_interface_id": "eni-0123abcd"})
    assert kind.diff(olds, {"instance_id": "i-4567abcd", "network_interface_id": "eni-0123abcd"}).replaces == (
        "instance_id",)


ROUTE = {"route_table_id": "vtb-0123abcd", "destination_cidrblock": "10.244.1.0/24", "nexthop_id": "i-0123abcd"}


def test_route_entry():
    inputs, found = check(RouteEntry(), ROUTE)
    assert found == {} and inputs["nexthop_type"] == "Instance"
    assert failures(RouteEntry(), {**ROUTE, "destination_cidrblock": "10.244.1.1/24"})["destination_cidrblock"] \
        .endswith("is not an IPv4 CIDR block (host bits must be zero)")
    assert "the lab is sealed" in failures(RouteEntry(), {**ROUTE, "destination_cidrblock": "0.0.0.0/0"})[
        "destination_cidrblock"]
    assert "only the Instance next hop" in failures(RouteEntry(), {**ROUTE, "nexthop_type": "VpnGateway"})[
        "nexthop_type"]
    assert "not a route table id" in failures(RouteEntry(), {**ROUTE, "route_table_id": "vpc-0123abcd"})[
        "route_table_id"]
    found = failures(RouteEntry(), {"route_table_id": "vtb-0123abcd"})
    assert set(found) == {"destination_cidrblock", "nexthop_id"} and found["nexthop_id"].startswith(
        "is required by acklab")
    state = RouteEntry().state({**inputs, "router_id": "vrt-0123abcd"})
    assert RouteEntry().diff(state, check(RouteEntry(), ROUTE)[0]).changed == ()
    assert RouteEntry().diff(state, check(RouteEntry(), {**ROUTE, "nexthop_id": "i-4567abcd"})[0]).replaces == (
        "nexthop_id",)
    assert RouteEntry().diff(state, check(RouteEntry(), {**ROUTE, "description": "pods"})[0]).replaces == ()


def test_eip_address():
    from acklab.provider.ecs import EipAddress

    inputs, found = check(EipAddress(), {"name": "web", "instance_charge_type": "PostPaid"})
    assert found == {}
    assert (inputs["address_name"], inputs["payment_type"], inputs["internet_charge_type"], inputs["bandwidth"]) == (
        "web", "PayAsYouGo", "PayByBandwidth", "5")
    assert "from 203.0.113.10 to 203.0.113.250" in failures(EipAddress(), {"ip_address": "8.8.8.8"})["ip_address"]
    assert failures(EipAddress(), {"bandwidth": "300", "internet_charge_type": "PayByTraffic"}) == {
        "bandwidth": "'300' is not a whole number of Mbit/s from 1 to 200"}
    assert "paid by bandwidth" in failures(EipAddress(), {"payment_type": "Subscription",
                                                          "internet_charge_type": "PayByTraffic"})[
        "internet_charge_type"]
    assert "not one of BGP" in failures(EipAddress(), {"isp": "Dialup"})["isp"]
    assert "public" in failures(EipAddress(), {"netmode": "private"})["netmode"]
    state = EipAddress().state({**inputs, "ip_address": "203.0.113.10", "status": "Available"})
    assert EipAddress().diff(state, check(EipAddress(), {"name": "web", "instance_charge_type": "PostPaid"})[0]) \
        .changed == ()  # the allocated address left out again
    assert EipAddress().diff(state, check(EipAddress(), {"address_name": "web", "bandwidth": "10"})[0]).replaces == ()
    assert EipAddress().diff(state, check(EipAddress(), {"ip_address": "203.0.113.20"})[0]).replaces == (
        "ip_address",)


def test_eip_association():
    from acklab.provider.ecs import EipAssociation

    inputs, found = check(EipAssociation(), {"allocation_id": "eip-0123abcd", "instance_id": "i-0123abcd"})
    assert found == {} and (inputs["instance_type"], inputs["mode"]) == ("EcsInstance", "NAT")
    assert set(failures(EipAssociation(), {})) == {"allocation_id", "instance_id"}
    assert "not an EIP id" in failures(EipAssociation(), {"allocation_id": "eip-1", "instance_id": "i-0123abcd"})[
        "allocation_id"]
    assert "ECS instances, NAT gateways and intranet SLBs only" in failures(EipAssociation(), {
        "allocation_id": "eip-0123abcd", "instance_id": "i-0123abcd", "instance_type": "HaVip"})["instance_type"]
    assert failures(EipAssociation(), {"allocation_id": UNKNOWN, "instance_id": UNKNOWN}) == {}
