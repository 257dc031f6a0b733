"""The default lab: one VPC, two vSwitches in two zones, three ECS instances.

Reads like a pulumi-alicloud program; `netns` realizes it on the local kernel instead of in a region.
"""

import pulumi

from netns import ecs, vpc

network = vpc.Network("vpc", vpc_name="acklab-vpc", cidr_block="192.168.0.0/16")

zone_h = vpc.Switch("vsw-h", vpc_id=network.id, cidr_block="192.168.1.0/24", zone_id="cn-hangzhou-h",
                    vswitch_name="acklab-vsw-h")
zone_i = vpc.Switch("vsw-i", vpc_id=network.id, cidr_block="192.168.2.0/24", zone_id="cn-hangzhou-i",
                    vswitch_name="acklab-vsw-i")

instances = {
    "ecs-1": ecs.Instance("ecs-1", vswitch_id=zone_h.id, private_ip="192.168.1.10", instance_type="ecs.g7.large"),
    "ecs-2": ecs.Instance("ecs-2", vswitch_id=zone_h.id, private_ip="192.168.1.11", instance_type="ecs.g7.large"),
    "ecs-3": ecs.Instance("ecs-3", vswitch_id=zone_i.id, private_ip="192.168.2.10", instance_type="ecs.g7.large"),
}

pulumi.export("vpc_id", network.id)
pulumi.export("vpc_netns", network.netns)
pulumi.export("vswitches", {"vsw-h": zone_h.id, "vsw-i": zone_i.id})
pulumi.export("instances", {
    name: {"id": inst.id, "private_ip": inst.private_ip, "netns": inst.netns} for name, inst in instances.items()
})
