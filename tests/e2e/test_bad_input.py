"""Every kind of bad input of issue 3 through the real engine and the SDK: one clear error naming the field."""

from __future__ import annotations

import pytest

from netns.kernel.namespace import list_namespaces
from netns.model.names import mark

pytestmark = pytest.mark.e2e

HEAD = """
import pulumi_alicloud as alicloud
from pulumi_alicloud import ecs, vpc
network = vpc.Network("vpc", cidr_block="192.168.0.0/16")
vsw = vpc.Switch("vsw", vpc_id=network.id, cidr_block="192.168.1.0/24", zone_id="cn-hangzhou-h")
IMAGE = "ubuntu_22_04_x64_20G_alibase_20240130.vhd"
"""
ECS = 'instance_type="ecs.g7.large", image_id=IMAGE'

# case → (program lines, message, what exists afterwards: the namespaces' kinds, by the name after the lab's mark).
# A check on the resource's own inputs runs in the plugin's Check, at preview: nothing is made. A check that needs
# another resource's value (the VPC's block, the vSwitch's) runs at that resource's create: what it depends on is
# made, the bad resource is not, and nothing of it is left half-made.
CASES = {
    "invalid VPC block": ('vpc.Network("bad", cidr_block="192.168.0.0/33")',
                          "cidr_block: '192.168.0.0/33' is not a CIDR block", set()),
    "VPC block not private": ('vpc.Network("bad", cidr_block="8.8.0.0/16")', "cidr_block: 8.8.0.0/16", set()),
    "vSwitch outside its VPC": (
        'vpc.Switch("bad", vpc_id=network.id, cidr_block="10.9.0.0/24", zone_id="cn-hangzhou-h")',
        "vpc.Switch 'bad': cidr_block: 10.9.0.0/24 is not inside the VPC's cidr_block 192.168.0.0/16", {"vpc"}),
    "overlapping vSwitches": (
        'vpc.Switch("bad", vpc_id=network.id, cidr_block="192.168.1.128/25", zone_id="cn-hangzhou-h", '
        'opts=pulumi.ResourceOptions(depends_on=[vsw]))',  # else the engine may create it first: vsw would fail
        "vpc.Switch 'bad': cidr_block: 192.168.1.128/25 overlaps", {"vpc"}),
    "private_ip outside its vSwitch": (f'ecs.Instance("bad", vswitch_id=vsw.id, private_ip="192.168.2.10", {ECS})',
                                       "ecs.Instance 'bad': private_ip: 192.168.2.10 is not inside", {"vpc"}),
    "private_ip reserved": (f'ecs.Instance("bad", vswitch_id=vsw.id, private_ip="192.168.1.253", {ECS})',
                            "ecs.Instance 'bad': private_ip: 192.168.1.253 is reserved", {"vpc"}),
    "private_ip taken": (f'a = ecs.Instance("a", vswitch_id=vsw.id, private_ip="192.168.1.10", {ECS})\n'
                         f'ecs.Instance("bad", vswitch_id=vsw.id, private_ip="192.168.1.10", {ECS}, '
                         'opts=pulumi.ResourceOptions(depends_on=[a]))',
                         "ecs.Instance 'bad': private_ip: 192.168.1.10 is already used", {"vpc", "i"}),
    "bad port range": (
        'sg = ecs.SecurityGroup("sg", vpc_id=network.id)\n'
        'ecs.SecurityGroupRule("bad", security_group_id=sg.id, type="ingress", ip_protocol="tcp", '
        'port_range="90/80", cidr_ip="0.0.0.0/0")',
        "port_range: 90/80: the start port is after the end port", set()),
    "bad priority": (
        'sg = ecs.SecurityGroup("sg", vpc_id=network.id)\n'
        'ecs.SecurityGroupRule("bad", security_group_id=sg.id, type="ingress", ip_protocol="tcp", '
        'port_range="80/80", cidr_ip="0.0.0.0/0", priority=101)',
        "priority: 101 is not an integer from 1 to 100", set()),
    "bad route destination": (
        f'node = ecs.Instance("node", vswitch_id=vsw.id, {ECS})\n'
        'vpc.RouteEntry("bad", route_table_id=network.route_table_id, destination_cidrblock="192.168.1.0/26", '
        'nexthop_type="Instance", nexthop_id=node.id)',
        "destination_cidrblock: 192.168.1.0/26 lies inside vSwitch block 192.168.1.0/24", {"vpc", "i"}),
    "unknown vSwitch": (f'ecs.Instance("bad", vswitch_id="vsw-00000000", {ECS})', "vsw-00000000", {"vpc"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_with_nothing_half_made(case, lab, program_stack):
    line, message, made = CASES[case]
    result = program_stack("import pulumi\n" + HEAD + line + "\n").run("up", "--yes", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output, output[-2000:]
    kinds = [ns.name.removeprefix(mark(lab)).split("-")[0] for ns in list_namespaces(mark(lab))]
    assert set(kinds) <= made, f"made before the error: {kinds}"  # at preview: nothing; at create: not the bad one
    assert kinds.count("i") <= 1  # "private_ip taken": instance a, never the bad one
