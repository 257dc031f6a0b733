"""An ENI's place on the fabric: its port on the vSwitch bridge, the addresses bound to it, its groups.

Every ENI, primary (an instance's eth0) or secondary (``ecs.EcsNetworkInterface``), is a veth pair whose
router end is a port of its vSwitch's bridge named by the ENI id. The port's alias carries the ENI's facts
(``ip=`` primary address, ``secondary=`` secondary private IPs, ``routes=`` blocks routed to its instance,
``sg=`` groups, ``instance=``/``device=`` when attached, ``name=``). Its addresses are bound to the port in the
VPC's source check, which is also the record address allocation reads; its groups' ipsets hold them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from netns.model import addressing
from netns.model.errors import NotFoundError, ValidationError
from netns.model.security_group import Eni, check_membership
from netns.realize import format_alias, source_check
from netns.realize import security_group as sg
from netns.realize.vpc import VpcRouter, VSwitch

Net = ipaddress.IPv4Network


def words(facts: dict[str, str], key: str) -> tuple[str, ...]:
    return tuple(w for w in facts.get(key, "").split(",") if w)


def bound_addresses(facts: dict[str, str]) -> list[Net]:
    """What may leave the port: the ENI's own addresses and the blocks routed to its instance."""
    return [Net(a) for a in (facts["ip"], *words(facts, "secondary"), *words(facts, "routes"))]


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
          ) -> list[ipaddress.IPv4Address]:
    """Addresses for a new ENI: each ``(field, address)`` wanted, checked; then ``count`` lowest free ones.

    Call under the lab lock: the answer is only true until the next ENI is plugged.
    """
    owners = vswitch.address_owners(net)
    stale = {owners[a] for a in _requested(wanted) if a in owners and not vswitch.port_exists(owners[a])}
    for port in stale:  # its ENI vanished behind the lab's back (e.g. the namespace was deleted): forget it
        forget_port(vswitch.router, port)
        owners = {a: p for a, p in owners.items() if p != port}
    used = set(owners)
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


def _requested(wanted: Sequence[tuple[str, str]]) -> set[ipaddress.IPv4Address]:
    found = set()
    for _, value in wanted:
        try:
            found.add(ipaddress.IPv4Address(value))
        except ValueError:
            continue  # check_private_ip names the field
    return found


def forget_port(router: VpcRouter, port: str) -> None:
    """Drop what the source check and the groups' sets still hold for a port that no longer exists."""
    source_check.unbind(router.namespace, port, source_check.bound(router.namespace).get(port, []))
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

    def facts(self) -> dict[str, str] | None:
        return self.router.port_facts(self.eni_id)

    def bind(self, facts: dict[str, str]) -> None:
        """Open the port's source check and put the ENI in its groups' sets (under the lab lock)."""
        source_check.bind(self.router.namespace, self.eni_id, bound_addresses(facts))
        sg.join(self.router, self.as_sg_eni(facts))

    def unbind(self, facts: dict[str, str]) -> None:
        sg.leave(self.router, self.as_sg_eni(facts))
        source_check.unbind(self.router.namespace, self.eni_id, bound_addresses(facts))

    def as_sg_eni(self, facts: dict[str, str]) -> Eni:
        return sg.eni_of(self.eni_id, facts)

    def rewrite(self, old: dict[str, str], new: dict[str, str]) -> None:
        """New facts on a plugged port; source check and sets follow (under the lab lock).

        What is added is opened before what is removed is closed, so traffic that stays allowed never
        sees a moment without its entries.
        """
        before, after = set(bound_addresses(old)), set(bound_addresses(new))
        source_check.bind(self.router.namespace, self.eni_id, after - before)
        self._set_alias(new)
        if set(words(old, "sg")) != set(words(new, "sg")):
            sg._apply_locked(self.router)  # membership changed: rebuild sets (atomic swaps) and profiles
        else:
            sg.join(self.router, self._delta(new, old))
            sg.leave(self.router, self._delta(old, new))
        source_check.unbind(self.router.namespace, self.eni_id, before - after)

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


def find_port(lab: str, eni_id: str, routers: Iterable[VpcRouter]) -> tuple[EniPort, dict[str, str]] | None:
    for router in routers:
        port = EniPort(router, eni_id)
        facts = port.facts()
        if facts is not None:
            return port, facts
    return None
