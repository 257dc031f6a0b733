"""Pod addressing, pure: a pod CIDR per node (VPC-route and VXLAN modes), host-local allocation inside it,
ENI secondary-IP pools (Terway ENI multi-IP) and ENIs of their own (Terway's exclusive ENI mode). Allocation is
stable: a pod keeps its address while it exists.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    if not cluster.prefixlen < node_prefix <= 28:
        raise ValidationError("cluster", "node_cidr_mask", f"/{node_prefix} must lie after the cluster CIDR's "
                              f"/{cluster.prefixlen} and at most /28")
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


class PodAddressPool(Protocol):
    """Where a node's pod addresses come from. The node agent asks for one per pod and gives it back when the
    pod goes; live Terway IPAM (secondary IPs assigned on demand, a warm pool) will be another implementation."""

    def allocate(self, key: str) -> str: ...

    def release(self, key: str, now: float) -> None: ...


class _CoolingAddresses:
    """The bookkeeping both pools share (``held``: pod key → address; ``released``: address → when given back).

    Like Terway's pool, a released address cools down: a new pod gets the free address given back longest ago
    (never used ones first), so a recreated pod gets a new address while the pool has another."""

    held: dict[str, str]
    released: dict[str, float]

    def _take(self, key: str, free: Sequence[str], order: Any) -> str:
        address = min(free, key=lambda a: (self.released.get(a, float("-inf")), order(a)))
        self.held[key] = address
        self.released.pop(address, None)
        return address

    def _allocate(self, key: str, addresses: Sequence[str], empty: str) -> str:
        """The pod's address: the one it holds, else the free one given back longest ago; ``empty`` says why
        there is none."""
        if key in self.held:
            return self.held[key]
        taken = set(self.held.values())
        free = [a for a in addresses if a not in taken]
        if not free:
            raise ValidationError(f"pod {key}", "ip", empty)
        return self._take(key, free, Addr)

    def adopt(self, key: str, address: str) -> None:
        """A pod that already has an address (found again after a restart of the agent)."""
        self.held[key] = address

    def release(self, key: str, now: float) -> None:
        address = self.held.pop(key, None)
        if address is not None:
            self.released[address] = now


@dataclass
class EniAddressPool(_CoolingAddresses):
    """The secondary IPs already on the node's pod ENI (what the Terway datapath hands out today).

    A pod keeps its address while it exists. Like Terway's pool, a released address cools down: new pods get
    the address free longest (never used ones first, in address order), so a recreated pod gets a new address
    while the pool has another."""

    addresses: Sequence[str]
    held: dict[str, str] = field(default_factory=dict)  # pod key → address
    released: dict[str, float] = field(default_factory=dict)  # address → when it was given back

    def allocate(self, key: str) -> str:
        return self._allocate(key, self.addresses, f"no free address on the pod ENI ({len(self.addresses)} "
                                                   "secondary IPs, all in use)")


@dataclass
class HostLocalPool(_CoolingAddresses):
    """Flannel's host-local IPAM on a node's block (``spec.podCIDR``): every host address but the bridge's. As
    host-local goes round the range from the last address it gave, a released address is reused last."""

    addresses: Sequence[str]
    block: str
    held: dict[str, str] = field(default_factory=dict)
    released: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def of(block: str, released: dict[str, float] | None = None) -> HostLocalPool:
        return HostLocalPool([str(a) for a in host_local_pool(Net(block))], block, released=released or {})

    def allocate(self, key: str) -> str:
        return self._allocate(key, self.addresses, f"no free address in the node's pod CIDR {self.block} "
                                                   f"({len(self.addresses)} addresses, all in use)")


# --- Terway's live ENI IP management ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TerwayConfig:
    """Terway's share of a node agent's configuration (eni-config on ACK)."""

    vpc_id: str
    pod_vswitch_ids: tuple[str, ...]  # where Terway makes ENIs: those of the node's zone, the most free first
    security_groups: tuple[str, ...]
    min_pool_size: int = 0
    max_pool_size: int = 5
    # eni-config's service_cidr: an exclusive-ENI pod reaches Services through its veth1 to the node
    service_cidr: str = "172.21.0.0/20"

    def to_dict(self) -> dict[str, Any]:
        return {"vpc_id": self.vpc_id, "pod_vswitch_ids": list(self.pod_vswitch_ids),
                "security_groups": list(self.security_groups), "min_pool_size": self.min_pool_size,
                "max_pool_size": self.max_pool_size, "service_cidr": self.service_cidr}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> TerwayConfig:
        return TerwayConfig(data["vpc_id"], tuple(data["pod_vswitch_ids"]), tuple(data["security_groups"]),
                            int(data.get("min_pool_size", 0)), int(data.get("max_pool_size", 5)),
                            data.get("service_cidr", "172.21.0.0/20"))


# Terway's exclusive ENI mode per node pool (Terway >= 1.11, ACK's way today): the pool's nodes carry this label
EXCLUSIVE_ENI_LABEL, EXCLUSIVE_ENI_ONLY = "k8s.aliyun.com/exclusive-mode-eni-type", "eniOnly"
EXCLUSIVE_MIN_ENIS = 7  # ACK: such nodes need an instance type with more than 6 ENIs


def exclusive_pool(labels: Mapping[str, Any]) -> bool:
    """Whether a node pool's labels ask for Terway's exclusive ENI mode."""
    return labels.get(EXCLUSIVE_ENI_LABEL) == EXCLUSIVE_ENI_ONLY


class NoFreeAddress(Exception):
    """The node's quota of ENIs and IPs is used up: the pod waits (Pending, ContainerCreating) until one frees."""


@dataclass(frozen=True)
class TerwayEni:
    eni_id: str
    ifname: str  # its device in the node (eth1, eth2, ...)
    secondary: tuple[str, ...]  # the secondary IPs assigned to it: Terway's pod addresses
    primary: str = ""  # its primary address: the pod's in exclusive ENI mode
    gateway: str = ""  # its vSwitch's gateway ("": the node's configured pod vSwitch's)


class EniBackend(Protocol):
    """What Terway asks of ECS (the provider's realization in the lab): the node's Terway ENIs, a new ENI made
    and attached in the pod vSwitch, secondary IPs assigned to and unassigned from an ENI."""

    def enis(self) -> list[TerwayEni]: ...

    def create_eni(self) -> TerwayEni: ...

    def assign(self, eni_id: str, count: int) -> tuple[str, ...]: ...

    def unassign(self, eni_id: str, ips: Sequence[str]) -> None: ...

    def delete_eni(self, eni_id: str) -> None: ...


class _Watermarks:
    """Terway's low watermark, shared by both modes: ``warm`` fills the pool to ``min_pool_size`` free addresses
    (free ENIs in exclusive mode), as far as the quota lets."""

    min_pool_size: int

    def free(self) -> list[str]: ...

    def _grow(self, count: int) -> None: ...

    def warm(self) -> None:
        missing = self.min_pool_size - len(self.free())
        if missing > 0:
            with _suppress_quota():
                self._grow(missing)


@dataclass
class TerwayEniPool(_Watermarks, _CoolingAddresses):
    """Terway ENI multi-IP IPAM: pod addresses are secondary IPs assigned on demand on the node's Terway ENIs.

    A free address (the warm pool) is used first; else one more IP is assigned to an ENI with room; else a new
    ENI is made, up to the instance type's quota; past it ``NoFreeAddress`` says why. Released addresses return
    to the warm pool; beyond ``max_pool_size`` free ones are unassigned (Terway's high watermark), and the pool
    is filled to ``min_pool_size`` by ``warm`` (its low watermark)."""

    backend: EniBackend
    quota: Any  # netns.model.instance_types.EniQuota
    min_pool_size: int = 0
    max_pool_size: int = 5
    held: dict[str, str] = field(default_factory=dict)  # pod key → address
    released: dict[str, float] = field(default_factory=dict)  # address → when it was given back
    enis: list[TerwayEni] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.enis = list(self.backend.enis())

    # what the pool holds ---------------------------------------------------------------------------------------
    def addresses(self) -> list[str]:
        return [ip for eni in self.enis for ip in eni.secondary]

    def free(self) -> list[str]:
        taken = set(self.held.values())
        return [ip for ip in self.addresses() if ip not in taken]

    def interface_of(self, address: str) -> str:
        """The ENI device a pod address is on: its traffic leaves through that ENI's table."""
        return next(eni.ifname for eni in self.enis if address in eni.secondary)

    # the PodAddressPool interface ------------------------------------------------------------------------------
    def allocate(self, key: str) -> str:
        if key in self.held:
            return self.held[key]
        free = self.free()
        if not free:
            self._grow(1)
            free = self.free()
        return self._take(key, free, Addr)

    def release(self, key: str, now: float) -> None:
        super().release(key, now)
        self.trim()

    # watermarks --------------------------------------------------------------------------------------------------

    def trim(self) -> None:
        """Unassign free addresses beyond ``max_pool_size``: the ones released longest ago go last (they cool
        down), so the most recently freed are given back to the vSwitch first; ENIs stay (Terway keeps them)."""
        free = sorted(self.free(), key=lambda a: (self.released.get(a, float("-inf")), Addr(a)))
        extra = free[max(self.max_pool_size, self.min_pool_size):]
        for eni in list(self.enis):
            gone = [ip for ip in eni.secondary if ip in extra]
            if gone:
                self.backend.unassign(eni.eni_id, gone)
                self._replace(eni, tuple(ip for ip in eni.secondary if ip not in gone))
                for ip in gone:
                    self.released.pop(ip, None)

    def _grow(self, count: int) -> None:
        while count > 0:
            eni = next((e for e in self.enis if len(e.secondary) < self.quota.pods_per_eni), None)
            if eni is None:
                if len(self.enis) >= self.quota.pod_enis:
                    raise NoFreeAddress(f"no free address: {self.quota.describe()} ({self.quota.max_pods} pod "
                                        f"addresses on {self.quota.pod_enis} secondary ENIs, all in use)")
                eni = self.backend.create_eni()
                self.enis.append(eni)
            step = min(count, self.quota.pods_per_eni - len(eni.secondary))
            added = self.backend.assign(eni.eni_id, step)
            self._replace(eni, eni.secondary + tuple(added))
            count -= step

    def _replace(self, old: TerwayEni, secondary: tuple[str, ...]) -> None:
        self.enis[self.enis.index(old)] = TerwayEni(old.eni_id, old.ifname, secondary)


def _suppress_quota() -> contextlib.suppress:
    return contextlib.suppress(NoFreeAddress)  # a warm pool short of its target at the quota is not an error


@dataclass
class TerwayExclusivePool(_Watermarks, _CoolingAddresses):
    """Terway's exclusive ENI mode (``terway-eni``): every pod gets an ENI of its own, whose primary address is the
    pod's; the node datapath moves the ENI's device into the pod.

    A free ENI (the warm pool) is used first; else a new one is made, up to the instance type's secondary ENIs
    (ENIs - 1: the primary ENI stays the node's); past it ``NoFreeAddress`` says why. A pod's ENI comes back to
    the pool when it goes; beyond ``max_pool_size`` free ones are deleted, and ``warm`` makes ENIs up to
    ``min_pool_size`` free ones (the watermarks of Terway's pool, counted in ENIs here)."""

    backend: EniBackend
    quota: Any  # netns.model.instance_types.EniQuota
    min_pool_size: int = 0
    max_pool_size: int = 5
    held: dict[str, str] = field(default_factory=dict)  # pod key → address (its ENI's primary)
    released: dict[str, float] = field(default_factory=dict)  # address → when its ENI was given back
    enis: list[TerwayEni] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.enis = list(self.backend.enis())

    def free(self) -> list[str]:
        taken = set(self.held.values())
        return [eni.primary for eni in self.enis if eni.primary not in taken]

    def eni_of(self, address: str) -> TerwayEni:
        return next(eni for eni in self.enis if eni.primary == address)

    def interface_of(self, address: str) -> str:
        """The ENI device (in the node, while no pod holds it) whose primary address is ``address``."""
        return self.eni_of(address).ifname

    def allocate(self, key: str) -> str:
        if key in self.held:
            return self.held[key]
        if not self.free():
            self._grow(1)
        return self._take(key, self.free(), Addr)

    def release(self, key: str, now: float) -> None:
        super().release(key, now)
        self.trim()

    def resync(self) -> None:
        """The node's ENIs read again: an ENI whose device went with its pod's namespace (deleted behind the lab's
        back) is gone, and so is its pod's hold on the address (the pod is made again with another ENI)."""
        self.enis = list(self.backend.enis())
        primaries = {eni.primary for eni in self.enis}
        self.held = {key: address for key, address in self.held.items() if address in primaries}


    def trim(self) -> None:
        """Delete free ENIs beyond ``max_pool_size``: the most recently given back go first (those given back
        longest ago are the ones the next pods take)."""
        free = sorted(self.free(), key=lambda a: (self.released.get(a, float("-inf")), Addr(a)))
        for address in free[max(self.max_pool_size, self.min_pool_size):]:
            eni = self.eni_of(address)
            self.backend.delete_eni(eni.eni_id)
            self.enis.remove(eni)
            self.released.pop(address, None)

    def _grow(self, count: int) -> None:
        for _ in range(count):
            if len(self.enis) >= self.quota.pod_enis:
                raise NoFreeAddress(f"no free ENI: {self.quota.describe()} ({self.quota.pod_enis} secondary ENIs "
                                    "for pods in exclusive ENI mode, all in use)")
            self.enis.append(self.backend.create_eni())
