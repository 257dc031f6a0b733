"""prune_lab on the real kernel: after a crash, objects whose ids the checkpoint lacks go, the rest stays."""

from __future__ import annotations

import ipaddress

import pytest

from netns.kernel.link import links_of
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark, netns_name
from netns.model.security_group import Group, parse_rule
from netns.realize import security_group as sg
from netns.realize import state_dir
from netns.realize.cleanup import prune_lab
from netns.realize.instance import EcsInstance
from netns.realize.network_interface import NetworkInterface
from netns.realize.slb import SlbInstance
from netns.realize.vpc import VpcRouter, VSwitch
from tests.labtools import ping

pytestmark = pytest.mark.kernel

N = ipaddress.IPv4Network


def test_prune_removes_what_the_checkpoint_does_not_know_and_keeps_the_rest(lab, root_unchanged):
    router = VpcRouter(lab, "vpc-00000001")
    router.create(N("192.168.0.0/16"))
    known, unknown = VSwitch(router, "vsw-0000000a"), VSwitch(router, "vsw-0000000b")
    known.create(N("192.168.1.0/24"), "z", "known")
    unknown.create(N("192.168.2.0/24"), "z", "unknown")
    sg.create_group(lab, Group("sg-00000001", router.vpc_id))
    sg.create_group(lab, Group("sg-00000002", router.vpc_id))
    for n in (1, 2):
        sg.add_rule(lab, "sg-00000001", parse_rule("r", f"sgr-0000000{n}", type="ingress", ip_protocol="tcp",
                                                   port_range="80/80", cidr_ip="0.0.0.0/0"))
    ecs = [EcsInstance(lab, f"i-0000000{n}", f"eni-0000000{n}") for n in (1, 2, 3)]
    ecs[0].create(known, "192.168.1.10", "ecs-1", "ecs-1", ("sg-00000001",))
    ecs[1].create(known, "192.168.1.11", "ecs-2", "ecs-2", ("sg-00000001",))  # its create was interrupted
    ecs[2].create(unknown, "192.168.2.10", "ecs-3", "ecs-3")
    NetworkInterface(lab, "eni-0000000e").create(known, "eni-e", "192.168.1.20", (), 0, ())  # detached, kept
    NetworkInterface(lab, "eni-0000000f").create(known, "eni-f", "192.168.1.21", (), 0, ())  # interrupted
    slbs = [SlbInstance(lab, f"lb-0000000{n}") for n in (1, 2)]  # the second one's create was interrupted
    for n, instance in enumerate(slbs):
        instance.create("intranet", known, f"192.168.1.3{n}", f"slb-{n}", f"slb-{n}")
    orphan_listener = state_dir(lab) / "slb" / "listeners" / "lb-00000002_tcp_80.json"
    orphan_listener.parent.mkdir(parents=True, exist_ok=True)
    orphan_listener.write_text("{}")
    half_made = Namespace(netns_name(lab, "i-00000004"))  # killed right after `ip netns add`
    half_made.create()
    (state_dir(lab) / "i-00000002.user-data").write_text("true\n")

    keep = {"vpc-00000001", "vsw-0000000a", "i-00000001", "eni-00000001", "sg-00000001", "sgr-00000001",
            "eni-0000000e", "lb-00000001"}
    removed = prune_lab(lab, keep)

    assert {ns.name for ns in list_namespaces(mark(lab))} == {router.namespace.name, ecs[0].namespace.name,
                                                               slbs[0].namespace.name}
    assert {name for name, kind in links_of(router.namespace).items() if kind} == {
        "vsw-0000000a", "eni-00000001", "eni-0000000e", "eni-0000000ep", "lb-00000001",  # parked end kept
        "hc-00000001"}  # the kept SLB's 100.64 leg (health checks); the pruned one's went with its namespace
    assert not orphan_listener.exists() and slbs[0].read() is not None
    assert sg.load_group(lab, "sg-00000002") is None
    assert [r.rule_id for r in sg.load_group(lab, "sg-00000001").rules] == ["sgr-00000001"]
    assert "eni-00000002" not in router.namespace.run(["iptables-save"]).stdout  # ruleset re-applied
    assert {"sg-00000002", "sgr-00000002", half_made.name} <= set(removed)
    assert ecs[0].read() is not None
    kept_addresses = ("192.168.1.10", "192.168.1.20", "192.168.1.30")  # ECS, secondary ENI, SLB
    assert known.used_addresses() == {ipaddress.IPv4Address(a) for a in kept_addresses}
    assert ping(router.namespace.name, "192.168.1.10")
    assert not (state_dir(lab) / "i-00000002.user-data").exists()
    # The interrupted instance's address is free again: a retried create gets it.
    retry = EcsInstance(lab, "i-00000005", "eni-00000005")
    assert retry.create(known, "192.168.1.11", "ecs-2", "ecs-2", ("sg-00000001",)) == "192.168.1.11"
    keep |= {"i-00000005", "eni-00000005"}
    assert NetworkInterface(lab, "eni-0000000e").read() is not None

    assert prune_lab(lab, keep) == []  # nothing more to do
    prune_lab(lab, set())
    assert list_namespaces(mark(lab)) == []
