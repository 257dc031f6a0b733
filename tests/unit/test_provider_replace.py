"""The alicloud plugin's Diff: which argument changes replace the object, which are updated in place, and which
are no change at all (values the provider fills in, aliases, empty lists)."""

from __future__ import annotations

from acklab.provider.base import Context
from acklab.provider.ecs import Instance, SecurityGroup, SecurityGroupRule
from acklab.provider.vpc import Network, Switch
from acklab.provider.wire import UNKNOWN

CTX = Context(lab="lab1", name="x", region="cn-hangzhou", label="x")


def checked(kind, news: dict) -> dict:
    inputs, failures = kind.check(CTX, news)
    assert failures == []
    return inputs


# The state a create recorded: the inputs, plus what the provider filled in.
INSTANCE_INPUTS = {"vswitch_id": "vsw-0123abcd", "instance_type": "ecs.g7.large", "image_id": "img-1",
                   "security_groups": ["sg-0123abcd"], "instance_name": "web"}
INSTANCE_STATE = Instance().state({**INSTANCE_INPUTS, "private_ip": "10.0.0.1", "primary_ip_address": "10.0.0.1",
                                   "network_interface_id": "eni-0123abcd", "vpc_id": "vpc-0123abcd",
                                   "availability_zone": "cn-hangzhou-a", "secondary_private_ips": [],
                                   "status": "Running", "instance_charge_type": "PostPaid",
                                   "secondary_private_ip_address_count": 0, "password": None})


def instance_diff(**changes):
    return Instance().diff(INSTANCE_STATE, checked(Instance(), {**INSTANCE_INPUTS, **changes}))


def test_the_same_program_again_is_no_change():
    assert instance_diff().changed == ()
    state = Network().state({"cidr_block": "10.0.0.0/16", "vpc_name": "a", "name": "a", "status": "Available"})
    assert Network().diff(state, checked(Network(), {"cidr_block": "10.0.0.0/16", "vpc_name": "a"})).changed == ()
    state = Switch().state({"vpc_id": "vpc-0123abcd", "cidr_block": "10.0.1.0/24", "zone_id": "cn-hangzhou-a",
                            "availability_zone": "cn-hangzhou-a"})
    news = checked(Switch(), {"vpc_id": "vpc-0123abcd", "cidr_block": "10.0.1.0/24",
                              "availability_zone": "cn-hangzhou-a"})
    assert Switch().diff(state, news).changed == ()  # the deprecated alias names the same zone


def test_in_place_changes():
    for change in ({"instance_name": "web2"}, {"security_groups": ["sg-0123abcd", "sg-4567abcd"]},
                   {"image_id": "img-2"}, {"instance_type": "ecs.g7.xlarge"}, {"description": "d"},
                   {"instance_charge_type": "PrePaid"}):
        diff = instance_diff(**change)
        assert diff.changed == tuple(change) and diff.replaces == (), change


def test_changes_that_replace():
    assert instance_diff(vswitch_id="vsw-4567abcd").replaces == ("vswitch_id",)
    assert instance_diff(private_ip="10.0.0.9").replaces == ("private_ip",)
    assert instance_diff(host_name="web-2").replaces == ("host_name",)
    assert instance_diff(user_data="echo hi").replaces == ("user_data",)
    olds = Network().state({"cidr_block": "10.0.0.0/16"})
    assert Network().diff(olds, checked(Network(), {"cidr_block": "10.1.0.0/16"})).replaces == ("cidr_block",)
    assert Network().diff(olds, checked(Network(), {"cidr_block": "10.0.0.0/16", "vpc_name": "b"})).replaces == ()
    group = {"vpc_id": "vpc-0123abcd", "security_group_type": "normal", "inner_access_policy": "Accept"}
    olds = SecurityGroup().state(group)
    assert SecurityGroup().diff(olds, checked(SecurityGroup(), {**group, "inner_access_policy": "Drop"})) \
        .replaces == ()  # re-applied in place
    assert SecurityGroup().diff(olds, checked(SecurityGroup(), {**group, "vpc_id": "vpc-4567abcd"})).replaces == \
        ("vpc_id",)
    rule = {"security_group_id": "sg-0123abcd", "type": "ingress", "ip_protocol": "tcp", "port_range": "80/80",
            "cidr_ip": "10.0.0.0/8", "policy": "accept", "priority": 1}
    olds = SecurityGroupRule().state({**rule, "nic_type": "intranet", "security_group_rule_id": "sgr-0123abcd"})
    assert SecurityGroupRule().diff(olds, checked(SecurityGroupRule(), rule)).changed == ()
    assert SecurityGroupRule().diff(olds, checked(SecurityGroupRule(), {**rule, "port_range": "81/81"})).replaces \
        == ("port_range",)
    assert SecurityGroupRule().diff(olds, checked(SecurityGroupRule(), {**rule, "description": "d"})).replaces == ()


def test_a_value_unknown_in_a_preview_may_be_a_change():
    diff = instance_diff(vswitch_id=UNKNOWN)
    assert diff.replaces == ("vswitch_id",)


def test_update_keeps_what_the_provider_filled_in():
    merged = Instance().merged(INSTANCE_STATE, checked(Instance(), {**INSTANCE_INPUTS, "instance_name": "web2"}))
    assert merged["instance_name"] == "web2"
    assert (merged["private_ip"], merged["network_interface_id"]) == ("10.0.0.1", "eni-0123abcd")
