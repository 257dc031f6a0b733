"""Route entries, secondary ENIs and secondary private IPs on the real kernel (realize layer)."""

from __future__ import annotations

import ipaddress

import pytest

from netns.model.errors import NotFoundError, ValidationError
from netns.realize import source_check
from netns.realize.instance import EcsInstance
from netns.realize.network_interface import NetworkInterface
from netns.realize.route_entry import RouteEntry
from netns.realize.vpc import VpcRouter, VSwitch
from tests.labtools import ProbeServer, ping, probe_tcp

VPC = ipaddress.IPv4Network("192.168.0.0/16")
POD_CIDR = ipaddress.IPv4Network("10.244.1.0/24")


@pytest.fixture
def vpc(lab):
    router = VpcRouter(lab, "vpc-00000001")
    router.create(VPC)
    a = VSwitch(router, "vsw-0000000a")
    a.create(ipaddress.IPv4Network("192.168.1.0/24"), "zone-a", "test")
    b = VSwitch(router, "vsw-0000000b")
    b.create(ipaddress.IPv4Network("192.168.2.0/24"), "zone-a", "test")
    return router, a, b


def test_route_entry_delivers_a_block_to_an_instance_and_lets_it_answer(vpc, lab):
    router, vsw, _ = vpc
    node = EcsInstance(lab, "i-0000000a", "eni-0000000a")
    node.create(vsw, "192.168.1.10", "test")
    client = EcsInstance(lab, "i-0000000b", "eni-0000000b")
    client.create(vsw, "192.168.1.11", "test")
    node.namespace.run(["ip", "addr", "add", "10.244.1.5/32", "dev", "lo"])  # a "pod" address on the node
    assert not ping(client.namespace.name, "10.244.1.5")  # no route entry: the VPC refuses
    entry = RouteEntry(router, POD_CIDR, "i-0000000a")
    entry.create("vpc.RouteEntry 'pods'")
    assert entry.exists()
    assert ping(client.namespace.name, "10.244.1.5")
    with ProbeServer(node.namespace.name, tcp=(8080,), udp=()):
        assert probe_tcp(client.namespace.name, "10.244.1.5", 8080)
    entry.delete()
    assert not entry.exists()
    assert not ping(client.namespace.name, "10.244.1.5")


def test_route_entry_bad_input(vpc, lab):
    router, vsw, _ = vpc
    EcsInstance(lab, "i-0000000a", "eni-0000000a").create(vsw, "192.168.1.10", "test")
    with pytest.raises(ValidationError, match=r"destination_cidrblock: 192\.168\.1\.0/25 lies inside vSwitch"):
        RouteEntry(router, ipaddress.IPv4Network("192.168.1.0/25"), "i-0000000a").create("r")
    with pytest.raises(NotFoundError, match="nexthop_id: i-00000099 is not an instance"):
        RouteEntry(router, POD_CIDR, "i-00000099").create("r")


def test_secondary_eni_in_another_vswitch_attaches_and_detaches(vpc, lab):
    router, vsw_a, vsw_b = vpc
    node = EcsInstance(lab, "i-0000000a", "eni-0000000a")
    node.create(vsw_a, "192.168.1.10", "test")
    peer = EcsInstance(lab, "i-0000000b", "eni-0000000b")
    peer.create(vsw_b, "192.168.2.50", "test")
    eni = NetworkInterface(lab, "eni-000000e1")
    state = eni.create(vsw_b, "test", None, ("192.168.2.21",), 1, ())
    assert state.primary_ip == "192.168.2.1" and state.secondary_ips == ("192.168.2.21", "192.168.2.2")
    assert vsw_b.used_addresses() >= {ipaddress.IPv4Address(a) for a in ("192.168.2.1", "192.168.2.21",
                                                                          "192.168.2.2", "192.168.2.50")}
    assert eni.attach(node.namespace, "i-0000000a", "test") == "eth1"
    assert eni.read().instance_id == "i-0000000a"
    # the ENI's primary address answers on eth1; a secondary IP is delivered to the node (proxy neighbour)
    assert ping(peer.namespace.name, "192.168.2.1")
    node.namespace.sysctl("net.ipv4.ip_forward", 1)
    node.namespace.run(["ip", "addr", "add", "192.168.2.21/32", "dev", "lo"])
    assert ping(peer.namespace.name, "192.168.2.21")
    eni.detach(node.namespace)
    assert eni.read().instance_id == ""
    assert not ping(peer.namespace.name, "192.168.2.1")
    eni.delete()
    assert eni.read() is None
    assert "eni-000000e1" not in source_check.bound(router.namespace)


def test_instance_secondary_private_ips_are_claimed_and_source_checked(vpc, lab):
    _, vsw, _ = vpc
    node = EcsInstance(lab, "i-0000000a", "eni-0000000a")
    node.create(vsw, "192.168.1.10", "test", secondary_ips=("192.168.1.30",))
    other = EcsInstance(lab, "i-0000000b", "eni-0000000b")
    with pytest.raises(ValidationError, match=r"private_ip: 192\.168\.1\.30 is already used"):
        other.create(vsw, "192.168.1.30", "test")
    other.create(vsw, "192.168.1.11", "test")
    node.namespace.run(["ip", "addr", "add", "192.168.1.30/24", "dev", "eth0"])
    node.namespace.run(["ip", "addr", "add", "192.168.1.31/24", "dev", "eth0"])
    assert ping(other.namespace.name, "192.168.1.30")
    assert not ping(other.namespace.name, "192.168.1.31")  # not assigned: the source check drops replies
    assert node.read().secondary_private_ips == ("192.168.1.30",)


def test_an_eni_holds_thirty_secondary_ips_and_gives_back_any_of_them(vpc, lab):
    # Terway's quota on ecs.g7.4xlarge: 30 secondary IPs on one ENI, more than a plain list fits in its alias
    # (the ENI in the other vSwitch, as Terway's pod vSwitch: its addresses leave by its own port)
    router, vsw_a, vsw_b = vpc
    node = EcsInstance(lab, "i-0000000a", "eni-0000000a")
    node.create(vsw_a, "192.168.1.10", "test")
    peer = EcsInstance(lab, "i-0000000b", "eni-0000000b")
    peer.create(vsw_b, "192.168.2.50", "test")
    eni = NetworkInterface(lab, "eni-000000e2")
    eni.create(vsw_b, "test", "192.168.2.100", (), 0, ())
    eni.attach(node.namespace, "i-0000000a", "test")
    taken = eni.assign_ips(30, "terway ENI")
    assert len(set(taken)) == 30 and eni.read().secondary_ips == taken
    eni.unassign_ips(taken[1::2])  # every other one back: the scattered worst case for the alias
    kept = taken[0::2]
    assert eni.read().secondary_ips == kept
    assert {ipaddress.IPv4Address(a) for a in kept} <= vsw_b.used_addresses()
    assert not {ipaddress.IPv4Address(a) for a in taken[1::2]} & vsw_b.used_addresses()
    node.namespace.sysctl("net.ipv4.ip_forward", 1)
    node.namespace.run(["ip", "addr", "add", f"{kept[-1]}/32", "dev", "lo"])
    assert ping(peer.namespace.name, kept[-1]), "the last address of the packed list is delivered and bound"
    assert eni.assign_ips(2, "terway ENI") == tuple(taken[1:4:2])  # the lowest free ones again
    eni.delete()
    assert "eni-000000e2" not in source_check.bound(router.namespace)
