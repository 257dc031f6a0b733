"""Security groups through the real Pulumi engine: the seed's asterisk (ECS→ECS needs a rule)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netns.realize import state_dir
from tests.e2e.test_pulumi_up import Stack, temp_project
from tests.labtools import ProbeServer, ping, probe_tcp

pytestmark = pytest.mark.e2e

PROGRAM = """
import pulumi
from netns import ecs, vpc
network = vpc.Network("vpc", cidr_block="10.8.0.0/16")
vsw = vpc.Switch("vsw", vpc_id=network.id, cidr_block="10.8.1.0/24", zone_id="cn-hangzhou-h")
web = ecs.SecurityGroup("web", vpc_id=network.id, security_group_name="web", inner_access_policy="Drop")
ecs.SecurityGroupRule("http-from-client", security_group_id=web.id, type="ingress", ip_protocol="tcp",
                      port_range="80/80", cidr_ip="10.8.1.10/32", priority=1)
client = ecs.Instance("client", vswitch_id=vsw.id, private_ip="10.8.1.10")
server = ecs.Instance("server", vswitch_id=vsw.id, private_ip="10.8.1.20", security_groups=[web.id])
pulumi.export("client", client.netns)
pulumi.export("server", server.netns)
pulumi.export("web", web.id)
"""


def test_security_group_rule_opens_exactly_its_port(lab, tmp_path, root_unchanged):
    stack = Stack(temp_project(tmp_path, PROGRAM), lab, tmp_path)
    stack.init()
    try:
        stack.run("up", "--yes")
        out = stack.outputs()
        with ProbeServer(out["server"]):
            assert probe_tcp(out["client"], "10.8.1.20", 80)
            assert not probe_tcp(out["client"], "10.8.1.20", 22)
            assert not ping(out["client"], "10.8.1.20")
        stack.run("up", "--yes", "--expect-no-changes")

        status = subprocess.run([sys.executable, "-m", "acklab.cli", "status", "--lab", lab, "--json"],
                                check=True, capture_output=True, text=True)
        view = json.loads(status.stdout)
        assert [g["id"] for g in view["security_groups"]] == [out["web"]]
        assert {e["name"]: e["security_groups"] for e in view["ecs"]} == {"client": [], "server": [out["web"]]}

        stack.run("destroy", "--yes")
        assert not list(state_dir(lab).glob("sg/*")) and not list(state_dir(lab).glob("vpc-*"))
    finally:
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
