"""Security groups through the real Pulumi engine and the SDK: the seed's asterisk (ECS→ECS needs a rule)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netns.model.names import netns_name
from netns.realize import state_dir
from tests.e2e.test_pulumi_up import Stack, temp_project
from tests.labtools import ProbeServer, ping, probe_tcp

pytestmark = pytest.mark.e2e

PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud
network = alicloud.vpc.Network("vpc", cidr_block="10.8.0.0/16")
vsw = alicloud.vpc.Switch("vsw", vpc_id=network.id, cidr_block="10.8.1.0/24", zone_id="cn-hangzhou-h")
web = alicloud.ecs.SecurityGroup("web", vpc_id=network.id, security_group_name="web", inner_access_policy="Drop")
alicloud.ecs.SecurityGroupRule("http-from-client", security_group_id=web.id, type="ingress", ip_protocol="tcp",
                               port_range="80/80", cidr_ip="10.8.1.10/32", priority=1)
client = alicloud.ecs.Instance("client", vswitch_id=vsw.id, private_ip="10.8.1.10", instance_name="client",
                               instance_type="ecs.g7.large", image_id="ubuntu_22_04_x64_20G_alibase_20240130.vhd")
server = alicloud.ecs.Instance("server", vswitch_id=vsw.id, private_ip="10.8.1.20", security_groups=[web.id],
                               instance_name="server", instance_type="ecs.g7.large",
                               image_id="ubuntu_22_04_x64_20G_alibase_20240130.vhd")
pulumi.export("client", client.id)
pulumi.export("server", server.id)
pulumi.export("web", web.id)
"""


def test_security_group_rule_opens_exactly_its_port(lab, tmp_path, root_unchanged):
    stack = Stack(temp_project(tmp_path, PROGRAM), lab, tmp_path)
    stack.init()
    try:
        stack.run("up", "--yes")
        out = stack.outputs()
        client, server = netns_name(lab, out["client"]), netns_name(lab, out["server"])
        with ProbeServer(server):
            assert probe_tcp(client, "10.8.1.20", 80)
            assert not probe_tcp(client, "10.8.1.20", 22)
            assert not ping(client, "10.8.1.20")
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
