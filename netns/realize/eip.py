"""EIP → a port on the lab's internet bridge; associated, a leg into the instance's VPC router with 1:1 NAT.

An EIP is a veth pair in the lab's sealed internet namespace (``acklab-<lab>-internet``, see realize/slb.py
``InternetSegment``): ``eip-<hex>`` is a port of the internet bridge whose alias carries ``ip=<address> eip=<id>``
(SLB address allocation reads the ports' aliases, so the address counts as used); the other end, ``eip-<hex>p``,
is parked beside it. Associating moves that end into the VPC router namespace as ``eip-<hex>`` with the EIP as a
/32 (it answers ARP for the EIP on the internet), adds the EIP → private address and private address → EIP
elements to the router's NAT maps (``netns/model/eip.py``, one nftables transaction), and routes the instance's
traffic to the internet out of the leg (a rule from its private address to the leg's own table). Disassociating
undoes each step and moves the end back (the leg itself, shared with NAT gateways: ``netns/realize/eip_leg.py``).
The association's facts are on the router end's alias and the bridge port's (``instance= private= vpc=``). Every
read-modify-write runs under the lab's lock.

Bound to a NAT gateway (``instance_id`` a gateway's id, ``instance_type`` ``Nat``), the end moves into the gateway's
namespace instead (``netns/realize/nat_gateway.py``): no 1:1 NAT, the gateway's SNAT entries translate to it.

Bound to an intranet SLB (``instance_id`` an SLB's id, ``instance_type`` ``SlbInstance``: what ACK does for the API
server's endpoint), the end moves into the VPC router of the SLB's vSwitch, where its layer-4 listeners are: the
EIP becomes another frontend address of them (``netns/model/slb_l4.py`` ``EipFrontend``: the DNAT rules match it
too, so internet clients reach the backends with their own address), and connections arriving by the leg are
marked so a rule (``fwmark``, ``model.slb_mark``) sends their replies back out by it. No 1:1 NAT element.
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass

from netns.kernel import netlink, rules
from netns.kernel.link import Veth, unless_exists
from netns.kernel.namespace import Namespace
from netns.model import eip as model
from netns.model import slb as slb_model
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.realize import format_alias, lab_lock
from netns.realize.eip_leg import EipLeg, Routing
from netns.realize.eni import find_primary_port
from netns.realize.nat_gateway import NatGateway
from netns.realize.slb import INTERNET_BRIDGE, InternetSegment, SlbInstance, sync_locked
from netns.realize.vpc import VpcRouter, routers

ROUTING = Routing(model.route_table, model.RULE_PRIORITY)  # an instance's EIP leg in its VPC router


@dataclass(frozen=True)
class EipState:
    address: str
    instance_id: str  # "" when not associated
    private_ip: str
    vpc_id: str


def _nft(namespace: Namespace, text: str) -> None:
    rules.nft(namespace, text, f"EIP NAT in {namespace.name}")


def _install(namespace: Namespace) -> None:
    """The router's NAT table, once (declaring it again would duplicate its rules)."""
    if not rules.nft_table_exists(namespace, "ip", model.TABLE):
        _nft(namespace, model.table_text())


@dataclass(frozen=True)
class ElasticIp:
    lab: str
    eip_id: str

    @property
    def internet(self) -> InternetSegment:
        return InternetSegment(self.lab)

    @property
    def parked(self) -> str:
        return f"{self.eip_id}p"

    # -- allocation --

    def create(self, address: str | None, resource: str) -> str:
        """Allocate the address (``address`` if given, else the lowest free one) and plug the EIP's port."""
        with lab_lock(self.lab):
            internet = self.internet
            internet.ensure()
            try:
                used = internet.used_addresses()
                addr = (_check_address(resource, address, used) if address
                        else slb_model.allocate_internet_address(used))
                Veth(internet.namespace, self.eip_id, internet.namespace, self.parked).ensure(
                    alias=format_alias(ip=str(addr), eip=self.eip_id), master=INTERNET_BRIDGE)
            except Exception:
                Veth(internet.namespace, self.eip_id, internet.namespace, self.parked).remove()
                internet.remove_if_unused()
                raise
        return str(addr)

    def _port(self) -> dict[str, str] | None:
        return self.internet.ports().get(self.eip_id)

    def read(self) -> EipState | None:
        facts = self._port()
        if facts is None or "ip" not in facts:
            return None
        return EipState(facts["ip"], facts.get("instance", ""), facts.get("private", ""), facts.get("vpc", ""))

    def delete(self, resource: str) -> None:
        with lab_lock(self.lab):
            facts = self._port()
            if facts is None:
                return
            if facts.get("instance"):  # as Alibaba: an associated EIP cannot be released
                raise LabError(f"{resource}: {self.eip_id} is associated with {facts['instance']}; "
                               "disassociate it first")
            Veth(self.internet.namespace, self.eip_id, self.internet.namespace, self.parked).remove()
            self.internet.remove_if_unused()

    # -- association --

    def associate(self, instance_id: str, resource: str, private_ip: str | None = None) -> EipState:
        """NAT the EIP 1:1 to the instance's primary private address (``private_ip``, if given, must be it);
        checked and made under the lab's lock."""
        with lab_lock(self.lab):
            facts = self._port()
            if facts is None:
                raise NotFoundError(f"{resource}: allocation_id: {self.eip_id} does not exist in lab {self.lab}")
            if facts.get("instance") == instance_id:
                return self._state(facts)
            if facts.get("instance"):
                raise ValidationError(resource, "allocation_id", f"{self.eip_id} is associated with "
                                                                 f"{facts['instance']}; disassociate it first")
            if instance_id.startswith("ngw-"):
                return self._bind_nat(NatGateway(self.lab, instance_id), facts, resource)
            if instance_id.startswith("lb-"):
                return self._bind_slb(instance_id, facts, resource)
            router, primary = self._instance(instance_id, resource)
            if private_ip is not None and private_ip != primary:
                raise ValidationError(resource, "private_ip_address", f"{private_ip} is not the primary private "
                                                                      f"address of {instance_id} ({primary})")
            try:
                self._plug(router, facts["ip"], instance_id, primary)
            except Exception:
                self._unplug(router, facts["ip"], primary)
                raise
            new = {**facts, "instance": instance_id, "private": primary, "vpc": router.vpc_id}
            self._label_port(new)
            return self._state(new)

    def _bind_nat(self, gateway: NatGateway, facts: dict[str, str], resource: str) -> EipState:
        """Move the EIP's leg into the NAT gateway (under the lab's lock); its SNAT entries may then use it."""
        found = gateway.read()
        if found is None:
            raise NotFoundError(f"{resource}: instance_id: {gateway.ngw_id} is not a NAT gateway of lab {self.lab}")
        try:
            gateway.plug_leg(self.eip_id, self.parked, facts["ip"], self.internet.namespace)
        except Exception:
            gateway.unplug_leg(self.eip_id, self.parked, facts["ip"], self.internet.namespace)
            raise
        new = {**facts, "instance": gateway.ngw_id, "vpc": found.vpc_id}
        self._label_port(new)
        return self._state(new)

    def _bind_slb(self, lb_id: str, facts: dict[str, str], resource: str) -> EipState:
        """Move the EIP's leg into the router of the intranet SLB's VPC and make it a frontend of the SLB's layer-4
        listeners (under the lab's lock); undone as far as it got on failure."""
        found = SlbInstance(self.lab, lb_id).read()
        if found is None:
            raise NotFoundError(f"{resource}: instance_id: {lb_id} is not an SLB of lab {self.lab}")
        if found.address_type != "intranet" or not found.vpc_id:
            raise ValidationError(resource, "instance_id", f"{lb_id} is an internet SLB; an EIP is bound to an "
                                                           "intranet SLB only (as Alibaba's)")
        taken = [f for f in self.internet.ports().values() if f.get("instance") == lb_id]
        if taken:
            raise ValidationError(resource, "instance_id", f"{lb_id} already has EIP {taken[0]['eip']}")
        router = VpcRouter(self.lab, found.vpc_id)
        new = {**facts, "instance": lb_id, "private": found.address, "vpc": router.vpc_id}
        try:
            self._plug_slb(router, facts["ip"], lb_id, found.address)
            self._label_port(new)
            sync_locked(self.lab, lb_id, resource)  # its listeners now match the EIP too
        except Exception:
            self._label_port(facts)
            self._unplug_slb(router, facts["ip"])
            sync_locked(self.lab, lb_id, resource)
            raise
        return self._state(new)

    def _plug_slb(self, router: VpcRouter, eip: str, lb_id: str, vip: str) -> None:
        table = self._leg().plug(router.namespace, eip, {"eip": self.eip_id, "ip": eip, "instance": lb_id,
                                                         "private": vip}, ROUTING, ())
        index = self._leg().index_in(router.namespace)
        assert index is not None
        with router.namespace.ipr() as ipr:
            unless_exists(ipr.rule, "add", fwmark=model.slb_mark(index), table=table, priority=model.RULE_PRIORITY)
        # the clients' addresses have no route in the router's main table (the lab is sealed): their packets, DNATed
        # to a backend, would fail the reverse-path check; replies are routed by the mark instead
        router.namespace.sysctl(f"net.ipv4.conf.{self.eip_id}.rp_filter", 0)

    def _unplug_slb(self, router: VpcRouter, eip: str) -> None:
        index = self._leg().index_in(router.namespace)
        if index is None:
            return
        with router.namespace.ipr() as ipr, contextlib.suppress(netlink.NetlinkError):
            ipr.rule("del", fwmark=model.slb_mark(index), table=ROUTING.table_of(index),
                     priority=model.RULE_PRIORITY)
        self._leg().unplug(router.namespace, eip, ROUTING, ())

    def _instance(self, instance_id: str, resource: str) -> tuple[VpcRouter, str]:
        for router in routers(self.lab):
            found = find_primary_port(router, instance_id)
            if found is None:
                continue
            private_ip = found[1]["ip"]
            taken = [f for f in self.internet.ports().values() if f.get("instance") == instance_id]
            if taken:  # one EIP per instance (its primary ENI's primary address)
                raise ValidationError(resource, "instance_id", f"{instance_id} already has EIP {taken[0]['eip']}")
            return router, private_ip
        raise NotFoundError(f"{resource}: instance_id: {instance_id} is not an ECS instance of lab {self.lab}")

    def _leg(self) -> EipLeg:
        return EipLeg(self.eip_id, self.parked, self.internet.namespace)

    def _plug(self, router: VpcRouter, eip: str, instance_id: str, private_ip: str) -> None:
        """The leg into the router, the instance's traffic (and the router's own from the EIP: ARP, ICMP) out of
        it, then the 1:1 NAT elements."""
        self._leg().plug(router.namespace, eip, {"eip": self.eip_id, "ip": eip, "instance": instance_id,
                                                 "private": private_ip}, ROUTING, (private_ip, eip))
        _install(router.namespace)
        _nft(router.namespace, model.elements("add", eip, private_ip))

    def disassociate(self) -> None:
        with lab_lock(self.lab):
            facts = self._port()
            if facts is None or not facts.get("instance"):
                return
            instance = facts["instance"]
            unbound = {k: v for k, v in facts.items() if k not in ("instance", "private", "vpc")}
            if instance.startswith("ngw-"):  # refused while a SNAT entry translates to it
                NatGateway(self.lab, instance).unplug_leg(self.eip_id, self.parked, facts["ip"],
                                                          self.internet.namespace)
            elif instance.startswith("lb-"):  # unlabelled first: the SLB's resync then no longer counts it bound
                self._label_port(unbound)
                self._unplug_slb(VpcRouter(self.lab, facts["vpc"]), facts["ip"])
                self._resync_slb(instance)
                return
            else:
                self._unplug(VpcRouter(self.lab, facts["vpc"]), facts["ip"], facts["private"])
            self._label_port(unbound)

    def _unplug(self, router: VpcRouter, eip: str, private_ip: str) -> None:
        """Undo ``_plug`` as far as it got: NAT elements, then the leg back to the internet namespace."""
        if not router.namespace.exists():
            return  # the router is gone, and the leg with it (a veth dies with its namespace)
        try:
            _nft(router.namespace, model.elements("delete", eip, private_ip))  # both in one transaction
        except LabError:  # a half-made plug: the table or an element is missing; remove what is there
            for command in model.elements("delete", eip, private_ip).splitlines():
                router.namespace.run(["nft", command], check=False)
        self._leg().unplug(router.namespace, eip, ROUTING, (private_ip, eip))

    def _resync_slb(self, lb_id: str) -> None:
        """The SLB's listeners without the EIP (nothing to do when the SLB is gone: its table went with it)."""
        if SlbInstance(self.lab, lb_id).read() is not None:
            sync_locked(self.lab, lb_id)

    def _label_port(self, facts: dict[str, str]) -> None:
        Veth(self.internet.namespace, self.eip_id, self.internet.namespace, self.parked).set_alias(
            format_alias(**facts))

    @staticmethod
    def _state(facts: dict[str, str]) -> EipState:
        return EipState(facts["ip"], facts.get("instance", ""), facts.get("private", ""), facts.get("vpc", ""))


def _check_address(resource: str, address: str, used: set[ipaddress.IPv4Address]) -> ipaddress.IPv4Address:
    try:
        return slb_model.check_internet_address(resource, address, used)
    except ValidationError as exc:  # the model names an SLB's argument; an EIP's is ip_address
        raise ValidationError(resource, "ip_address", exc.reason) from None


