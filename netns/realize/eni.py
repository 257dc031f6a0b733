"""An ENI's place on the fabric: its port on the vSwitch bridge, the addresses bound to it, its groups.

Every ENI, primary (an instance's eth0) or secondary (``ecs.EcsNetworkInterface``), is a veth pair whose
router end is a port of its vSwitch's bridge named by the ENI id. The port's alias carries the ENI's facts
(``ip=`` primary address, ``secondary=`` secondary private IPs packed as runs (``pack_addresses``: a Terway ENI's
30 fit the 255 bytes), ``routes=`` blocks routed to its instance,
``sg=`` groups, ``instance=``/``device=`` when attached, ``name=``). Its addresses are bound to the port in the
VPC's source check, which is also the record address allocation reads; its groups' ipsets hold them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netns.kernel import netlink
from netns.kernel.namespace import Namespace
from netns.model import addressing
from netns.model.errors import NotFoundError, ValidationError
from netns.model.security_group import Eni, check_membership
from netns.realize import alias_addresses, format_alias, source_check, words
from netns.realize import security_group as sg
from netns.realize.vpc import VpcRouter, VSwitch

if TYPE_CHECKING:
    from pyroute2 import IPRoute

Net = ipaddress.IPv4Network


def bound_addresses(facts: dict[str, str]) -> list[Net]:
    """What may leave the port: the ENI's own addresses and the blocks routed to its instance."""
    return [Net(a) for a in (facts["ip"], *alias_addresses(facts), *words(facts, "routes"))]


def alias(facts: dict[str, str]) -> str:
    return format_alias(**{k: v for k, v in facts.items() if v and k != "vswitch"})


def check_groups(resource: str, router: VpcRouter, security_groups: Sequence[str], field: str) -> None:
    groups = []
    for sg_id in security_groups:
        group = sg.load_group(router.lab, sg_id)
        if group is None or group.vpc_id != router.vpc_id:
            raise NotFoundError(f"{resource}: {field}: {sg_id} is not a security group of VPC {router.vpc_id}")
        groups.append(group)
    check_membership(resource, groups)


def claim(vswitch: VSwitch, resource: str, net: Net, wanted: Sequence[tuple[str, str]], count: int,
          bridge_index: int | None = None) -> list[ipaddress.IPv4Address]:
    """Addresses for a new ENI: each ``(field, address)`` wanted, checked; then ``count`` lowest free ones.

    Call under the lab lock: the answer is only true until the next ENI is plugged.
    """
    used = vswitch.used_addresses(bridge_index)
    taken = []
    for field_name, value in wanted:
        addr = addressing.check_private_ip(resource, value, net, used, field_name)
        used.add(addr)
        taken.append(addr)
    for _ in range(count):
        addr = addressing.allocate(net, used)
        used.add(addr)
        taken.append(addr)
    return taken


def forget_port(router: VpcRouter, port: str) -> None:
    """Drop what the source check and the groups' sets still hold for a port that vanished behind the lab's
    back (its instance's namespace was deleted): found when a refresh reads the instance."""
    source_check.unbind(router.namespace, port, source_check.bound(router.namespace).get(port, []),
                        router.pending_unbind, defer=True)
    sg._apply_locked(router)  # sets are rebuilt from the ports that exist


def check_secondary(resource: str, field_name: str, values: Iterable[object]) -> list[str]:
    found = []
    for value in values:
        try:
            found.append(str(ipaddress.IPv4Address(value)))
        except (ValueError, TypeError):
            raise ValidationError(resource, field_name, f"{value!r} is not an IPv4 address") from None
    if len(set(found)) != len(found):
        raise ValidationError(resource, field_name, "an address is listed twice")
    return found


@dataclass(frozen=True)
class EniPort:
    router: VpcRouter
    eni_id: str

    def facts(self, with_vswitch: bool = True) -> dict[str, str] | None:
        return self.router.port_facts(self.eni_id, with_vswitch)

    def bind(self, facts: dict[str, str], ipset: socket.socket | None = None) -> None:
        """Open the port's source check and put the ENI in its groups' sets (under the lab lock). ``ipset``: a
        netfilter socket of the router's to send the set entries on (see ``sg.join``)."""
        source_check.bind(self.router.namespace, self.eni_id, bound_addresses(facts), self.router.pending_unbind)
        sg.join(self.router, self.as_sg_eni(facts), ipset)

    def unbind(self, facts: dict[str, str], going: bool = False, ipset: socket.socket | None = None) -> None:
        """The reverse of ``bind``. ``going``: the port is about to disappear, so its source-check entries
        can be removed lazily (see netns/realize/source_check.py)."""
        sg.leave(self.router, self.as_sg_eni(facts), ipset)
        source_check.unbind(self.router.namespace, self.eni_id, bound_addresses(facts), self.router.pending_unbind,
                            defer=going)

    def forget(self, ipr: IPRoute | None = None) -> None:
        """Take the facts off a port that is about to disappear, so nothing reads it as an ENI meanwhile.
        ``ipr``: an open session of the router's, else one is opened."""
        with contextlib.nullcontext(ipr) if ipr is not None else self.router.namespace.ipr() as ipr, \
                contextlib.suppress(netlink.NetlinkError):  # already gone: fine
            ipr.link("set", ifname=self.eni_id, ifalias="")

    def as_sg_eni(self, facts: dict[str, str]) -> Eni:
        return sg.eni_of(self.eni_id, facts)

    def rewrite(self, old: dict[str, str], new: dict[str, str]) -> None:
        """New facts on a plugged port; source check and sets follow (under the lab lock).

        What is added is opened before what is removed is closed, so traffic that stays allowed never
        sees a moment without its entries.
        """
        before, after = set(bound_addresses(old)), set(bound_addresses(new))
        source_check.bind(self.router.namespace, self.eni_id, after - before, self.router.pending_unbind)
        self._set_alias(new)
        if set(words(old, "sg")) != set(words(new, "sg")):
            sg._apply_locked(self.router)  # membership changed: rebuild sets (atomic swaps) and profiles
        else:
            sg.join(self.router, self._delta(new, old))
            sg.leave(self.router, self._delta(old, new))
        source_check.unbind(self.router.namespace, self.eni_id, before - after, self.router.pending_unbind)

    def _delta(self, a: dict[str, str], b: dict[str, str]) -> Eni:
        """The part of ENI facts ``a`` that ``b`` lacks (same groups)."""
        eni_a, eni_b = self.as_sg_eni(a), self.as_sg_eni(b)
        return Eni(self.eni_id, tuple(x for x in eni_a.addresses if x not in eni_b.addresses), eni_a.groups,
                   tuple(x for x in eni_a.routed if x not in eni_b.routed))

    def _set_alias(self, facts: dict[str, str]) -> None:
        with self.router.namespace.ipr() as ipr:
            ipr.link("set", ifname=self.eni_id, ifalias=alias(facts))


def find_primary_port(router: VpcRouter, instance_id: str) -> tuple[EniPort, dict[str, str]] | None:
    """The primary ENI (device 0) of an instance plugged into this VPC."""
    for vswitch in router.vswitches():
        for eni_id, facts in vswitch.enis().items():
            if facts.get("instance") == instance_id and facts.get("device") == "0":
                return EniPort(router, eni_id), {**facts, "vswitch": vswitch.vswitch_id}
    return None


def find_port(lab: str, eni_id: str, routers: Iterable[VpcRouter],
              with_vswitch: bool = True) -> tuple[EniPort, dict[str, str]] | None:
    for router in routers:
        port = EniPort(router, eni_id)
        facts = port.facts(with_vswitch)
        if facts is not None:
            return port, facts
    return None


def deliver_secondary(namespace: Namespace, ifname: str, ips: tuple[str, ...] | list[str]) -> None:
    """The fabric delivers an ENI's secondary IPs to it: proxy-neighbour entries answer ARP on the ENI.

    proxy_delay=0: the kernel otherwise delays proxied answers by up to 0.8 s (see KERNEL-NOTES).
    """
    if not ips:
        return
    namespace.sysctl(f"net.ipv4.neigh.{ifname}.proxy_delay", 0)
    lines = "".join(f"neigh replace proxy {ip} dev {ifname}\n" for ip in ips)
    namespace.run(["ip", "-batch", "-"], input=lines)
