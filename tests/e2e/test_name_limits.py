"""Bad input that would overflow a kernel name limit: one clear error naming the field, nothing created."""

from __future__ import annotations

import pytest

from netns.kernel.namespace import list_namespaces
from netns.model.names import mark
from tests.e2e.test_pulumi_up import Stack, temp_project

pytestmark = pytest.mark.e2e

# A vSwitch id names the vSwitch's bridge: an id of 20 characters cannot name a Linux interface (15 at most).
OVERLONG_VSWITCH_ID = """
from pulumi_alicloud import ecs, vpc
network = vpc.Network("vpc", cidr_block="192.168.0.0/16")
vsw = vpc.Switch("vsw", vpc_id=network.id, cidr_block="192.168.1.0/24", zone_id="cn-hangzhou-h")
ecs.Instance("e", vswitch_id="vsw-0123456789abcdef", private_ip="192.168.1.10", instance_type="ecs.g7.large",
             image_id="ubuntu_22_04_x64_20G_alibase_20240130.vhd")
"""


def test_overlong_interface_name_is_refused_before_anything_is_made(lab, tmp_path):
    stack = Stack(temp_project(tmp_path, OVERLONG_VSWITCH_ID), lab, tmp_path)
    stack.init()
    result = stack.run("up", "--yes", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "vswitch_id" in output and "'vsw-0123456789abcdef' is 20 characters; a Linux interface name has at " \
        "most 15" in output, output
    assert list_namespaces(mark(lab)) == []
