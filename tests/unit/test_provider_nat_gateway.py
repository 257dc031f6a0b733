"""vpc.NatGateway, vpc.SnatEntry and ecs.EipAssociation to a NAT gateway in the alicloud plugin's Check: the SDK's
defaults, field-named errors for what the arguments alone decide, unknowns passing, the SDK example's shape."""

from __future__ import annotations

import ipaddress

import pytest

from acklab.provider.base import Context
from acklab.provider.ecs import EipAssociation
from acklab.provider.vpc import NatGateway, SnatEntry
from acklab.provider.wire import UNKNOWN
from netns.model import names
from netns.model import nat_gateway as model
from netns.model.errors import ValidationError


def check(kind, news: dict) -> tuple[dict, dict[str, str]]:
    inputs, found = kind.check(Context("lab1", "x", "cn-hangzhou", f"{kind.label} 'x'"), news)
    return inputs, {f.field: f.reason for f in found}


def test_a_nat_gateway_gets_the_sdk_defaults_and_its_tables():
    inputs, found = check(NatGateway(), {"vpc_id": "vpc-0123abcd", "vswitch_id": "vsw-0123abcd", "name": "gw"})
    assert found == {}
    assert (inputs["nat_type"], inputs["payment_type"], inputs["network_type"], inputs["nat_gateway_name"]) == (
        "Enhanced", "PayAsYouGo", "internet", "gw")
    assert model.snat_table_id("ngw-0123abcd") == "stb-0123abcd"
    assert model.ngw_of_snat_table("stb-0123abcd") == "ngw-0123abcd"
    assert model.router_table("ngw-00000000") == 1 << 31 and model.router_table("ngw-ffffffff") < 1 << 32


def test_nat_gateway_errors_name_the_field():
    _, found = check(NatGateway(), {"vpc_id": "vpc-0123abcd", "nat_type": "Normal", "network_type": "intranet",
                                    "specification": "Huge", "vswitch_id": "vsw-x"})
    assert "Enhanced" in found["nat_type"] and "intranet" in found["network_type"]
    assert "not one of Small" in found["specification"] and "vSwitch id" in found["vswitch_id"]
    _, found = check(NatGateway(), {"vpc_id": "vpc-0123abcd"})
    assert "required by acklab" in found["vswitch_id"]


def test_snat_entry_errors_name_the_field():
    base = {"snat_table_id": "stb-0123abcd", "snat_ip": "203.0.113.10"}
    assert check(SnatEntry(), {**base, "source_vswitch_id": "vsw-0123abcd"})[1] == {}
    assert "not both" in check(SnatEntry(), {**base, "source_vswitch_id": "vsw-0123abcd",
                                             "source_cidr": "192.168.0.0/24"})[1]["source_cidr"]
    assert "is required (or source_cidr)" in check(SnatEntry(), base)[1]["source_vswitch_id"]
    assert "not an IPv4 CIDR" in check(SnatEntry(), {**base, "source_cidr": "192.168.0.0/33"})[1]["source_cidr"]
    # a SNAT address pool: accepted, kept as Alibaba spells it; a bad or repeated member is named
    inputs, found = check(SnatEntry(), {**base, "snat_ip": "203.0.113.10, 203.0.113.11",
                                        "source_cidr": "192.168.0.0/24"})
    assert found == {} and inputs["snat_ip"] == "203.0.113.10,203.0.113.11"
    assert "'203.0.113.x' is not an IPv4 address (in" in check(SnatEntry(), {
        **base, "snat_ip": "203.0.113.10,203.0.113.x", "source_cidr": "192.168.0.0/24"})[1]["snat_ip"]
    assert "203.0.113.10 is given more than once" in check(SnatEntry(), {
        **base, "snat_ip": "203.0.113.10,203.0.113.10", "source_cidr": "192.168.0.0/24"})[1]["snat_ip"]
    six = ",".join(f"203.0.113.{100 + i}" for i in range(6))
    assert "at most 5" in check(SnatEntry(), {**base, "snat_ip": six, "source_cidr": "192.168.0.0/24"})[1]["snat_ip"]
    assert "SNAT table id" in check(SnatEntry(), {**base, "snat_table_id": "ngw-0123abcd",
                                                  "source_cidr": "192.168.0.0/24"})[1]["snat_table_id"]
    # still unknown in a preview (the SDK's example passes nat_gateway.snat_table_ids and eip.ip_address)
    assert check(SnatEntry(), {"snat_table_id": UNKNOWN, "snat_ip": UNKNOWN, "source_vswitch_id": UNKNOWN})[1] == {}


def test_snat_ip_and_source_against_the_gateway():
    bound = {"203.0.113.10": "eip-00000001"}
    assert model.check_snat_ip("s", "203.0.113.10", bound, "ngw-00000001") == (ipaddress.IPv4Address("203.0.113.10"),)
    with pytest.raises(ValidationError, match=r"snat_ip: 203\.0\.113\.11 is not an EIP bound to NAT gateway ngw-"):
        model.check_snat_ip("s", "203.0.113.11", bound, "ngw-00000001")
    with pytest.raises(ValidationError, match=r"snat_ip: 203\.0\.113\.11 is not an EIP bound to NAT gateway ngw-"):
        model.check_snat_ip("s", "203.0.113.10,203.0.113.11", bound, "ngw-00000001")  # a pool: every member bound
    with pytest.raises(ValidationError, match=r"source_cidr: 10\.0\.0\.0/24 is not inside the VPC"):
        model.check_source_cidr("s", "10.0.0.0/24", ipaddress.IPv4Network("192.168.0.0/16"))
    rule = model.SnatRule("snat-00000001", ipaddress.IPv4Network("192.168.1.0/24"),
                          (ipaddress.IPv4Address("203.0.113.10"),), "vsw-00000001")
    assert model.SnatRule.parse(rule.comment()) == rule and len(rule.comment()) <= model.COMMENT_MAX
    assert 'snat to 203.0.113.10 comment "snat-00000001' in model.add_rule_text(rule)
    assert not rule.pool and rule.snat_ip == "203.0.113.10"


def test_a_snat_pool_spreads_connections_over_its_eips_legs():
    a, b = ipaddress.IPv4Address("203.0.113.10"), ipaddress.IPv4Address("203.0.113.11")
    rule = model.SnatRule("snat-00000002", ipaddress.IPv4Network("192.168.1.0/24"), (a, b))
    assert rule.pool and rule.snat_ip == "203.0.113.10,203.0.113.11"
    assert model.SnatRule.parse(rule.comment()) == rule
    text = model.add_rule_text(rule, {a: 10005, b: 10007})
    # a new connection takes one leg's table as its mark; its packets carry it; the SNAT takes that leg's address
    assert "ip saddr 192.168.1.0/24 ct state new ct mark set numgen random mod 2 map { 0 : 10005, 1 : 10007 }" in text
    assert "ip saddr 192.168.1.0/24 ct direction original ct mark != 0 meta mark set ct mark" in text
    assert 'oifname "eip-*" snat ip to ct mark map { 10005 : 203.0.113.10, 10007 : 203.0.113.11 }' in text
    assert text.count(f'comment "{rule.comment()}"') == 3
    with pytest.raises(ValueError, match="a leg per address"):
        model.add_rule_text(rule, {a: 10005})
    # the DNAT replies' mark is not copied onto packets coming in by a leg (a pool's replies go to the VPC)
    assert 'ct direction reply ct mark != 0 iifname != "eip-*" meta mark set ct mark' in model.dnat_chains_text()


def test_an_eip_bound_to_a_nat_gateway_by_its_id_alone():
    inputs, found = check(EipAssociation(), {"allocation_id": "eip-0123abcd", "instance_id": "ngw-0123abcd"})
    assert found == {} and inputs["instance_type"] == "Nat"
    inputs, found = check(EipAssociation(), {"allocation_id": "eip-0123abcd", "instance_id": "i-0123abcd"})
    assert found == {} and inputs["instance_type"] == "EcsInstance"
    _, found = check(EipAssociation(), {"allocation_id": "eip-0123abcd", "instance_id": "i-0123abcd",
                                        "instance_type": "Nat"})
    assert "not a NAT gateway id" in found["instance_id"]
    inputs, found = check(EipAssociation(), {"allocation_id": "eip-0123abcd", "instance_id": "lb-0123abcd"})
    assert found == {} and inputs["instance_type"] == "SlbInstance"  # an intranet SLB's (ACK's API server's)
    _, found = check(EipAssociation(), {"allocation_id": "eip-0123abcd", "instance_id": "i-0123abcd",
                                        "instance_type": "SlbInstance"})
    assert "not a load balancer id" in found["instance_id"]
    _, found = check(EipAssociation(), {"allocation_id": "eip-0123abcd", "instance_id": "i-0123abcd",
                                        "instance_type": "HaVip"})
    assert "NAT gateways and intranet SLBs only" in found["instance_type"]


def test_ngw_is_a_cloud_id_acklab_cleans():
    ngw = names.new_id("ngw")
    assert names.is_any_cloud_id(ngw) and names.lab_of(names.netns_name("lab1", ngw)) == "lab1"
    assert names.is_any_cloud_id(names.new_id("snat"))
