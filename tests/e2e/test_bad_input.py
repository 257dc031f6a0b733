"""Every kind of bad input of issue 3 through the real engine: one clear error naming the field, nothing made."""

from __future__ import annotations

import pytest

from netns.kernel.namespace import list_namespaces
from netns.model.names import mark

pytestmark = pytest.mark.e2e

HEAD = """
from netns import ecs, vpc
network = vpc.Network("vpc", cidr_block="192.168.0.0/16")
vsw = vpc.Switch("vsw", vpc_id=network.id, cidr_block="192.168.1.0/24", zone_id="cn-hangzhou-h")
"""

CASES = {
    "invalid VPC block": ('vpc.Network("bad", cidr_block="192.168.0.0/33")',
                          "vpc.Network 'bad': cidr_block:"),
    "VPC block not private": ('vpc.Network("bad", cidr_block="8.8.0.0/16")', "vpc.Network 'bad': cidr_block:"),
    "vSwitch outside its VPC": (
        'vpc.Switch("bad", vpc_id=network.id, cidr_block="10.9.0.0/24", zone_id="z1")',
        "vpc.Switch 'bad': cidr_block: 10.9.0.0/24 is not inside the VPC's cidr_block 192.168.0.0/16"),
    "overlapping vSwitches": (
        'vpc.Switch("bad", vpc_id=network.id, cidr_block="192.168.1.128/25", zone_id="z1")',
        "vpc.Switch 'bad': cidr_block: 192.168.1.128/25 overlaps"),
    "private_ip outside its vSwitch": ('ecs.Instance("bad", vswitch_id=vsw.id, private_ip="192.168.2.10")',
                                       "ecs.Instance 'bad': private_ip: 192.168.2.10 is not inside"),
    "private_ip reserved": ('ecs.Instance("bad", vswitch_id=vsw.id, private_ip="192.168.1.253")',
                            "ecs.Instance 'bad': private_ip: 192.168.1.253 is reserved"),
    "private_ip taken": ('ecs.Instance("a", vswitch_id=vsw.id, private_ip="192.168.1.10")\n'
                         'ecs.Instance("bad", vswitch_id=vsw.id, private_ip="192.168.1.10")',
                         "ecs.Instance 'bad': private_ip: 192.168.1.10 is already used"),
    "bad port range": (
        'sg = ecs.SecurityGroup("sg", vpc_id=network.id)\n'
        'ecs.SecurityGroupRule("bad", security_group_id=sg.id, type="ingress", ip_protocol="tcp", '
        'port_range="90/80", cidr_ip="0.0.0.0/0")',
        "port_range: 90/80: the start port is after the end port"),
    "bad priority": (
        'sg = ecs.SecurityGroup("sg", vpc_id=network.id)\n'
        'ecs.SecurityGroupRule("bad", security_group_id=sg.id, type="ingress", ip_protocol="tcp", '
        'port_range="80/80", cidr_ip="0.0.0.0/0", priority=101)',
        "priority: 101 is not an integer from 1 to 100"),
    "bad route destination": (
        'node = ecs.Instance("node", vswitch_id=vsw.id)\n'
        'vpc.RouteEntry("bad", route_table_id=network.route_table_id, destination_cidrblock="192.168.1.0/26", '
        'nexthop_id=node.id)',
        "destination_cidrblock: 192.168.1.0/26 lies inside vSwitch block 192.168.1.0/24"),
    "unknown vSwitch": ('ecs.Instance("bad", vswitch_id="vsw-00000000")', "vsw-00000000"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_before_anything_is_made(case, lab, program_stack):
    line, message = CASES[case]
    result = program_stack(HEAD + line + "\n").run("up", "--yes", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output, output[-2000:]
    if case != "unknown vSwitch":  # found only when the instance is created, after its vSwitch exists
        assert list_namespaces(mark(lab)) == [], "something was created before the error"
