"""Secondary ENI (``ecs.EcsNetworkInterface``) → a veth pair whose router end is its vSwitch port.

Detached, the other end is parked in the router namespace (``<eni id>p``, down-to-earth: the ENI exists and
holds its addresses but no instance sees it). Attaching moves that end into the instance's namespace as the
next ``ethN`` with the ENI's primary address; its secondary IPs are delivered by proxy-neighbour entries,
like the primary ENI's (see netns/realize/instance.py). Detaching moves it back. The ENI may sit in another
vSwitch than the instance's primary ENI (same VPC), which is what Terway's ENI multi-IP mode uses for pods.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netns.kernel.link import Veth, ensure_address, index_of
from netns.kernel.namespace import Namespace
from netns.model.errors import NotFoundError, ValidationError
from netns.model.names import netns_name
from netns.realize import alias_addresses, lab_lock, pack_addresses, words
from netns.realize.eni import EniPort, alias, check_groups, claim, deliver_secondary, find_port, find_primary_port
from netns.realize.vpc import VpcRouter, VSwitch, routers


@dataclass(frozen=True)
class EniState:
    primary_ip: str
    secondary_ips: tuple[str, ...]
    vswitch_id: str
    security_groups: tuple[str, ...]
    instance_id: str
    device: str


@dataclass(frozen=True)
class NetworkInterface:
    lab: str
    eni_id: str

    @property
    def parked(self) -> str:
        return f"{self.eni_id}p"

    def create(self, vswitch: VSwitch, resource: str, primary_ip: str | None, secondary_ips: tuple[str, ...],
               secondary_count: int, security_groups: tuple[str, ...], name: str = "", owner: str = "") -> EniState:
        """``owner``: who made the ENI outside the Pulumi state (``terway``: the node agent's, as on ACK), so
        status can show it and clean-up find it."""
        with lab_lock(self.lab):
            net = vswitch.cidr()
            if net is None:
                raise ValidationError(resource, "vswitch_id", f"vSwitch {vswitch.vswitch_id} has no address block")
            check_groups(resource, vswitch.router, security_groups, "security_group_ids")
            wanted = [("primary_ip_address", primary_ip)] if primary_ip else []
            wanted += [("private_ip_addresses", ip) for ip in secondary_ips]
            taken = claim(vswitch, resource, net, wanted, (0 if primary_ip else 1) + secondary_count)
            primary = taken[0] if primary_ip else taken[len(wanted)]
            secondary = [a for a in taken if a != primary]
            facts = {"ip": str(primary), "secondary": pack_addresses(map(str, secondary)),
                     "name": "_".join(name.split()), "sg": ",".join(security_groups), "owner": owner}
            router_ns = vswitch.router.namespace
            port = EniPort(vswitch.router, self.eni_id)
            try:
                Veth(router_ns, self.eni_id, router_ns, self.parked).ensure(alias=alias(facts),
                                                                           master=vswitch.vswitch_id)
                port.bind(facts)
            except Exception:
                port.unbind(facts)
                Veth(router_ns, self.eni_id, router_ns, self.parked).remove()
                raise
        return self._state({**facts, "vswitch": vswitch.vswitch_id})

    @staticmethod
    def _state(facts: dict[str, str]) -> EniState:
        return EniState(facts["ip"], alias_addresses(facts), facts.get("vswitch", ""), words(facts, "sg"),
                        facts.get("instance", ""), facts.get("device", ""))

    def read(self) -> EniState | None:
        found = find_port(self.lab, self.eni_id, routers(self.lab))
        return self._state(found[1]) if found else None

    def attach(self, instance_ns: Namespace, instance_id: str, resource: str) -> str:
        """Plug the ENI into an instance; return the device name it got there (eth1, eth2, ...)."""
        with lab_lock(self.lab):
            found = find_port(self.lab, self.eni_id, routers(self.lab))
            if found is None:
                raise NotFoundError(f"{resource}: network_interface_id: {self.eni_id} does not exist")
            port, facts = found
            if facts.get("instance") == instance_id:
                return f"eth{facts['device']}"
            if facts.get("instance"):
                raise ValidationError(resource, "network_interface_id",
                                      f"{self.eni_id} is attached to {facts['instance']}; detach it first")
            if not instance_ns.exists():
                raise NotFoundError(f"{resource}: instance_id: {instance_id} does not exist")
            primary = next(filter(None, (find_primary_port(r, instance_id) for r in routers(self.lab))), None)
            if primary is not None and primary[0].router != port.router:
                raise ValidationError(resource, "instance_id",
                                      f"{instance_id} is in VPC {primary[0].router.vpc_id}, the ENI in "
                                      f"{port.router.vpc_id}")
            device = _next_device(instance_ns, _devices_of(port.router, instance_id))
            ifname = f"eth{device}"
            with port.router.namespace.ipr() as ipr:
                ipr.link("set", ifname=self.parked, net_ns_fd=instance_ns.name)
            net = ipaddress.IPv4Network(_vswitch_block(port, facts))
            with instance_ns.ipr() as ipr:
                ipr.link("set", ifname=self.parked, state="down")
                ipr.link("set", index=index_of(ipr, self.parked), ifname=ifname)
                ipr.link("set", ifname=ifname, state="up")
                ensure_address(ipr, ifname, ipaddress.IPv4Interface(f"{facts['ip']}/{net.prefixlen}"))
            deliver_secondary(instance_ns, ifname, alias_addresses(facts))
            port.rewrite(facts, {**facts, "instance": instance_id, "device": str(device)})
            return ifname

    def assign_ips(self, count: int, resource: str) -> tuple[str, ...]:
        """AssignPrivateIpAddresses: ``count`` more secondary IPs, the lowest free of the ENI's vSwitch. On an
        attached ENI they are delivered at once (proxy-neighbour entries in the instance)."""
        with lab_lock(self.lab):
            found = find_port(self.lab, self.eni_id, routers(self.lab))
            if found is None:
                raise NotFoundError(f"{resource}: network_interface_id: {self.eni_id} does not exist")
            port, facts = found
            vswitch = VSwitch(port.router, facts["vswitch"])
            taken = [str(a) for a in claim(vswitch, resource, ipaddress.IPv4Network(_vswitch_block(port, facts)),
                                           [], count)]
            new = {**facts, "secondary": pack_addresses((*alias_addresses(facts), *taken))}
            alias(new)  # facts that no longer fit the port's alias (255 bytes) fail here, before anything changed
            if facts.get("instance"):
                deliver_secondary(Namespace(netns_name(self.lab, facts["instance"])), f"eth{facts['device']}", taken)
            port.rewrite(facts, new)
            return tuple(taken)

    def unassign_ips(self, ips: tuple[str, ...] | list[str]) -> None:
        """UnassignPrivateIpAddresses: the addresses go back to the vSwitch; the fabric stops delivering them."""
        with lab_lock(self.lab):
            found = find_port(self.lab, self.eni_id, routers(self.lab))
            if found is None:
                return
            port, facts = found
            instance_ns = Namespace(netns_name(self.lab, facts["instance"])) if facts.get("instance") else None
            if instance_ns is not None and instance_ns.exists():
                lines = "".join(f"neigh del proxy {ip} dev eth{facts['device']}\n" for ip in ips)
                instance_ns.run(["ip", "-force", "-batch", "-"], input=lines, check=False)
            rest = [ip for ip in alias_addresses(facts) if ip not in set(ips)]
            port.rewrite(facts, {**facts, "secondary": pack_addresses(rest)})

    def detach(self, instance_ns: Namespace) -> None:
        with lab_lock(self.lab):
            found = find_port(self.lab, self.eni_id, routers(self.lab))
            if found is None:
                return
            port, facts = found
            if not facts.get("instance"):
                return
            ifname = f"eth{facts['device']}"
            if instance_ns.exists():
                with instance_ns.ipr() as ipr:
                    index = index_of(ipr, ifname)
                    if index is not None:
                        ipr.link("set", index=index, state="down")
                        ipr.link("set", index=index, ifname=self.parked)
                        ipr.link("set", index=index, net_ns_fd=port.router.namespace.name)
            rest = {k: v for k, v in facts.items() if k not in ("instance", "device")}
            port.rewrite(facts, rest)

    def delete(self) -> None:
        with lab_lock(self.lab):
            found = find_port(self.lab, self.eni_id, routers(self.lab))
            if found is None:
                return
            port, facts = found
            port.unbind(facts)
            Veth(port.router.namespace, self.eni_id, port.router.namespace, self.parked).remove()


def _devices_of(router: VpcRouter, instance_id: str) -> set[int]:
    """The device numbers the instance's attached ENIs (all in its VPC) hold, wherever their device is now: in
    exclusive ENI mode Terway moves it into a pod, and back to the instance when the pod goes."""
    return {int(facts["device"]) for vswitch in router.vswitches() for facts in vswitch.enis().values()
            if facts.get("instance") == instance_id and facts.get("device")}


def _next_device(instance_ns: Namespace, held: set[int]) -> int:
    with instance_ns.ipr() as ipr:
        names = {link.get("ifname") for link in ipr.get_links()}
    device = 1
    while f"eth{device}" in names or device in held:
        device += 1
    return device


def _vswitch_block(port: EniPort, facts: dict[str, str]) -> str:
    block = VSwitch(port.router, facts["vswitch"]).cidr()
    if block is None:
        raise NotFoundError(f"vSwitch {facts['vswitch']} of {port.eni_id} is gone")
    return str(block)
