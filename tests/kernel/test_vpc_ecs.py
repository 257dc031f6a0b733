"""VPC, vSwitch and ECS realizations on the real kernel (no Pulumi): connectivity, addressing, removal."""

from __future__ import annotations

import ipaddress

import pytest

from netns.kernel.namespace import list_namespaces
from netns.model.errors import NotFoundError, ValidationError
from netns.model.names import mark
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch, find_vswitch
from tests.labtools import TcpServer, ping, tcp_greeting

pytestmark = pytest.mark.kernel

N = ipaddress.IPv4Network


def build(lab: str):
    router = VpcRouter(lab, "vpc-00000001")
    router.create(N("192.168.0.0/16"))
    sw_h = VSwitch(router, "vsw-0000000a")
    sw_h.create(N("192.168.1.0/24"), "cn-hangzhou-h", "vsw-h")
    sw_i = VSwitch(router, "vsw-0000000b")
    sw_i.create(N("192.168.2.0/24"), "cn-hangzhou-i", "vsw-i")
    ecs = [EcsInstance(lab, f"i-0000000{n}", f"eni-0000000{n}") for n in (1, 2, 3)]
    ips = [ecs[0].create(sw_h, "192.168.1.10", "ecs-1", "ecs-1"),
           ecs[1].create(sw_h, None, "ecs-2", "ecs-2"),
           ecs[2].create(sw_i, None, "ecs-3", "ecs-3")]
    return router, (sw_h, sw_i), ecs, ips


def test_ecs_reach_each_other_in_and_across_vswitches(lab, root_unchanged):
    _, _, ecs, ips = build(lab)
    assert ips == ["192.168.1.10", "192.168.1.1", "192.168.2.1"]  # allocation: lowest free address
    src = ecs[0].namespace.name
    assert ping(src, ips[1])
    assert ping(src, ips[2])
    with TcpServer(ecs[2].namespace.name):
        assert tcp_greeting(src, ips[2]) == "hello 192.168.1.10"  # routed by the VPC, source kept
    with TcpServer(ecs[1].namespace.name):
        assert tcp_greeting(src, ips[1]) == "hello 192.168.1.10"


def test_gateway_and_state_read_back_from_the_kernel(lab):
    router, (sw_h, _), ecs, _ = build(lab)
    assert router.cidr() == N("192.168.0.0/16")
    assert sw_h.cidr() == N("192.168.1.0/24")
    assert sw_h.zone_id() == "cn-hangzhou-h"
    state = ecs[0].read()
    assert (state.private_ip, state.vswitch_id, state.gateway) == ("192.168.1.10", "vsw-0000000a", "192.168.1.253")
    assert find_vswitch(lab, "vsw-0000000b").router == router


def test_address_outside_the_vpc_is_refused_and_unreachable(lab):
    _, _, ecs, _ = build(lab)
    assert not ping(ecs[0].namespace.name, "192.168.9.9")  # inside the VPC, no vSwitch: unreachable
    assert not ping(ecs[0].namespace.name, "203.0.113.1")  # sealed: no route out of the lab


def test_used_or_reserved_address_is_refused_before_anything_is_made(lab):
    _, (sw_h, _), _, _ = build(lab)
    before = {ns.name for ns in list_namespaces(mark(lab))}
    for ip, reason in (("192.168.1.10", "already used"), ("192.168.1.253", "reserved")):
        with pytest.raises(ValidationError, match=reason):
            EcsInstance(lab, "i-0000000f", "eni-0000000f").create(sw_h, ip, "ecs-x", "x")
    assert {ns.name for ns in list_namespaces(mark(lab))} == before


def test_overlapping_vswitch_is_refused(lab):
    router, _, _, _ = build(lab)
    with pytest.raises(ValidationError, match="overlaps"):
        VSwitch(router, "vsw-0000000c").create(N("192.168.1.0/25"), "cn-hangzhou-h", "vsw-x")
    assert not VSwitch(router, "vsw-0000000c").bridge.exists()


def test_vswitch_in_a_missing_vpc_is_refused(lab):
    with pytest.raises(NotFoundError):
        VSwitch(VpcRouter(lab, "vpc-0000000f"), "vsw-0000000c").create(N("10.0.0.0/24"), "z", "vsw")


def test_creating_twice_is_harmless(lab):
    router, (sw_h, _), _, _ = build(lab)
    router.create(N("192.168.0.0/16"))
    sw_h.create(N("192.168.1.0/24"), "cn-hangzhou-h", "vsw-h")
    assert router.cidr() == N("192.168.0.0/16")
    assert sw_h.cidr() == N("192.168.1.0/24")


def test_delete_leaves_nothing(lab, root_unchanged):
    router, _, ecs, _ = build(lab)
    with TcpServer(ecs[0].namespace.name):  # a process inside is ended by PID on delete
        for instance in ecs:
            instance.delete()
    assert [ns.name for ns in list_namespaces(mark(lab))] == [router.namespace.name]
    router.delete()
    assert list_namespaces(mark(lab)) == []
