"""Resources that change one shared piece of state, created together by the real engine (through acklab's
`alicloud` plugin), all take effect.

The engine creates a server group's attachments, an ACL's entries and a security group's rules in parallel
(its default parallelism). Each of them reads the shared state (the group's servers, the ACL's entries, the
group's rules), changes it and writes it back: unless the read and the write happen under one hold of the lab
lock, one change is lost. One ``pulumi up`` makes 20 of each; each must be in the state, in HAProxy's
configuration and backend (the server group, the ACL) or in the VPC router's applied ruleset (the rules).
Up, check and destroy run 5 times in a row: a lost update is a race, and one clean run proves little.
"""

from __future__ import annotations

import re

import pytest

from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark, netns_name
from netns.realize import security_group as sg
from netns.realize import slb as realize
from netns.realize import state_dir
from tests.e2e.test_pulumi_up import Stack

pytestmark = pytest.mark.e2e

COUNT = 20  # attachments, ACL entries and security-group rules, each
RUNS = 5

# 4 instances x 5 ports: 20 distinct (server, port) pairs; weights cycle through 100, 50, 0.
PROGRAM = f"""
import pulumi
import pulumi_alicloud as alicloud

COUNT = {COUNT}
IMAGE = "ubuntu_22_04_x64_20G_alibase_20240130.vhd"
network = alicloud.vpc.Network("vpc", cidr_block="10.31.0.0/16")
vsw = alicloud.vpc.Switch("vsw", vpc_id=network.id, cidr_block="10.31.1.0/24", zone_id="cn-hangzhou-h")
group_sg = alicloud.ecs.SecurityGroup("sg", vpc_id=network.id, inner_access_policy="Accept")
rules = [alicloud.ecs.SecurityGroupRule(f"rule-{{n}}", security_group_id=group_sg.id, type="ingress",
                                        ip_protocol="tcp", port_range=f"{{2000 + n}}/{{2000 + n}}",
                                        cidr_ip=f"10.99.{{n}}.0/24", priority=1)
         for n in range(COUNT)]
servers = [alicloud.ecs.Instance(f"web-{{k}}", vswitch_id=vsw.id, security_groups=[group_sg.id],
                                 instance_type="ecs.g7.large", image_id=IMAGE) for k in range(4)]

lb = alicloud.slb.ApplicationLoadBalancer("lb", address_type="intranet", vswitch_id=vsw.id)
group = alicloud.slb.ServerGroup("group", load_balancer_id=lb.id, name="group")
attached = []
for n in range(COUNT):
    server, port, weight = servers[n % 4], 8000 + n // 4, (100, 50, 0)[n % 3]
    alicloud.slb.ServerGroupServerAttachment(f"attach-{{n}}", server_group_id=group.id, server_id=server.id,
                                             port=port, weight=weight)
    attached.append({{"server_id": server.id, "port": port, "weight": weight}})
acl = alicloud.slb.Acl("acl", name="clients")
for n in range(COUNT):
    alicloud.slb.AclEntryAttachment(f"entry-{{n}}", acl_id=acl.id, entry=f"10.31.{{100 + n}}.0/24",
                                    comment=f"client {{n}}")
alicloud.slb.Listener("http-80", load_balancer_id=lb.id, frontend_port=80, protocol="http",
                      server_group_id=group.id, acl_status="on", acl_type="white", acl_id=acl.id)

pulumi.export("lb", lb.id)
pulumi.export("group", group.id)
pulumi.export("acl", acl.id)
pulumi.export("sg", group_sg.id)
pulumi.export("vpc", network.id)
pulumi.export("attached", attached)
pulumi.export("rules", [r.security_group_rule_id for r in rules])
"""

ENTRIES = {f"10.31.{100 + n}.0/24" for n in range(COUNT)}


def check_server_group(lab: str, out: dict) -> None:
    """All attachments in the group's state, in the rendered haproxy.cfg and in HAProxy's running backend."""
    wanted = {(a["server_id"], a["port"], a["weight"]) for a in out["attached"]}
    assert len(wanted) == COUNT
    group = realize.server_group(lab, out["group"])
    assert group is not None
    assert {(s["server_id"], s["port"], s["weight"]) for s in group["servers"]} == wanted

    lb = realize.SlbInstance(lab, out["lb"])
    config = lb.config_path.read_text()
    rendered = re.findall(r"^\s*server (\S+):(\d+) \S+ weight (\d+)", config, re.MULTILINE)
    assert {(sid, int(port), int(weight)) for sid, port, weight in rendered} == wanted

    running = lb.backend_health().get(f"{out['lb']}:http:80", [])
    assert sorted((b["server_id"], b["port"]) for b in running) == sorted((s, p) for s, p, _ in wanted)


def check_acl(lab: str, out: dict, config: str) -> None:
    data = realize.acl(lab, out["acl"])
    assert data is not None and set(data["entries"]) == ENTRIES
    (listed,) = re.findall(r"^\s*acl listed src (.*)$", config, re.MULTILINE)
    assert set(listed.split()) == ENTRIES


def check_rules(lab: str, out: dict) -> None:
    """All rules in the group's state and in the ruleset iptables holds in the VPC router."""
    group = sg.load_group(lab, out["sg"])
    assert group is not None and {r.rule_id for r in group.rules} == set(out["rules"])
    assert len(out["rules"]) == COUNT
    applied = Namespace(netns_name(lab, out["vpc"])).run(["iptables-save", "-t", "filter"]).stdout
    assert set(re.findall(r'--comment "?(sgr-[0-9a-f]+) prio', applied)) == set(out["rules"])


def check_gone(lab: str) -> None:
    assert list_namespaces(mark(lab)) == []
    left = [p for folder in ("slb", "sg") for p in (state_dir(lab) / folder).rglob("*") if p.is_file()]
    assert left == [] and not list(state_dir(lab).glob("vpc-*"))


def test_parallel_creates_of_shared_state_all_take_effect(program_stack, lab, root_unchanged):
    stack: Stack = program_stack(PROGRAM)
    for run in range(1, RUNS + 1):
        stack.run("up", "--yes")  # the engine's default parallelism
        out = stack.outputs()
        try:
            check_server_group(lab, out)
            check_acl(lab, out, realize.SlbInstance(lab, out["lb"]).config_path.read_text())
            check_rules(lab, out)
        except AssertionError as exc:
            raise AssertionError(f"run {run} of {RUNS}: {exc}") from exc
        stack.run("destroy", "--yes")
        check_gone(lab)
