"""The default lab: one VPC, two vSwitches in two zones, three ECS instances, as a pulumi-alicloud program.

`import pulumi_alicloud as alicloud` is the real SDK; acklab's `alicloud` provider plugin (named in Pulumi.yaml)
realizes its resources on the local kernel instead of in a region (docs/provider.md). With the stack setting
`acklab:datapath`, ecs-1 and ecs-2 become Kubernetes nodes (tagged like ACK's nodes) and the program adds what the
pod datapath needs from the cloud; `ansible-playbook cluster.yml` (`make up`) then runs a control plane and a node
agent per node, and the workloads come through the API (`kubectl apply`). Terway's agent makes the pods' ENIs (in
the pod vSwitch and security group this program exports; with `terway-eni`, Terway's exclusive ENI mode, an ENI per
pod), or, with Flannel (vpc-route, vxlan), the controller-manager gives each Node a block of `acklab:podCidr` and
the cloud controller routes it in the VPC (vpc-route); the cloud controller makes the LoadBalancer Services' SLBs.
"""

import pulumi
import pulumi_alicloud as alicloud

from acklab.k8s.model import ipam
from acklab.k8s.realize.pod_network import load_records
from netns.model.names import netns_name

config = pulumi.Config("acklab")
# terway-eniip (ACK's default, this lab's too) | terway-eni (Terway's exclusive ENI mode) | vpc-route (ACK's
# "Flannel") | vxlan (community Flannel) | none
datapath = config.get("datapath") or "terway-eniip"
datapath = None if datapath == "none" else datapath
TERWAY = ("terway-eniip", "terway-eni")
# The first wave's `acklab:cluster playbook` (pods from a manifests folder, ansible/site.yml) is gone: every lab's
# workloads come through its API server. A lab whose pods that way built is refused before anything changes.
if (config.get("cluster") or "api") != "api":
    raise ValueError(f"acklab:cluster: {config.get('cluster')!r}: the file-driven playbook way was removed; the "
                     "cluster runs on its API server (acklab:cluster api, the default)")
if any(not r.pod.uid for r in load_records(pulumi.get_stack()).values()):
    raise ValueError(f"lab {pulumi.get_stack()}'s pods were built by the removed playbook way (site.yml); take it "
                     "down first (make down)")
pod_cidr = config.get("podCidr") or "10.244.0.0/16"  # vpc-route, vxlan
node_cidr_mask = config.get_int("nodeCidrMask") or 24  # vpc-route, vxlan: each node's block
NODES = ("ecs-1", "ecs-2")
NODE_TAGS = {"ack.aliyun.com": "c-acklab"}  # ACK tags its nodes' ECS instances with this key
IMAGE = "ubuntu_22_04_x64_20G_alibase_20240101.vhd"  # kept, not realized: an instance is a namespace
POD_VSWITCH_CIDR = "192.168.3.0/24"  # terway-eniip, terway-eni
# ACK's exclusive ENI nodes need instance types with more than 6 ENIs: one pod per ENI but the primary (7 here)
NODE_TYPE = "ecs.g7.4xlarge" if datapath == "terway-eni" else "ecs.g7.large"


def namespace(cloud_id: pulumi.Output[str]) -> pulumi.Output[str]:
    """The network namespace realizing a VPC or an instance: an acklab-only fact, exported for tests and tools."""
    return cloud_id.apply(lambda value: netns_name(pulumi.get_stack(), value))


network = alicloud.vpc.Network("vpc", vpc_name="acklab-vpc", cidr_block="192.168.0.0/16")

zone_h = alicloud.vpc.Switch("vsw-h", vpc_id=network.id, cidr_block="192.168.1.0/24", zone_id="cn-hangzhou-h",
                             vswitch_name="acklab-vsw-h")
zone_i = alicloud.vpc.Switch("vsw-i", vpc_id=network.id, cidr_block="192.168.2.0/24", zone_id="cn-hangzhou-i",
                             vswitch_name="acklab-vsw-i")

# Security groups (for the acceptance matrix, tests/acceptance): ecs-3 and, with Terway, the pods' ENIs are
# filtered; the nodes' primary ENIs are in no group, unfiltered (a lab convenience). Basic groups: members reach
# each other, all egress is allowed, other ingress needs a rule.
pod_sources = POD_VSWITCH_CIDR if datapath in TERWAY else pod_cidr  # the source ecs-3 sees from pods
ecs_group = alicloud.ecs.SecurityGroup("sg-ecs", vpc_id=network.id, security_group_name="acklab-ecs")
for rule_name, protocol, ports, cidr in (("nodes", "all", "-1/-1", "192.168.1.0/24"),  # the nodes reach ecs-3
                                         ("pods-tcp", "tcp", "80/80", pod_sources),  # pods reach its TCP port 80
                                         ("pods-udp", "udp", "53/53", pod_sources)):  # and its UDP port 53
    alicloud.ecs.SecurityGroupRule(f"sg-ecs-{rule_name}", security_group_id=ecs_group.id, type="ingress",
                                   ip_protocol=protocol, port_range=ports, cidr_ip=cidr)


def instance(name: str, vswitch: alicloud.vpc.Switch, private_ip: str,
             groups: list[pulumi.Output[str]] | None = None) -> alicloud.ecs.Instance:
    """An ECS instance named like its resource (the inventory's host name); the nodes carry ACK's tag."""
    return alicloud.ecs.Instance(name, instance_name=name, vswitch_id=vswitch.id, private_ip=private_ip,
                                 instance_type=NODE_TYPE if name in NODES else "ecs.g7.large", image_id=IMAGE,
                                 security_groups=groups,
                                 tags=NODE_TAGS if datapath and name in NODES else None)


instances = {
    "ecs-1": instance("ecs-1", zone_h, "192.168.1.10"),
    "ecs-2": instance("ecs-2", zone_h, "192.168.1.11"),
    "ecs-3": instance("ecs-3", zone_i, "192.168.2.10", [ecs_group.id]),
}

pulumi.export("vpc_id", network.id)
pulumi.export("vpc_netns", namespace(network.id))
pulumi.export("vswitches", {"vsw-h": zone_h.id, "vsw-i": zone_i.id})
pulumi.export("instances", {
    name: {"id": inst.id, "private_ip": inst.private_ip, "netns": namespace(inst.id)}
    for name, inst in instances.items()
})

if datapath in ("vpc-route", "vxlan"):
    # the controller-manager gives each Node its block; with vpc-route the cloud controller routes it in the VPC
    ipam.node_pod_cidrs(pod_cidr, NODES, node_cidr_mask)  # a bad CIDR or mask stops the program here
    kubernetes = {"datapath": datapath, "cluster": "api", "pod_cidr": pod_cidr, "node_cidr_mask": node_cidr_mask}
elif datapath in TERWAY:
    # Terway ENI multi-IP: pods take secondary IPs of ENIs Terway's agent attaches in a pod vSwitch of the zone
    # (exclusive ENI mode: an ENI of the pod vSwitch per pod)
    pod_vswitch = alicloud.vpc.Switch("vsw-pods-h", vpc_id=network.id, cidr_block=POD_VSWITCH_CIDR,
                                      zone_id="cn-hangzhou-h", vswitch_name="acklab-vsw-pods-h")
    # the pods' ENIs: the nodes' vSwitch and SLBs (Alibaba's SLBs reach backends from 100.64.0.0/10) reach every
    # port; ECS on vsw-i reach the demo pods' HTTP (TCP 8080) and UDP (8081) ports only
    pod_group = alicloud.ecs.SecurityGroup("sg-pods", vpc_id=network.id, security_group_name="acklab-pods")
    for rule_name, protocol, ports, cidr in (("nodes", "all", "-1/-1", "192.168.1.0/24"),
                                             ("slb", "all", "-1/-1", "100.64.0.0/10"),
                                             ("ecs-tcp", "tcp", "8080/8080", "192.168.2.0/24"),
                                             ("ecs-udp", "udp", "8081/8081", "192.168.2.0/24")):
        alicloud.ecs.SecurityGroupRule(f"sg-pods-{rule_name}", security_group_id=pod_group.id, type="ingress",
                                       ip_protocol=protocol, port_range=ports, cidr_ip=cidr)
    # Terway's agent on each node attaches ENIs in the pod vSwitch and this group as pods need addresses (Terway's
    # eni_conf: vswitches, security_group_ids); they are the cluster's, not in this stack.
    kubernetes = {"datapath": datapath, "cluster": "api", "pod_vswitch_ids": [pod_vswitch.id],
                  "pod_security_group_ids": [pod_group.id], "pod_cidr": POD_VSWITCH_CIDR}

if datapath:
    pulumi.export("kubernetes", kubernetes)
