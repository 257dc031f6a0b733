"""Security groups on the real kernel: every case with a positive and a negative probe (TCP, UDP, ICMP).

Topology: VPC 192.168.0.0/16; vSwitch A 192.168.1.0/24 holds a (.1), b (.2) and spare (.3); vSwitch B
192.168.2.0/24 holds c (.1), so b↔c traffic is routed by the VPC router and a↔b traffic is bridged.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from netns.model.security_group import Group, parse_rule
from netns.realize import security_group as sg
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch
from tests.labtools import ProbeServer, connect_tcp, ping, probe_tcp, probe_udp, still_flows

pytestmark = pytest.mark.kernel

N = ipaddress.IPv4Network
A, B, C = "192.168.1.1", "192.168.1.2", "192.168.2.1"


@dataclass
class Vpc:
    lab: str
    router: VpcRouter
    sw_a: VSwitch
    sw_b: VSwitch
    count: int = 0

    def group(self, sg_id: str, group_type: str = "normal", inner: str = "Accept") -> str:
        sg.create_group(self.lab, Group(sg_id, self.router.vpc_id, group_type, inner))
        return sg_id

    def rule(self, sg_id: str, **kw) -> str:
        self.count += 1
        rule_id = f"sgr-{self.count:08x}"
        args = {"type": "ingress", "ip_protocol": "tcp", "port_range": "80/80", **kw}
        if "source_security_group_id" not in args:
            args.setdefault("cidr_ip", "0.0.0.0/0")
        sg.add_rule(self.lab, sg_id, parse_rule("test", rule_id, **args))
        return rule_id

    def ecs(self, n: int, vswitch: VSwitch, groups: tuple[str, ...] = ()) -> str:
        instance = EcsInstance(self.lab, f"i-{n:08x}", f"eni-{n:08x}")
        instance.create(vswitch, None, f"ecs-{n}", f"ecs-{n}", groups)
        return instance.namespace.name

    def join(self, n: int, groups: tuple[str, ...]) -> None:
        EcsInstance(self.lab, f"i-{n:08x}", f"eni-{n:08x}").relabel("test", f"ecs-{n}", groups)


@pytest.fixture
def vpc(lab):
    router = VpcRouter(lab, "vpc-00000001")
    router.create(N("192.168.0.0/16"))
    sw_a, sw_b = VSwitch(router, "vsw-0000000a"), VSwitch(router, "vsw-0000000b")
    sw_a.create(N("192.168.1.0/24"), "z-a", "a")
    sw_b.create(N("192.168.2.0/24"), "z-b", "b")
    return Vpc(lab, router, sw_a, sw_b)


def reach(src: str, dst_ip: str) -> dict[str, bool]:
    return {"tcp80": probe_tcp(src, dst_ip, 80), "tcp22": probe_tcp(src, dst_ip, 22),
            "udp53": probe_udp(src, dst_ip, 53), "icmp": ping(src, dst_ip)}


ALL = {"tcp80": True, "tcp22": True, "udp53": True, "icmp": True}
NONE = {"tcp80": False, "tcp22": False, "udp53": False, "icmp": False}


def test_basic_group_denies_inbound_by_default_and_a_rule_opens_one_port(vpc):
    web = vpc.group("sg-0000000b", inner="Drop")
    a, b = vpc.ecs(1, vpc.sw_a), vpc.ecs(2, vpc.sw_a, (web,))
    with ProbeServer(b):
        assert reach(a, B) == NONE
        vpc.rule(web, cidr_ip=f"{A}/32")
        assert reach(a, B) == {**NONE, "tcp80": True}
        vpc.rule(web, ip_protocol="udp", port_range="53/53", cidr_ip=f"{A}/32")
        vpc.rule(web, ip_protocol="icmp", port_range="-1/-1", cidr_ip=f"{A}/32")
        assert reach(a, B) == {**ALL, "tcp22": False}


def test_intra_group_accept_and_drop(vpc):
    accept = vpc.group("sg-000000aa", inner="Accept")
    drop = vpc.group("sg-000000dd", inner="Drop")
    a, b, c = vpc.ecs(1, vpc.sw_a, (accept,)), vpc.ecs(2, vpc.sw_a, (accept,)), vpc.ecs(3, vpc.sw_b)
    with ProbeServer(b):
        assert reach(a, B) == ALL  # members of an Accept group reach each other on every port
        assert reach(c, B) == NONE  # a non-member does not
        vpc.join(1, (drop,))
        vpc.join(2, (drop,))
        assert reach(a, B) == NONE  # members of a Drop group are isolated from each other


def test_smaller_priority_wins(vpc):
    web = vpc.group("sg-0000000b", inner="Drop")
    a, c = vpc.ecs(1, vpc.sw_a), vpc.ecs(3, vpc.sw_b)
    b = vpc.ecs(2, vpc.sw_a, (web,))
    vpc.rule(web, priority=2, cidr_ip="0.0.0.0/0")
    vpc.rule(web, priority=1, policy="drop", cidr_ip=f"{A}/32")
    with ProbeServer(b):
        assert not probe_tcp(a, B, 80)  # priority 1 drop beats priority 2 accept
        assert probe_tcp(c, B, 80)  # routed across vSwitches, only the accept matches


def test_drop_wins_at_equal_priority(vpc):
    web = vpc.group("sg-0000000b", inner="Drop")
    a, c = vpc.ecs(1, vpc.sw_a), vpc.ecs(3, vpc.sw_b)
    b = vpc.ecs(2, vpc.sw_a, (web,))
    vpc.rule(web, priority=5, cidr_ip="0.0.0.0/0", ip_protocol="udp", port_range="53/53")
    vpc.rule(web, priority=5, policy="drop", cidr_ip=f"{A}/32", ip_protocol="udp", port_range="53/53")
    with ProbeServer(b):
        assert not probe_udp(a, B, 53)
        assert probe_udp(c, B, 53)


def test_source_by_security_group(vpc):
    clients = vpc.group("sg-000000c1", inner="Drop")
    web = vpc.group("sg-0000000b", inner="Drop")
    vpc.rule(web, ip_protocol="all", port_range="-1/-1", source_security_group_id=clients)
    a, c = vpc.ecs(1, vpc.sw_a, (clients,)), vpc.ecs(3, vpc.sw_b)
    b = vpc.ecs(2, vpc.sw_a, (web,))
    with ProbeServer(b):
        assert reach(a, B) == ALL
        assert reach(c, B) == NONE
        vpc.join(3, (clients,))  # joining the group opens the door: membership is read from the ENIs
        assert reach(c, B) == ALL


def test_egress_drop(vpc):
    out = vpc.group("sg-000000e0", inner="Drop")
    vpc.rule(out, type="egress", policy="drop", cidr_ip=f"{B}/32")
    a, b, c = vpc.ecs(1, vpc.sw_a, (out,)), vpc.ecs(2, vpc.sw_a), vpc.ecs(3, vpc.sw_b)
    with ProbeServer(b), ProbeServer(c):
        assert reach(a, B) == {**ALL, "tcp80": False}  # only tcp/80 to b is dropped
        assert reach(a, C) == ALL  # a basic group allows the rest outbound


def test_stateful_replies_pass_where_new_connections_do_not(vpc):
    ent = vpc.group("sg-000000e1", "enterprise", "Drop")
    vpc.rule(ent, cidr_ip=f"{A}/32")  # inbound tcp/80 from a
    a = vpc.ecs(1, vpc.sw_a)
    b = vpc.ecs(2, vpc.sw_a, (ent,))
    with ProbeServer(b), ProbeServer(a):
        assert probe_tcp(a, B, 80)  # the reply leaves b although b's egress denies everything
        assert not probe_tcp(b, A, 80)  # a new connection from b is egress traffic: denied
        assert not ping(b, A)


def test_enterprise_group_has_no_intra_group_access_and_denies_egress(vpc):
    ent = vpc.group("sg-000000e1", "enterprise", "Drop")
    a, b, c = vpc.ecs(1, vpc.sw_a, (ent,)), vpc.ecs(2, vpc.sw_a, (ent,)), vpc.ecs(3, vpc.sw_b)
    with ProbeServer(b), ProbeServer(c):
        assert reach(a, B) == NONE
        assert reach(a, C) == NONE
        vpc.rule(ent, type="egress", ip_protocol="all", port_range="-1/-1", cidr_ip="192.168.2.0/24")
        assert reach(a, C) == ALL


def test_union_of_groups(vpc):
    http = vpc.group("sg-00000080", inner="Drop")
    dns = vpc.group("sg-00000053", inner="Drop")
    vpc.rule(http, cidr_ip="0.0.0.0/0")
    vpc.rule(dns, ip_protocol="udp", port_range="53/53", cidr_ip="0.0.0.0/0")
    a = vpc.ecs(1, vpc.sw_a)
    b = vpc.ecs(2, vpc.sw_a, (http,))
    with ProbeServer(b):
        assert reach(a, B) == {**NONE, "tcp80": True}
        vpc.join(2, (http, dns))
        assert reach(a, B) == {**NONE, "tcp80": True, "udp53": True}


def test_spoofed_source_is_dropped_at_the_port(vpc):
    a, b = vpc.ecs(1, vpc.sw_a), vpc.ecs(2, vpc.sw_a)
    with ProbeServer(b):
        assert probe_tcp(a, B, 80, source=A)
        EcsInstance(vpc.lab, "i-00000001", "eni-00000001").namespace.run(
            ["ip", "addr", "add", "192.168.1.99/24", "dev", "eth0"])  # root in the guest takes another IP
        assert not probe_tcp(a, B, 80, source="192.168.1.99")


def test_rule_changes_keep_established_flows(vpc):
    web = vpc.group("sg-0000000b", inner="Drop")
    first = vpc.rule(web, cidr_ip=f"{A}/32")
    a, c = vpc.ecs(1, vpc.sw_a), vpc.ecs(3, vpc.sw_b)
    b = vpc.ecs(2, vpc.sw_a, (web,))
    with ProbeServer(b):
        conn = connect_tcp(a, B, 80)
        try:
            vpc.rule(web, ip_protocol="udp", port_range="53/53", cidr_ip="0.0.0.0/0")
            vpc.rule(web, cidr_ip=f"{C}/32")
            assert still_flows(conn)  # the ruleset was swapped under an open connection
            assert probe_tcp(c, B, 80)
        finally:
            conn.close()
        sg.remove_rule(vpc.lab, web, first)
        assert not probe_tcp(a, B, 80)


def test_unchanged_ruleset_is_not_applied_again(vpc):
    web = vpc.group("sg-0000000b", inner="Drop")
    vpc.ecs(2, vpc.sw_a, (web,))
    applied = list((sg.state_dir(vpc.lab)).glob("vpc-00000001.*.rules"))
    assert len(applied) == 1
    before = applied[0].stat().st_mtime_ns
    sg.apply(vpc.router)
    assert applied[0].stat().st_mtime_ns == before
