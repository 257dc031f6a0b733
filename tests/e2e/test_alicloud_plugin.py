"""A real pulumi-alicloud program, unmodified, through the real engine and acklab's `alicloud` plugin.

Every stack runs with a fresh, empty PULUMI_HOME: the engine must find the plugin without downloading anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netns.kernel.namespace import list_namespaces
from netns.model.names import mark
from netns.realize import state_dir
from tests.e2e.test_pulumi_up import VENV, Stack, temp_project
from tests.labtools import ProbeServer, ping, probe_tcp

pytestmark = pytest.mark.e2e

# The shape of the SDK's own examples (ecs.Instance's docstring): zones from a data source, a VPC, a vSwitch in
# the first zone, a group with a rule, instances with image, type, disks and billing the lab keeps as state.
PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud

config = pulumi.Config()
web_port = config.get_int("webPort") or 80
zones = alicloud.get_zones(available_resource_creation="VSwitch")
vpc = alicloud.vpc.Network("vpc", vpc_name="plugin-lab", cidr_block="172.16.0.0/16")
vswitch = alicloud.vpc.Switch("vswitch", vpc_id=vpc.id, cidr_block="172.16.0.0/24", zone_id=zones.zones[0].id,
                              vswitch_name="plugin-lab")
group = alicloud.ecs.SecurityGroup("group", security_group_name="web", description="web servers", vpc_id=vpc.id,
                                   inner_access_policy="Drop")
alicloud.ecs.SecurityGroupRule("allow-http", type="ingress", ip_protocol="tcp", nic_type="intranet",
                               policy="accept", port_range=f"{web_port}/{web_port}", priority=1,
                               security_group_id=group.id,
                               cidr_ip="172.16.0.0/24")
instances = {}
for name, address in (("client", None), ("server", "172.16.0.20")):
    instances[name] = alicloud.ecs.Instance(name,
        availability_zone=zones.zones[0].id,
        security_groups=[__item.id for __item in [group]],
        instance_type="ecs.n4.large",
        image_id="ubuntu_18_04_64_20G_alibase_20190624.vhd",
        system_disk_category="cloud_efficiency",
        instance_name=f"{name}-{web_port}",
        vswitch_id=vswitch.id,
        private_ip=address,
        internet_max_bandwidth_out=10,
        data_disks=[{"name": "disk2", "size": 20, "category": "cloud_efficiency"}])
pulumi.export("zone", zones.zones[0].id)
pulumi.export("ids", {name: i.id for name, i in instances.items()})
pulumi.export("ips", {name: i.private_ip for name, i in instances.items()})
pulumi.export("memory", instances["server"].memory)
pulumi.export("route_table", vpc.route_table_id)
"""

TOKENS = {"alicloud:vpc/network:Network", "alicloud:vpc/switch:Switch", "alicloud:ecs/securityGroup:SecurityGroup",
          "alicloud:ecs/securityGroupRule:SecurityGroupRule", "alicloud:ecs/instance:Instance"}


def _no_download(stack: Stack, output: str) -> None:
    """The engine used acklab's plugin and fetched none: nothing in the (fresh) plugin cache, no download."""
    assert "download" not in output.lower(), output[-2000:]
    plugins = Path(stack.env["PULUMI_HOME"]) / "plugins"
    assert not plugins.exists() or not any(plugins.glob("resource-alicloud*")), list(plugins.iterdir())


def _status(lab: str) -> dict:
    status = subprocess.run([sys.executable, "-m", "acklab.cli", "status", "--lab", lab, "--json"], check=True,
                            capture_output=True, text=True)
    return json.loads(status.stdout)


def _netns_by_id(lab: str) -> dict[str, str]:
    """An instance's namespace, as acklab reports it (the SDK has no output for it)."""
    return {e["id"]: e["netns"] for e in _status(lab)["ecs"]}


def test_pulumi_alicloud_program_up_connect_again_destroy(lab, program_stack, root_unchanged):
    stack = program_stack(PROGRAM)
    up = stack.run("up", "--yes")
    _no_download(stack, up.stdout + up.stderr)
    assert "from $PATH" not in up.stdout  # the project file names the plugin (Pulumi.yaml's plugins:)

    out = stack.outputs()
    assert out["zone"] == "cn-hangzhou-a"
    assert out["ips"] == {"client": "172.16.0.1", "server": "172.16.0.20"}
    assert out["memory"] == 4096  # ecs.n4.large: 2 vCPUs, 4 GiB
    assert out["route_table"].startswith("vtb-")
    resources = json.loads(stack.run("stack", "export").stdout)["deployment"]["resources"]
    types = {r["type"] for r in resources}
    assert types >= TOKENS
    assert not any(t.startswith("pulumi-python:dynamic") for t in types)
    server_state = next(r["outputs"] for r in resources if r.get("id") == out["ids"]["server"])
    assert server_state["imageId"] == "ubuntu_18_04_64_20G_alibase_20190624.vhd"  # accepted, kept
    assert server_state["dataDisks"][0]["size"] == 20
    assert server_state["status"] == "Running" and server_state["primaryIpAddress"] == "172.16.0.20"

    netns = _netns_by_id(lab)
    client, server = netns[out["ids"]["client"]], netns[out["ids"]["server"]]
    with ProbeServer(server, tcp=(80, 22), udp=()):
        assert probe_tcp(client, "172.16.0.20", 80)  # the rule's port
        assert not probe_tcp(client, "172.16.0.20", 22)  # no rule; members don't talk (inner_access_policy Drop)
        assert not ping(client, "172.16.0.20")

        again = stack.run("up", "--yes", "--expect-no-changes")
        _no_download(stack, again.stdout + again.stderr)
        stack.run("refresh", "--yes", "--expect-no-changes")  # Read finds every object as recorded

        # Another port: the rule is replaced, the instances renamed in place (same ids, same namespaces).
        stack.run("config", "set", "webPort", "22")
        changed = stack.run("up", "--yes")
        assert "+-1 replaced" in changed.stdout and "~ 2 updated" in changed.stdout, changed.stdout
        assert stack.outputs()["ids"] == out["ids"]
        assert probe_tcp(client, "172.16.0.20", 22) and not probe_tcp(client, "172.16.0.20", 80)
    assert {e["id"]: e["name"] for e in _status(lab)["ecs"]} == {
        out["ids"]["client"]: "client-22", out["ids"]["server"]: "server-22"}

    stack.run("destroy", "--yes")
    assert list_namespaces(mark(lab)) == []
    assert not list(state_dir(lab).glob("sg/*")) and not list(state_dir(lab).glob("i-*"))


BAD_OWN_INPUT = """
import pulumi_alicloud as alicloud
vpc = alicloud.vpc.Network("vpc", cidr_block="192.168.0.0/16")
alicloud.vpc.Switch("bad", vpc_id=vpc.id, cidr_block="192.168.1.0/33", zone_id="cn-hangzhou-b")
"""

BAD_ACROSS = """
import pulumi_alicloud as alicloud
vpc = alicloud.vpc.Network("vpc", cidr_block="192.168.0.0/16")
alicloud.vpc.Switch("bad", vpc_id=vpc.id, cidr_block="10.9.0.0/24", zone_id="cn-hangzhou-b")
"""


def test_bad_own_input_fails_at_preview_and_nothing_is_made(lab, program_stack):
    result = program_stack(BAD_OWN_INPUT).run("preview", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert ("alicloud:vpc/switch:Switch resource 'bad': property cidrBlock value {192.168.1.0/33} has a problem: "
            "cidr_block: '192.168.1.0/33' is not a CIDR block") in output, output[-2000:]
    assert output.count("has a problem") == 2  # one error (printed as it happens and in the summary)
    assert list_namespaces(mark(lab)) == []


def test_bad_input_across_resources_fails_at_its_create_with_nothing_half_made(lab, program_stack):
    stack = program_stack(BAD_ACROSS)
    result = stack.run("up", "--yes", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "vpc.Switch 'bad': cidr_block: 10.9.0.0/24 is not inside the VPC's cidr_block 192.168.0.0/16" in output
    vpc_id = next(r["id"] for r in json.loads(stack.run("stack", "export").stdout)["deployment"]["resources"]
                  if r["type"] == "alicloud:vpc/network:Network")
    assert [ns.name for ns in list_namespaces(mark(lab))] == [mark(lab) + vpc_id]  # the VPC only: no bridge left
    with list_namespaces(mark(lab))[0].ipr() as ipr:
        assert [link.get("ifname") for link in ipr.get_links()] == ["lo"]


def test_plugin_found_through_the_project_file_without_path(lab, tmp_path):
    """``plugins:`` in Pulumi.yaml names the folder of the plugin: no PATH needed, nothing downloaded."""
    project = temp_project(tmp_path, "import pulumi_alicloud as alicloud\n"
                                     "alicloud.vpc.Network('vpc', cidr_block='10.1.0.0/16')\n")
    assert f"path: {VENV}/bin" in (project / "Pulumi.yaml").read_text()  # as every test project has it
    stack = Stack(project, lab, tmp_path)
    bare = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV / "bin")
    stack.env = {**stack.env, "PATH": bare}
    pulumi = str(VENV / "bin" / "pulumi")
    subprocess.run([pulumi, "stack", "init", lab, "--non-interactive"], cwd=project, env=stack.env, check=True,
                   capture_output=True)
    result = subprocess.run([pulumi, "preview", "--stack", lab, "--non-interactive"], cwd=project, env=stack.env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alicloud:vpc:Network" in result.stdout and "from $PATH" not in result.stdout
    _no_download(stack, result.stdout + result.stderr)
