"""Flannel on the API, pure: what a node's agent reads from and writes to Node objects for the ``vpc-route`` (ACK's
"Flannel") and ``vxlan`` (community Flannel) datapaths.

Flannel's kube subnet manager: the controller-manager's range allocator gives each Node a block of the cluster's
pod CIDR (``spec.podCIDR``); the node's agent builds its bridge on that block and hands pods its addresses
(host-local), announces itself in Flannel's annotations, and (VXLAN) programs one route, neighbour and FDB entry
per other Node from their ``podCIDR`` and InternalIP. In VPC-route mode the cloud controller routes each block in
the VPC instead (``cloud_controller``: ACK's route controller).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any

from acklab.k8s.model import ipam
from acklab.k8s.model.pod_network import Node

PREFIX = "flannel.alpha.coreos.com/"
# Flannel's backend names: ACK's Flannel routes pod blocks in the VPC (its ali-vpc backend)
BACKENDS = {"vpc-route": "ali-vpc", "vxlan": "vxlan"}
VXLAN_VNI = 1
KUBELET_MAX_PODS = 110  # the kubelet's default --max-pods
USER = "acklab:flannel"  # Flannel's client identity (upstream: the kube-flannel/flannel ServiceAccount)
# What upstream's ClusterRole ``flannel`` grants that a node's own identity lacks: reading every Node (the node
# authorizer lets a node read only its own Node object).
RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "acklab:flannel"}}
rules:
  - {{apiGroups: [""], resources: [nodes], verbs: [get, list, watch]}}
  - {{apiGroups: [""], resources: [nodes/status], verbs: [patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "acklab:flannel"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "acklab:flannel"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{USER}"}}]
"""


def pod_cidr_of(node: Mapping[str, Any]) -> str | None:
    """The block the range allocator gave the Node (``spec.podCIDR``), None until it has one."""
    return (node.get("spec") or {}).get("podCIDR") or None


def internal_ip(node: Mapping[str, Any]) -> str | None:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return address.get("address")
    return None


def annotations(datapath: str, node_ip: str) -> dict[str, str]:
    """What flanneld writes on its Node: the backend, its data (VXLAN: the VNI and the VTEP's MAC) and the
    address other nodes reach it at."""
    data: dict[str, Any] = {}
    if datapath == "vxlan":
        data = {"VNI": VXLAN_VNI, "VtepMAC": ipam.vtep_mac(node_ip)}
    return {f"{PREFIX}backend-type": BACKENDS[datapath], f"{PREFIX}backend-data": json.dumps(data),
            f"{PREFIX}kube-subnet-manager": "true", f"{PREFIX}public-ip": node_ip}


def peers(nodes: Iterable[Mapping[str, Any]], me: str) -> tuple[Node, ...]:
    """The other Nodes that have a block and an address, as the datapath's peers (by name: a stable order)."""
    found = []
    for node in nodes:
        name = (node.get("metadata") or {}).get("name")
        cidr, ip = pod_cidr_of(node), internal_ip(node)
        if name and name != me and cidr and ip:
            found.append(Node(name, "", ip, cidr))
    return tuple(sorted(found, key=lambda n: n.name))


def max_pods(block: str) -> int:
    """The Node's pod capacity: its block's host-local addresses, at most the kubelet's default."""
    return min(KUBELET_MAX_PODS, len(ipam.host_local_pool(ipaddress.IPv4Network(block))))


def network_up(heartbeat: str, since: str) -> dict[str, str]:
    """The condition flanneld sets once its network is up (RFC 3339 times: now, and when it came up)."""
    return {"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp",
            "message": "Flannel is running on this node", "lastTransitionTime": since, "lastHeartbeatTime": heartbeat}
