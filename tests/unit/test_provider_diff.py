"""What a change of each argument does: update in place, replace, or nothing."""

from netns.ecs import InstanceProvider
from netns.vpc import NetworkProvider, SwitchProvider

BASE_ECS = {"lab": "l", "vswitch_id": "vsw-00000001", "private_ip": "10.0.0.1", "instance_type": "ecs.g7.large",
            "image_id": None, "instance_name": "a", "description": None, "tags": None}


def test_same_inputs_are_no_change():
    diff = InstanceProvider().diff("i-1", {**BASE_ECS, "netns": "x"}, dict(BASE_ECS))
    assert not diff.changes
    assert diff.replaces == []


def test_allocated_ip_left_out_again_is_no_change():
    diff = InstanceProvider().diff("i-1", dict(BASE_ECS), {**BASE_ECS, "private_ip": None})
    assert not diff.changes


def test_name_change_is_in_place():
    diff = InstanceProvider().diff("i-1", dict(BASE_ECS), {**BASE_ECS, "instance_name": "b"})
    assert diff.changes
    assert diff.replaces == []


def test_moving_vswitch_or_ip_replaces():
    provider = InstanceProvider()
    assert provider.diff("i", dict(BASE_ECS), {**BASE_ECS, "vswitch_id": "vsw-2"}).replaces == ["vswitch_id"]
    assert provider.diff("i", dict(BASE_ECS), {**BASE_ECS, "private_ip": "10.0.0.2"}).replaces == ["private_ip"]


def test_vpc_cidr_change_replaces_and_name_does_not():
    olds = {"lab": "l", "cidr_block": "10.0.0.0/16", "vpc_name": "a", "description": None, "tags": None}
    assert NetworkProvider().diff("v", olds, {**olds, "cidr_block": "10.1.0.0/16"}).replaces == ["cidr_block"]
    assert NetworkProvider().diff("v", olds, {**olds, "vpc_name": "b"}).replaces == []


def test_check_reports_the_field():
    result = SwitchProvider().check({}, {"__name": "s", "cidr_block": "10.0.0.0/8"})
    assert [f.property for f in result.failures] == ["cidr_block"]
    assert "prefix length" in result.failures[0].reason
