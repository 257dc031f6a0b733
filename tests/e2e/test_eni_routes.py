"""Route entries, secondary ENIs, secondary IPs, host name and user data through the real Pulumi engine and the
SDK (acklab's `alicloud` plugin)."""

from __future__ import annotations

import pytest

from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark, netns_name
from netns.realize import state_dir
from tests.labtools import ping, wait_for

pytestmark = pytest.mark.e2e

PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud
IMAGE = "ubuntu_22_04_x64_20G_alibase_20240130.vhd"
network = alicloud.vpc.Network("vpc", cidr_block="192.168.0.0/16")
nodes = alicloud.vpc.Switch("nodes", vpc_id=network.id, cidr_block="192.168.1.0/24", zone_id="cn-hangzhou-h")
pods = alicloud.vpc.Switch("pods", vpc_id=network.id, cidr_block="192.168.64.0/24", zone_id="cn-hangzhou-h")
node = alicloud.ecs.Instance("node", vswitch_id=nodes.id, private_ip="192.168.1.10", host_name="node-1",
                             instance_type="ecs.g7.large", image_id=IMAGE, secondary_private_ips=["192.168.1.30"],
                             user_data="#!/bin/sh\\nsysctl -qw net.ipv4.ip_forward=1\\necho booted as $(hostname)\\n")
client = alicloud.ecs.Instance("client", vswitch_id=nodes.id, private_ip="192.168.1.11",
                               instance_type="ecs.g7.large", image_id=IMAGE)
eni = alicloud.ecs.EcsNetworkInterface("pod-eni", vswitch_id=pods.id, secondary_private_ip_address_count=2)
alicloud.ecs.EcsNetworkInterfaceAttachment("pod-eni-node", network_interface_id=eni.id, instance_id=node.id)
alicloud.vpc.RouteEntry("pod-cidr", route_table_id=network.route_table_id, destination_cidrblock="10.244.1.0/24",
                        nexthop_type="Instance", nexthop_id=node.id)
pulumi.export("node_id", node.id)
pulumi.export("client_id", client.id)
pulumi.export("eni_ip", eni.primary_ip_address)
pulumi.export("eni_ips", eni.private_ip_addresses)
"""


def test_route_entry_eni_and_user_data_through_the_engine(lab, program_stack, root_unchanged):
    stack = program_stack(PROGRAM)
    stack.run("up", "--yes")
    out = stack.outputs()
    node, client = Namespace(netns_name(lab, out["node_id"])), netns_name(lab, out["client_id"])
    assert out["eni_ip"] == "192.168.64.1"
    assert out["eni_ips"] == ["192.168.64.2", "192.168.64.3"]
    assert "192.168.64.1/24" in node.run(["ip", "-br", "addr", "show", "dev", "eth1"]).stdout  # the ENI is eth1
    log = state_dir(lab) / f"{out['node_id']}.user-data.log"
    wait_for(lambda: log.exists() and "booted as node-1" in log.read_text(), "user data ran")
    # the route entry delivers the pod block to the node
    node.run(["ip", "addr", "add", "10.244.1.7/32", "dev", "lo"])
    assert ping(client, "10.244.1.7")
    # replies from the ENI's addresses must leave by the ENI (the source check drops them on eth0):
    # the policy routing Terway sets up
    assert not ping(client, "192.168.64.1")
    node.run(["ip", "route", "add", "default", "via", "192.168.64.253", "dev", "eth1", "table", "100"])
    node.run(["ip", "rule", "add", "from", "192.168.64.0/24", "table", "100"])
    assert ping(client, "192.168.64.1")
    node.run(["ip", "addr", "add", "192.168.64.2/32", "dev", "lo"])
    assert ping(client, "192.168.64.2")  # a secondary IP of the ENI, delivered by the fabric
    preview = stack.run("preview", "--diff", "--expect-no-changes", check=False)
    assert preview.returncode == 0, preview.stdout
    stack.run("destroy", "--yes")
    assert list_namespaces(mark(lab)) == []


BAD_ROUTE = """
import pulumi_alicloud as alicloud
network = alicloud.vpc.Network("vpc", cidr_block="192.168.0.0/16")
nodes = alicloud.vpc.Switch("nodes", vpc_id=network.id, cidr_block="192.168.1.0/24", zone_id="cn-hangzhou-h")
node = alicloud.ecs.Instance("node", vswitch_id=nodes.id, private_ip="192.168.1.10", instance_type="ecs.g7.large",
                             image_id="ubuntu_22_04_x64_20G_alibase_20240130.vhd")
alicloud.vpc.RouteEntry("bad", route_table_id=network.route_table_id, destination_cidrblock="10.244.1.1/24",
                        nexthop_type="Instance", nexthop_id=node.id)
"""


def test_bad_route_entry_is_one_clear_error_before_anything_is_made(lab, program_stack):
    result = program_stack(BAD_ROUTE).run("up", "--yes", check=False)
    assert result.returncode != 0
    assert ("alicloud:vpc/routeEntry:RouteEntry resource 'bad': property destinationCidrblock value "
            "{10.244.1.1/24} has a problem: destination_cidrblock: '10.244.1.1/24' is not an IPv4 CIDR block") in \
        result.stdout + result.stderr  # the plugin's Check: at preview
    assert list_namespaces(mark(lab)) == []
