"""The cluster's pod network as data, and the plan: which pod runs on which node with which address. Pure.

Datapaths (``acklab:datapath`` in the stack config):
- ``terway-eniip``: Terway ENI multi-IP — pod addresses are secondary IPs of the node's secondary ENI, taken
  from a pod vSwitch; pods are plumbed with Terway's routed veth and policy routing.
- ``vpc-route``: what ACK calls Flannel — a pod CIDR per node, host-local IPAM, one VPC route entry per node.
- ``vxlan``: community Flannel VXLAN — the same pod CIDRs carried between nodes in VXLAN (VNI 1, port 8472).
- ``terway-eni``: Terway's exclusive ENI mode — each pod's eth0 is an ENI of its own, made by the node agent
  (live IPAM only: no pod plan), and a veth to the node carries its Service traffic.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from acklab.k8s.model import ipam
from acklab.k8s.model.objects import Cluster, Pod, schedule
from netns.model.errors import ValidationError

DATAPATHS = ("terway-eniip", "vpc-route", "vxlan", "terway-eni")
CIDR_DATAPATHS = ("vpc-route", "vxlan")
EXCLUSIVE_ENI = "terway-eni"


@dataclass(frozen=True)
class Node:
    """A Kubernetes node: an ECS instance's namespace, its primary address and its pod addressing."""

    name: str
    netns: str
    ip: str
    pod_cidr: str | None = None  # vpc-route, vxlan
    eni_ifname: str = "eth1"  # terway-eniip: the secondary ENI in the node's namespace ...
    eni_gateway: str | None = None  # ... the gateway of its (pod) vSwitch
    eni_ips: tuple[str, ...] = ()  # ... and the secondary IPs assigned to it (the pod address pool)


@dataclass(frozen=True)
class Network:
    lab: str
    datapath: str
    nodes: tuple[Node, ...]
    cluster_cidr: str | None = None
    service_cidr: str | None = None  # terway-eni: routed to the node through each pod's veth1

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ValidationError(f"cluster of lab {self.lab}", "nodes", f"{name!r} is not a node")


@dataclass(frozen=True)
class Placement:
    pod: Pod
    node: str
    ip: str
    prefixlen: int  # the pod's address prefix on eth0 (/32 for Terway's routed veth)
    gateway: str  # the pod's default gateway
    mtu: int = 1500
    extra: Mapping[str, str] = field(default_factory=dict)


def check_network(network: Network) -> None:
    where = f"cluster of lab {network.lab}"
    if network.datapath not in DATAPATHS:
        raise ValidationError(where, "datapath", f"{network.datapath!r} must be one of {', '.join(DATAPATHS)}")
    if not network.nodes:
        raise ValidationError(where, "nodes", "no ECS instance carries the Kubernetes node tag (ack.aliyun.com)")
    if network.datapath == EXCLUSIVE_ENI:
        raise ValidationError(where, "datapath", "terway-eni makes an ENI per pod through the API's node agent "
                              "(a cluster of cs.ManagedKubernetes or cluster.yml), not from a pod plan")
    if network.datapath in CIDR_DATAPATHS:
        if not network.cluster_cidr:
            raise ValidationError(where, "pod_cidr", f"is required for the {network.datapath} datapath")
        cluster = ipaddress.IPv4Network(network.cluster_cidr)
        for node in network.nodes:
            if not node.pod_cidr or not ipaddress.IPv4Network(node.pod_cidr).subnet_of(cluster):
                raise ValidationError(f"node {node.name}", "pod_cidr",
                                      f"{node.pod_cidr!r} must be a block inside the cluster's {cluster}")
    else:
        for node in network.nodes:
            if not node.eni_ips or not node.eni_gateway:
                raise ValidationError(f"node {node.name}", "secondary ENI",
                                      "terway-eniip needs a secondary ENI with secondary private IPs")


def plan(network: Network, cluster: Cluster, current: Mapping[str, tuple[str, str]],
         underlay_mtu: int = 1500) -> dict[str, Placement]:
    """Pod key → placement. ``current`` maps running pods to (node, ip): they keep both while they can."""
    check_network(network)
    pods = cluster.all_pods()
    nodes = {n.name: n for n in network.nodes}
    placed = schedule(pods, nodes, {k: node for k, (node, _) in current.items()})
    result: dict[str, Placement] = {}
    for node_name, node in sorted(nodes.items()):
        here = [p for p in pods if placed[p.key] == node_name]
        kept = {k: ip for k, (n, ip) in current.items() if n == node_name}
        if network.datapath in CIDR_DATAPATHS:
            block = ipaddress.IPv4Network(node.pod_cidr)
            pool = ipam.host_local_pool(block)
            gateway, prefixlen = str(ipam.bridge_gateway(block)), block.prefixlen
        else:
            pool = [ipaddress.IPv4Address(a) for a in node.eni_ips]
            gateway, prefixlen = "169.254.1.1", 32
        addresses = ipam.assign([p.key for p in here], pool, kept, f"node {node_name}")
        mtu = ipam.overlay_mtu(underlay_mtu) if network.datapath == "vxlan" else underlay_mtu
        for pod in here:
            result[pod.key] = Placement(pod, node_name, str(addresses[pod.key]), prefixlen, gateway, mtu)
    return result


def node_from_dict(data: Mapping) -> Node:
    """A node as plain data (the node agent's configuration file): name, netns, ip and its pod addressing."""
    return Node(data["name"], data["netns"], data["ip"], data.get("pod_cidr"), data.get("eni_ifname") or "eth1",
                data.get("eni_gateway"), tuple(data.get("eni_ips") or ()))
