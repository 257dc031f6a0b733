"""Isolation on the real kernel: VPCs with the same CIDR block, and labs with identical addresses and ids.

Overlapping addresses make a reply from "the same address" ambiguous, so the negative probes aim at what
exists only on the other side: an address only the other VPC has, and a port only the other VPC's twin
listens on. Each negative probe has a positive twin from inside the other VPC, so it fails for the right reason.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from netns.model.names import mark
from netns.realize.cleanup import clean_lab
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch
from tests.labtools import ProbeServer, new_lab, ping, probe_tcp

pytestmark = pytest.mark.kernel

N = ipaddress.IPv4Network
ONLY_B = "192.168.1.20"  # an address that exists in VPC B only
ONLY_B_PORT = 81  # a port that only B's twin of 192.168.1.11 serves


@dataclass
class Vpc:
    router: VpcRouter
    ecs: dict[str, EcsInstance]  # private ip → instance

    def netns(self, ip: str) -> str:
        return self.ecs[ip].namespace.name


def build_vpc(lab: str, n: int, ips: tuple[str, ...]) -> Vpc:
    """VPC 192.168.0.0/16 with vSwitch 192.168.1.0/24 and an ECS at each of ``ips`` (ids from ``n``)."""
    router = VpcRouter(lab, f"vpc-0000000{n}")
    router.create(N("192.168.0.0/16"))
    vswitch = VSwitch(router, f"vsw-0000000{n}")
    vswitch.create(N("192.168.1.0/24"), "cn-hangzhou-h", "vsw")
    ecs = {}
    for k, ip in enumerate(ips):
        instance = EcsInstance(lab, f"i-000000{n}{k}", f"eni-000000{n}{k}")
        instance.create(vswitch, ip, f"ecs-{n}{k}", f"ecs-{n}{k}")
        ecs[ip] = instance
    return Vpc(router, ecs)


def assert_isolated(a: Vpc, b: Vpc) -> None:
    """Each VPC reaches its own peers (ICMP and TCP) and never the other's."""
    a1, b1 = a.netns("192.168.1.10"), b.netns("192.168.1.10")
    with ProbeServer(a.netns("192.168.1.11"), tcp=(80,), udp=()), \
            ProbeServer(b.netns("192.168.1.11"), tcp=(80, ONLY_B_PORT), udp=()), \
            ProbeServer(b.netns(ONLY_B), tcp=(80,), udp=()):
        assert ping(a1, "192.168.1.11") and probe_tcp(a1, "192.168.1.11", 80)
        assert ping(b1, "192.168.1.11") and probe_tcp(b1, "192.168.1.11", 80)
        assert ping(b1, ONLY_B) and probe_tcp(b1, ONLY_B, 80)
        assert probe_tcp(b1, "192.168.1.11", ONLY_B_PORT)

        assert not ping(a1, ONLY_B)
        assert not probe_tcp(a1, ONLY_B, 80)
        assert not probe_tcp(a1, "192.168.1.11", ONLY_B_PORT)  # A's own .11 answers, B's never does


def assert_intact(a: Vpc) -> None:
    a1 = a.netns("192.168.1.10")
    with ProbeServer(a.netns("192.168.1.11"), tcp=(80,), udp=()):
        assert ping(a1, "192.168.1.11") and probe_tcp(a1, "192.168.1.11", 80)
    assert all(instance.read() is not None for instance in a.ecs.values())


def test_two_vpcs_with_the_same_cidr_in_one_lab_are_isolated(lab, root_unchanged):
    a = build_vpc(lab, 1, ("192.168.1.10", "192.168.1.11"))
    b = build_vpc(lab, 2, ("192.168.1.10", "192.168.1.11", ONLY_B))
    assert_isolated(a, b)

    for instance in b.ecs.values():
        instance.delete()
    b.router.delete()
    assert not b.router.namespace.exists()
    assert_intact(a)


@pytest.fixture
def other_lab():
    name = new_lab()
    yield name
    clean_lab(name)


def test_two_labs_with_identical_addresses_and_ids_are_isolated(lab, other_lab, root_unchanged):
    a = build_vpc(lab, 1, ("192.168.1.10", "192.168.1.11"))
    b = build_vpc(other_lab, 1, ("192.168.1.10", "192.168.1.11", ONLY_B))
    assert a.router.vpc_id == b.router.vpc_id  # the same cloud ids: only the lab mark tells them apart
    assert a.router.namespace.name.startswith(mark(lab)) and b.router.namespace.name.startswith(mark(other_lab))
    assert_isolated(a, b)

    removed = clean_lab(other_lab)
    assert removed and all(other_lab in item for item in removed)
    assert_intact(a)
