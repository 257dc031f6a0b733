"""ECS instance → a namespace whose primary ENI (eth0) is a veth into its vSwitch's bridge.

The router end of the veth is named by the ENI id and carries the ENI's facts (address, owner, name,
security groups) in its alias: the vSwitch's used addresses and the groups' members are read from the
kernel, never from a side file. Every change of ENIs re-applies the VPC's security-group ruleset, so a new
ENI is filtered (and source-checked) from the moment it exists.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netns.kernel.link import Veth, addresses, default_gateway, ensure_address, ensure_default_route
from netns.kernel.namespace import Namespace
from netns.model import addressing
from netns.model.errors import NotFoundError, ValidationError
from netns.model.names import netns_name
from netns.model.security_group import check_membership
from netns.realize import format_alias, lab_lock
from netns.realize import security_group as sg
from netns.realize.vpc import VpcRouter, VSwitch, routers

PRIMARY_IFNAME = "eth0"


@dataclass(frozen=True)
class InstanceState:
    private_ip: str
    vswitch_id: str | None
    gateway: str | None
    name: str = ""
    security_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class EcsInstance:
    lab: str
    instance_id: str
    eni_id: str

    @property
    def namespace(self) -> Namespace:
        return Namespace(netns_name(self.lab, self.instance_id))

    def create(self, vswitch: VSwitch, private_ip: str | None, resource: str, name: str = "",
               security_groups: tuple[str, ...] = ()) -> str:
        """Make the namespace and plug eth0 into the vSwitch; return the address it got."""
        with lab_lock(self.lab):
            net = vswitch.cidr()
            if net is None:
                raise ValidationError(resource, "vswitch_id", f"vSwitch {vswitch.vswitch_id} has no address block")
            self._check_groups(resource, vswitch.router, security_groups)
            used = vswitch.used_addresses()
            if private_ip:
                addr = addressing.check_private_ip(resource, private_ip, net, used)
            else:
                addr = addressing.allocate(net, used)
            try:
                self._plumb(vswitch, net, addr, name, security_groups)
            except Exception:
                self.delete(apply_groups=False)
                raise
        sg.apply(vswitch.router)
        return str(addr)

    def _check_groups(self, resource: str, router: VpcRouter, security_groups: tuple[str, ...]) -> None:
        groups = []
        for sg_id in security_groups:
            group = sg.load_group(self.lab, sg_id)
            if group is None or group.vpc_id != router.vpc_id:
                raise NotFoundError(f"{resource}: security_groups: {sg_id} is not a security group of "
                                    f"VPC {router.vpc_id}")
            groups.append(group)
        check_membership(resource, groups)

    def _plumb(self, vswitch: VSwitch, net: ipaddress.IPv4Network, addr: ipaddress.IPv4Address, name: str,
               security_groups: tuple[str, ...]) -> None:
        self.namespace.create()
        veth = Veth(vswitch.router.namespace, self.eni_id, self.namespace, PRIMARY_IFNAME)
        veth.ensure(alias=self._alias(addr, name, security_groups), master=vswitch.vswitch_id)
        with self.namespace.ipr() as ipr:
            ensure_address(ipr, PRIMARY_IFNAME, ipaddress.IPv4Interface(f"{addr}/{net.prefixlen}"))
            ensure_default_route(ipr, addressing.gateway(net))

    def _alias(self, addr: ipaddress.IPv4Address | str, name: str, security_groups: tuple[str, ...]) -> str:
        return format_alias(ip=str(addr), instance=self.instance_id, device="0", name="_".join(name.split()),
                            sg=",".join(security_groups))

    def relabel(self, resource: str, name: str, security_groups: tuple[str, ...]) -> None:
        """Record a new name or new security groups on the primary ENI, then re-apply the groups."""
        for router in routers(self.lab):
            state = self._facts(router)
            if state is None:
                continue
            self._check_groups(resource, router, security_groups)
            Veth(router.namespace, self.eni_id, self.namespace, PRIMARY_IFNAME).set_alias(
                self._alias(state["ip"], name, security_groups))
            sg.apply(router)

    def _facts(self, router: VpcRouter) -> dict[str, str] | None:
        return router.port_facts(self.eni_id)

    def read(self) -> InstanceState | None:
        """What the kernel holds for this instance, or None if its namespace is gone."""
        if not self.namespace.exists():
            return None
        with self.namespace.ipr() as ipr:
            found = addresses(ipr, PRIMARY_IFNAME)
            gateway = default_gateway(ipr)
        if not found:
            return None
        facts: dict[str, str] = {}
        for router in routers(self.lab):
            facts = self._facts(router) or facts
        groups = tuple(g for g in facts.get("sg", "").split(",") if g)
        return InstanceState(str(found[0].ip), facts.get("vswitch"), gateway, facts.get("name", ""), groups)

    def delete(self, apply_groups: bool = True) -> None:
        for router in routers(self.lab):
            plugged = self._facts(router) is not None
            Veth(router.namespace, self.eni_id, self.namespace, PRIMARY_IFNAME).remove()
            if plugged and apply_groups:
                sg.apply(router)
        self.namespace.remove()


