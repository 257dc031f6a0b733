"""Pod addressing, pure: a pod CIDR per node (VPC-route and VXLAN modes), host-local allocation inside it, and
ENI secondary-IP pools (Terway ENI multi-IP). Allocation is stable: a pod keeps its address while it exists.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from netns.model.errors import ValidationError

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address


def node_pod_cidrs(cluster_cidr: str, nodes: Iterable[str], node_prefix: int = 24) -> dict[str, Net]:
    """Node → its pod CIDR: the cluster CIDR cut into /``node_prefix`` blocks, handed out in node-name order
    (like kube-controller-manager's range allocator, made deterministic)."""
    try:
        cluster = ipaddress.IPv4Network(cluster_cidr)
    except ValueError as exc:
        raise ValidationError("cluster", "pod_cidr", f"{cluster_cidr!r}: {exc}") from None
    if not cluster.prefixlen <= node_prefix <= 28:
        raise ValidationError("cluster", "node_cidr_mask", f"/{node_prefix} must lie between the cluster CIDR's "
                              f"/{cluster.prefixlen} and /28")
    nodes = sorted(set(nodes))
    blocks = cluster.subnets(new_prefix=node_prefix)
    result = {}
    for node in nodes:
        try:
            result[node] = next(blocks)
        except StopIteration:
            raise ValidationError("cluster", "pod_cidr", f"{cluster} has room for fewer than {len(nodes)} "
                                  f"/{node_prefix} node blocks") from None
    return result


def bridge_gateway(pod_cidr: Net) -> Addr:
    """The node's address on its pod bridge (cni0): the first host of the block, as flannel's bridge uses."""
    return pod_cidr.network_address + 1


def host_local_pool(pod_cidr: Net) -> list[Addr]:
    """Addresses host-local IPAM hands to pods: the block's hosts minus the gateway."""
    gateway = bridge_gateway(pod_cidr)
    return [a for a in pod_cidr.hosts() if a != gateway]


def assign(pods: Sequence[str], pool: Sequence[Addr], current: Mapping[str, str], where: str) -> dict[str, Addr]:
    """Pod key → address from ``pool``. A pod keeps its current address when it is still in the pool; new pods
    get the lowest free addresses, in key order."""
    free_set = set(pool)
    result: dict[str, Addr] = {}
    for key in sorted(pods):
        address = current.get(key)
        if address is not None and Addr(address) in free_set:
            result[key] = Addr(address)
            free_set.discard(Addr(address))
    free = [a for a in pool if a in free_set]
    for key in sorted(pods):
        if key in result:
            continue
        if not free:
            raise ValidationError(where, "pods", f"no free pod address left for {key} ({len(pool)} in the pool)")
        result[key] = free.pop(0)
    return result


def overlay_mtu(underlay_mtu: int) -> int:
    """VXLAN adds 50 bytes (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8): flannel sets MTU - 50."""
    return underlay_mtu - 50


def vtep_mac(node_ip: str) -> str:
    """A stable, locally administered MAC for a node's flannel.1, derived from its address."""
    octets = Addr(node_ip).packed
    return "0e:fe:" + ":".join(f"{b:02x}" for b in octets)
