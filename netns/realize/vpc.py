"""VPC → a router namespace; vSwitch → a bridge in it that carries the vSwitch gateway address.

The router namespace forwards between its vSwitches (connected routes) and holds an ``unreachable``
route for the VPC's whole CIDR block: traffic to addresses of the VPC that no vSwitch serves is refused,
and the kernel itself records the VPC's block (read back on refresh).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netns.kernel import netlink
from netns.kernel.link import (
    ENODEV,
    Bridge,
    ensure_address,
    ensure_unreachable,
    index_of,
    port_aliases,
    unreachable_routes,
)
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model import addressing
from netns.model.errors import NotFoundError
from netns.model.names import is_cloud_id, mark, netns_name
from netns.realize import alias_addresses, format_alias, lab_lock, parse_alias, source_check, state_dir

if TYPE_CHECKING:
    from pyroute2 import IPRoute


@dataclass(frozen=True)
class VpcRouter:
    lab: str
    vpc_id: str

    @property
    def namespace(self) -> Namespace:
        return Namespace(netns_name(self.lab, self.vpc_id))

    def create(self, cidr: ipaddress.IPv4Network) -> None:
        created = self.namespace.create()
        try:
            self.namespace.sysctl("net.ipv4.ip_forward", 1)
            with self.namespace.ipr() as ipr:
                ensure_unreachable(ipr, cidr)
            source_check.install(self.namespace)
        except Exception:
            if created:
                self.namespace.remove()
            raise

    def cidr(self) -> ipaddress.IPv4Network | None:
        """The VPC block as the kernel holds it, or None if the router is gone."""
        if not self.namespace.exists():
            return None
        with self.namespace.ipr() as ipr:
            blocks = unreachable_routes(ipr)
        return blocks[0] if blocks else None

    @property
    def pending_unbind(self) -> Path | None:
        """Where the source check's deferred removals wait (per router incarnation: its netns inode)."""
        inode = self.namespace.inode()
        return state_dir(self.lab) / f"{self.vpc_id}.{inode}.unbind" if inode is not None else None

    def port_facts(self, ifname: str, with_vswitch: bool = True) -> dict[str, str] | None:
        """The facts on one router port (an ENI), with the vSwitch it is plugged into; None if absent."""
        if not self.namespace.exists():
            return None
        with self.namespace.ipr() as ipr:
            try:
                link = ipr.link("get", ifname=ifname)[0]  # asked by name: no dump
            except netlink.NetlinkError as exc:
                if exc.code == ENODEV:
                    return None
                raise
            facts = parse_alias(link.get("IFLA_IFALIAS"))
            master = link.get("IFLA_MASTER")
            if master and with_vswitch:
                facts["vswitch"] = ipr.get_links(master)[0].get("ifname")
            return facts

    def vswitches(self) -> list[VSwitch]:
        if not self.namespace.exists():
            return []
        with self.namespace.ipr() as ipr:
            names = [link.get("ifname") for link in ipr.get_links()
                     if link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "bridge"]
        return [VSwitch(self, name) for name in sorted(names)]

    def delete(self) -> None:
        # under the lab lock: its state files (applied ruleset, deferred unbinds) are read and rewritten under it
        with lab_lock(self.lab):
            self.namespace.remove()
            for leftover in state_dir(self.lab).glob(f"{self.vpc_id}.*"):
                leftover.unlink(missing_ok=True)  # the router's last applied ruleset


@dataclass(frozen=True)
class VSwitch:
    router: VpcRouter
    vswitch_id: str

    @property
    def bridge(self) -> Bridge:
        return Bridge(self.router.namespace, self.vswitch_id)

    def create(self, cidr: ipaddress.IPv4Network, zone_id: str, resource: str) -> None:
        """Validate against the VPC as the kernel holds it, then make the bridge and its gateway."""
        with lab_lock(self.router.lab):
            vpc_cidr = self.router.cidr()
            if vpc_cidr is None:
                raise NotFoundError(f"{resource}: vpc_id: VPC {self.router.vpc_id} does not exist")
            siblings = [(s.vswitch_id, s.cidr()) for s in self.router.vswitches() if s.vswitch_id != self.vswitch_id]
            addressing.check_vswitch_cidr(resource, str(cidr), vpc_cidr, [(n, c) for n, c in siblings if c])
            try:
                self.bridge.ensure(alias=format_alias(zone=zone_id, cidr=str(cidr)))
                with self.router.namespace.ipr() as ipr:
                    gateway = addressing.gateway(cidr)
                    ensure_address(ipr, self.vswitch_id, ipaddress.IPv4Interface(f"{gateway}/{cidr.prefixlen}"))
            except Exception:
                self.bridge.remove()
                raise

    def cidr(self) -> ipaddress.IPv4Network | None:
        if not self.router.namespace.exists():
            return None
        with self.router.namespace.ipr() as ipr:
            return self.locate(ipr)[1]

    def locate(self, ipr: IPRoute) -> tuple[int | None, ipaddress.IPv4Network | None]:
        """The bridge's interface index and the vSwitch's block, in an open session of the router."""
        index = index_of(ipr, self.vswitch_id)
        if index is None:
            return None, None
        found = [a for a in ipr.get_addr(index=index, family=2)]
        return index, ipaddress.IPv4Network(f"{found[0].get('IFA_ADDRESS')}/{found[0]['prefixlen']}",
                                            strict=False) if found else None

    def zone_id(self) -> str | None:
        with self.router.namespace.ipr() as ipr:
            index = index_of(ipr, self.vswitch_id)
            if index is None:
                return None
            return parse_alias(ipr.get_links(index)[0].get("IFLA_IFALIAS")).get("zone")

    def enis(self) -> dict[str, dict[str, str]]:
        """The ENIs plugged into this vSwitch: port name (the ENI id) → its facts (ip, instance)."""
        with self.router.namespace.ipr() as ipr:
            index = index_of(ipr, self.vswitch_id)
            if index is None:
                return {}
            return {
                link.get("ifname"): parse_alias(link.get("IFLA_IFALIAS"))
                for link in ipr.get_links()
                if link.get("IFLA_MASTER") == index
            }

    def used_addresses(self, index: int | None = None) -> set[ipaddress.IPv4Address]:
        """Addresses held by the ports of this vSwitch (``ip=`` and ``secondary=`` on their aliases).

        Read with one kernel-filtered dump parsed by hand (``port_aliases``): this runs for every ECS
        created. A port being torn down has its facts taken off first, so it holds nothing.
        """
        if index is None:
            with self.router.namespace.ipr() as ipr:
                index = index_of(ipr, self.vswitch_id)
        if index is None:
            return set()
        used = set()
        for text in port_aliases(self.router.namespace, index).values():
            facts = parse_alias(text)
            used |= {ipaddress.IPv4Address(a) for a in (facts.get("ip", ""), *alias_addresses(facts)) if a}
        return used

    def delete(self) -> None:
        if self.router.namespace.exists():
            self.bridge.remove()


def routers(lab: str) -> list[VpcRouter]:
    prefix = mark(lab) + "vpc-"
    return [VpcRouter(lab, ns.name[len(mark(lab)):]) for ns in list_namespaces(prefix)]


def find_vswitch(lab: str, vswitch_id: str) -> VSwitch:
    """Locate a vSwitch of the lab by id: the router namespace that holds a bridge of that name."""
    if not is_cloud_id(vswitch_id, "vsw"):  # not even a possible bridge name: never ask the kernel
        raise NotFoundError(f"vSwitch {vswitch_id!r} does not exist in lab {lab}")
    for router in routers(lab):
        with router.namespace.ipr() as ipr:
            if index_of(ipr, vswitch_id) is not None:
                return VSwitch(router, vswitch_id)
    raise NotFoundError(f"vSwitch {vswitch_id} does not exist in lab {lab}")
