"""ECS instance → a namespace whose primary ENI (eth0) is a veth into its vSwitch's bridge.

The router end of the veth is named by the ENI id and carries the ENI's facts (address, owner) in its
alias: the vSwitch's list of used addresses is read from the kernel, never from a side file.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netns.kernel.link import Veth, addresses, default_gateway, ensure_address, ensure_default_route
from netns.kernel.namespace import Namespace
from netns.model import addressing
from netns.model.errors import ValidationError
from netns.model.names import netns_name
from netns.realize import format_alias, lab_lock
from netns.realize.vpc import VSwitch, routers

PRIMARY_IFNAME = "eth0"


@dataclass(frozen=True)
class InstanceState:
    private_ip: str
    vswitch_id: str | None
    gateway: str | None


@dataclass(frozen=True)
class EcsInstance:
    lab: str
    instance_id: str
    eni_id: str

    @property
    def namespace(self) -> Namespace:
        return Namespace(netns_name(self.lab, self.instance_id))

    def create(self, vswitch: VSwitch, private_ip: str | None, resource: str, name: str = "") -> str:
        """Make the namespace and plug eth0 into the vSwitch; return the address it got."""
        with lab_lock(self.lab):
            net = vswitch.cidr()
            if net is None:
                raise ValidationError(resource, "vswitch_id", f"vSwitch {vswitch.vswitch_id} has no address block")
            used = vswitch.used_addresses()
            if private_ip:
                addr = addressing.check_private_ip(resource, private_ip, net, used)
            else:
                addr = addressing.allocate(net, used)
            try:
                self._plumb(vswitch, net, addr, name)
            except Exception:
                self.delete()
                raise
        return str(addr)

    def _plumb(self, vswitch: VSwitch, net: ipaddress.IPv4Network, addr: ipaddress.IPv4Address, name: str) -> None:
        self.namespace.create()
        veth = Veth(vswitch.router.namespace, self.eni_id, self.namespace, PRIMARY_IFNAME)
        veth.ensure(alias=self._alias(addr, name), master=vswitch.vswitch_id)
        with self.namespace.ipr() as ipr:
            ensure_address(ipr, PRIMARY_IFNAME, ipaddress.IPv4Interface(f"{addr}/{net.prefixlen}"))
            ensure_default_route(ipr, addressing.gateway(net))

    def _alias(self, addr: ipaddress.IPv4Address | str, name: str) -> str:
        return format_alias(ip=str(addr), instance=self.instance_id, device="0", name="_".join(name.split()))

    def rename(self, name: str) -> None:
        """Record a new instance name on the primary ENI (what `acklab status` and `exec` read)."""
        state = self.read()
        if state is None or state.vswitch_id is None:
            return
        for router in routers(self.lab):
            Veth(router.namespace, self.eni_id, self.namespace, PRIMARY_IFNAME).set_alias(
                self._alias(state.private_ip, name))

    def read(self) -> InstanceState | None:
        """What the kernel holds for this instance, or None if its namespace is gone."""
        if not self.namespace.exists():
            return None
        with self.namespace.ipr() as ipr:
            found = addresses(ipr, PRIMARY_IFNAME)
            gateway = default_gateway(ipr)
        if not found:
            return None
        return InstanceState(str(found[0].ip), self._vswitch_id(), gateway)

    def _vswitch_id(self) -> str | None:
        for router in routers(self.lab):
            for vswitch in router.vswitches():
                if self.eni_id in vswitch.enis():
                    return vswitch.vswitch_id
        return None

    def delete(self) -> None:
        for router in routers(self.lab):
            Veth(router.namespace, self.eni_id, self.namespace, PRIMARY_IFNAME).remove()
        self.namespace.remove()
