"""The alicloud plugin's Check: bad input that a resource's own arguments decide is refused at preview, one
failure per field, naming the field as the program spells it; defaults are filled in; unknowns pass."""

from __future__ import annotations

import pytest

from acklab.provider.base import Context
from acklab.provider.ecs import Instance, SecurityGroup, SecurityGroupRule, user_data_script
from acklab.provider.vpc import Network, Switch
from acklab.provider.wire import UNKNOWN


def ctx(label: str) -> Context:
    return Context(lab="lab1", name=label.split("'")[1], region="cn-hangzhou", label=label)


def failures(kind, news: dict) -> dict[str, str]:
    _, found = kind.check(ctx(f"{kind.label} 'x'"), news)
    return {f.field: f.reason for f in found}


def test_valid_inputs_pass_and_get_the_sdk_defaults():
    inputs, found = Network().check(ctx("vpc.Network 'vpc'"), {"vpc_name": "lab"})
    assert found == [] and inputs["cidr_block"] == "172.16.0.0/12"  # Alibaba's block for a VPC given none
    inputs, found = SecurityGroup().check(ctx("ecs.SecurityGroup 'g'"), {"vpc_id": "vpc-0123abcd"})
    assert found == []
    assert (inputs["security_group_type"], inputs["inner_access_policy"]) == ("normal", "Accept")
    inputs, _ = SecurityGroup().check(ctx("ecs.SecurityGroup 'g'"), {"vpc_id": "vpc-0123abcd",
                                                                     "security_group_type": "enterprise"})
    assert inputs["inner_access_policy"] == "Drop"
    inputs, _ = SecurityGroup().check(ctx("ecs.SecurityGroup 'g'"), {"vpc_id": "vpc-0123abcd", "inner_access": False})
    assert inputs["inner_access_policy"] == "Drop"  # the deprecated bool says the same
    inputs, found = SecurityGroupRule().check(ctx("ecs.SecurityGroupRule 'r'"), {
        "security_group_id": "sg-0123abcd", "type": "ingress", "ip_protocol": "icmp", "cidr_ip": "10.0.0.0/8"})
    assert found == [] and (inputs["policy"], inputs["priority"], inputs["port_range"]) == ("accept", 1, "-1/-1")


def test_own_input_errors_name_the_field():
    assert failures(Network(), {"cidr_block": "10.0.0.0/33"})["cidr_block"].startswith("'10.0.0.0/33' is not a CIDR")
    assert "not inside 10.0.0.0/8" in failures(Network(), {"cidr_block": "8.8.0.0/16"})["cidr_block"]
    found = failures(Switch(), {"vpc_id": "vpc-0123abcd", "cidr_block": "10.0.0.0/8", "zone_id": "cn-beijing-a"})
    assert "prefix length /8" in found["cidr_block"]
    assert found["zone_id"] == "'cn-beijing-a' is not a zone of region cn-hangzhou (cn-hangzhou-a ... cn-hangzhou-k)"
    rule = {"security_group_id": "sg-0123abcd", "type": "ingress", "ip_protocol": "tcp", "cidr_ip": "0.0.0.0/0"}
    assert failures(SecurityGroupRule(), {**rule, "port_range": "90/80"}) == {
        "port_range": "90/80: the start port is after the end port"}
    found = failures(SecurityGroupRule(), {**rule, "port_range": "80/80", "priority": 101})
    assert "from 1 to 100" in found["priority"]
    found = failures(SecurityGroupRule(), {**rule, "ip_protocol": "gre"})
    assert "not one of tcp, udp, icmp, all" in found["ip_protocol"]
    assert "enterprise" in failures(SecurityGroup(), {"vpc_id": "vpc-0123abcd", "security_group_type": "enterprise",
                                                      "inner_access_policy": "Accept"})["inner_access_policy"]


def test_instance_checks():
    base = {"vswitch_id": "vsw-0123abcd"}
    assert failures(Instance(), {**base, "private_ip": "10.0.0.300"}) == {
        "private_ip": "'10.0.0.300' is not an IPv4 address"}
    assert "2-64 letters" in failures(Instance(), {**base, "host_name": "-bad"})["host_name"]
    assert "at most 5" in failures(Instance(), {**base, "security_groups": [f"sg-0000000{i}" for i in range(6)]})[
        "security_groups"]
    assert "listed twice" in failures(Instance(), {**base, "secondary_private_ips": ["10.0.0.5", "10.0.0.5"]})[
        "secondary_private_ips"]
    found = failures(Instance(), {**base, "availability_zone": "us-west-1a"})
    assert "not a zone of region" in found["availability_zone"]
    assert "only Running" in failures(Instance(), {**base, "status": "Stopped"})["status"]


def test_required_arguments_the_sdk_and_the_lab_require():
    found = failures(SecurityGroupRule(), {"ip_protocol": "tcp"})
    assert (found["security_group_id"], found["type"]) == ("is required", "is required")
    assert failures(Instance(), {}) == {
        "vswitch_id": "is required by acklab: an instance's primary ENI sits on a vSwitch (VPC instances only)"}
    found = failures(Switch(), {})
    assert set(found) == {"vpc_id", "cidr_block", "zone_id"}
    assert found["zone_id"].startswith("is required")
    assert Switch().check(ctx("vpc.Switch 'x'"), {"vpc_id": "vpc-0123abcd", "cidr_block": "10.0.1.0/24",
                                                   "availability_zone": "cn-hangzhou-b"})[1] == []  # the alias


def test_accepted_but_not_realized_and_refused_arguments():
    kept = {"vswitch_id": "vsw-0123abcd", "image_id": "ubuntu_22_04_x64_20G_alibase_20240101.vhd",
            "instance_type": "ecs.g7.large", "instance_charge_type": "PrePaid", "period": 1,
            "data_disks": [{"size": 20, "category": "cloud_essd"}], "password": "secret", "system_disk_size": 100}
    inputs, found = Instance().check(ctx("ecs.Instance 'x'"), kept)
    assert found == [] and inputs["data_disks"] == kept["data_disks"]
    assert "IPv4 only" in failures(Network(), {"enable_ipv6": True})["enable_ipv6"]
    assert "not supported" in failures(Network(), {"secondary_cidr_blocks": ["10.1.0.0/16"]})["secondary_cidr_blocks"]
    assert "IPv4 only" in failures(SecurityGroupRule(), {
        "security_group_id": "sg-0123abcd", "type": "ingress", "ip_protocol": "tcp", "port_range": "80/80",
        "ipv6_cidr_ip": "::/0"})["ipv6_cidr_ip"]


def test_references_must_be_acklab_ids_of_the_right_kind():
    found = failures(Instance(), {"vswitch_id": "vsw-0123456789abcdef", "security_groups": ["vpc-0123abcd"]})
    assert "a Linux interface name has at most 15" in found["vswitch_id"]
    assert "is not a security group id" in found["security_groups"]


def test_values_unknown_in_a_preview_are_not_judged():
    assert failures(Switch(), {"vpc_id": UNKNOWN, "cidr_block": UNKNOWN, "zone_id": UNKNOWN}) == {}
    assert failures(Instance(), {"vswitch_id": UNKNOWN, "security_groups": [UNKNOWN], "private_ip": UNKNOWN}) == {}
    assert failures(SecurityGroupRule(), {"security_group_id": UNKNOWN, "type": "ingress", "ip_protocol": "tcp",
                                          "port_range": "80/80", "source_security_group_id": UNKNOWN}) == {}
    # a peer group still unknown: the rest of the rule is still judged
    assert "port_range" in failures(SecurityGroupRule(), {"security_group_id": UNKNOWN, "type": "ingress",
                                                          "ip_protocol": "tcp", "port_range": "0/80",
                                                          "source_security_group_id": UNKNOWN})


@pytest.mark.parametrize(("given", "script"), [("#!/bin/sh\necho hi\n", "#!/bin/sh\necho hi\n"),
                                               ("IyEvYmluL3NoCmVjaG8gaGkK", "#!/bin/sh\necho hi\n"), (None, "")])
def test_user_data_plain_or_base64(given, script):
    assert user_data_script(given) == script
