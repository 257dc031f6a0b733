"""``vpc.Network``, ``vpc.Switch``, ``vpc.RouteEntry``, ``vpc.NatGateway``, ``vpc.SnatEntry`` and ``vpc.ForwardEntry``
of pulumi-alicloud →
``netns/realize/vpc.py`` (router namespace, bridges), ``netns/realize/route_entry.py`` and
``netns/realize/nat_gateway.py`` (a namespace between a vSwitch and the lab's internet); the data sources
``vpc.get_networks`` and ``vpc.get_switches``, answered from the kernel (and the records of names, see ``records``)."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

from acklab.provider import catalog, records
from acklab.provider.base import Context, Diff, Kind, check_zone, first, given, not_one_of, now, problems
from acklab.provider.config import ProviderConfig
from acklab.provider.index import Function, arguments, data_id
from acklab.provider.sdk import result
from acklab.provider.wire import known
from netns.model import addressing
from netns.model import nat_gateway as ngw_model
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import check_zone_id, new_id
from netns.realize.eip import ElasticIp
from netns.realize.nat_gateway import NatGateway as NatGatewayRealization
from netns.realize.nat_gateway import nat_gateways
from netns.realize.route_entry import RouteEntry as RouteEntryRealization
from netns.realize.route_entry import check_destination
from netns.realize.vpc import VpcRouter, VSwitch, find_vswitch, routers

T = TypeVar("T")
# What Alibaba gives a VPC created without a block (CreateVpc's documented default).
DEFAULT_VPC_CIDR = "172.16.0.0/12"
_IPV4_ONLY = "acklab VPCs are IPv4 only"


def _true(value: Any) -> bool:
    return value is True


def require_vpc(ctx: Context, vpc_id: str) -> VpcRouter:
    """The router of a VPC of the lab, or a NotFoundError naming the resource and its ``vpc_id``."""
    router = VpcRouter(ctx.lab, vpc_id)
    if router.cidr() is None:
        raise NotFoundError(f"{ctx.label}: vpc_id: VPC {vpc_id} does not exist in lab {ctx.lab}")
    return router


def _router_ids(vpc_id: str) -> dict[str, str]:
    """The route table and the router share the VPC's suffix: the lab's route entries find the VPC by it."""
    suffix = vpc_id.removeprefix("vpc-")
    return {"route_table_id": f"vtb-{suffix}", "router_table_id": f"vtb-{suffix}", "router_id": f"vrt-{suffix}"}


def vpc_of_route_table(route_table_id: str) -> str:
    return "vpc-" + route_table_id.removeprefix("vtb-")


class Network(Kind):
    token = "alicloud:vpc/network:Network"
    label = "vpc.Network"
    # The block is the router's `unreachable` route and every vSwitch's parent: a new block is a new VPC.
    replace_on = ("cidr_block",)
    computed = ("vpc_name", "name")  # each the other's alias
    defaults: ClassVar[dict[str, Any]] = {"cidr_block": DEFAULT_VPC_CIDR}
    unsupported: ClassVar = {
        "enable_ipv6": (_true, _IPV4_ONLY), "ipv6_cidr_block": (given, _IPV4_ONLY),
        "secondary_cidr_blocks": (given, "secondary CIDR blocks are not supported by acklab yet"),
        "ipv4_ipam_pool_id": (given, "IPAM pools are not supported by acklab; give cidr_block"),
    }
    realized = ("cidr_block",)
    not_imported = ("name",)

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        cidr = inputs.get("cidr_block")
        return problems(lambda: addressing.check_vpc_cidr(ctx.label, cidr)) if known(cidr) else ()

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        cidr = addressing.check_vpc_cidr(ctx.label, inputs["cidr_block"])
        vpc_id = new_id("vpc")
        VpcRouter(ctx.lab, vpc_id).create(cidr)
        name = first(inputs.get("vpc_name"), inputs.get("name"))
        state = self.state({
            **inputs, "cidr_block": str(cidr), "vpc_name": name, "name": name, "status": "Available",
            "region_id": ctx.region, "create_time": now(), "ipv6_cidr_blocks": [], **_router_ids(vpc_id)})
        records.put(ctx.lab, vpc_id, state)
        return vpc_id, state

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        cidr = VpcRouter(ctx.lab, id_).cidr()
        if cidr is None:
            return None
        # found by its id alone for `pulumi import`: what the kernel has no field for comes from the record
        return self.state({"status": "Available", "region_id": ctx.region, **records.get(ctx.lab, id_), **state,
                           "cidr_block": str(cidr), **_router_ids(id_)})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        state = self.merged(olds, news)
        records.put(ctx.lab, id_, state)
        return state

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        VpcRouter(ctx.lab, id_).delete()
        records.drop(ctx.lab, id_)


class Switch(Kind):
    token = "alicloud:vpc/switch:Switch"
    label = "vpc.Switch"
    # The bridge carries the block's gateway and the zone: moving either means a new vSwitch (as on Alibaba).
    replace_on = ("vpc_id", "cidr_block", "zone_id", "availability_zone")
    computed = ("zone_id", "availability_zone", "vswitch_name", "name")  # pairs of aliases
    lab_required: ClassVar = {"vpc_id": "a vSwitch is a bridge in its VPC's router",
                              "cidr_block": "a vSwitch's addresses come from its block"}
    unsupported: ClassVar = {"enable_ipv6": (_true, _IPV4_ONLY), "ipv6_cidr_block_mask": (given, _IPV4_ONLY),
                             "vpc_ipv6_cidr_block": (given, _IPV4_ONLY)}
    realized = ("vpc_id", "cidr_block", "zone_id", "availability_zone")
    not_imported = ("name", "availability_zone")

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        cidr, zone = inputs.get("cidr_block"), first(inputs.get("zone_id"), inputs.get("availability_zone"))
        checks = [lambda: addressing.check_vswitch_cidr(ctx.label, cidr)] if known(cidr) and cidr else []
        if zone is None:
            checks.append(lambda: _zone_required(ctx))
        elif known(zone):
            checks += [lambda: check_zone_id(ctx.label, zone), lambda: check_zone(ctx, "zone_id", zone)]
        return problems(*checks)

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        cidr = addressing.check_vswitch_cidr(ctx.label, inputs["cidr_block"])
        zone = first(inputs.get("zone_id"), inputs.get("availability_zone"))
        vswitch = VSwitch(require_vpc(ctx, inputs["vpc_id"]), new_id("vsw"))
        vswitch.create(cidr, zone, ctx.label)  # checks the block against the VPC and its vSwitches, under the lock
        name = first(inputs.get("vswitch_name"), inputs.get("name"))
        state = self.state({
            **inputs, "cidr_block": str(cidr), "zone_id": zone, "availability_zone": zone, "vswitch_name": name,
            "name": name, "status": "Available", "create_time": now()})
        records.put(ctx.lab, vswitch.vswitch_id, state)
        return vswitch.vswitch_id, state

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        try:  # found by its id alone, so that `pulumi import` works too
            vswitch = find_vswitch(ctx.lab, id_)
        except NotFoundError:
            return None
        cidr, zone = vswitch.cidr(), vswitch.zone_id()
        if cidr is None:
            return None
        return self.state({"status": "Available", **records.get(ctx.lab, id_), **state,
                           "vpc_id": vswitch.router.vpc_id, "cidr_block": str(cidr), "zone_id": zone,
                           "availability_zone": zone})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        state = self.merged(olds, news)
        records.put(ctx.lab, id_, state)
        return state

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        VSwitch(VpcRouter(ctx.lab, state["vpc_id"]), id_).delete()
        records.drop(ctx.lab, id_)


def _zone_required(ctx: Context) -> None:
    zones = catalog.zones(ctx.region)
    raise ValidationError(ctx.label, "zone_id", f"is required (one of {zones[0]} ... {zones[-1]})")


_ROUTE_ARGS = ("route_table_id", "destination_cidrblock", "nexthop_type", "nexthop_id")


class RouteEntry(Kind):
    token = "alicloud:vpc/routeEntry:RouteEntry"
    label = "vpc.RouteEntry"
    replace_on = _ROUTE_ARGS  # the route is the entry: another block or next hop is another entry
    defaults: ClassVar = {"nexthop_type": "Instance"}
    lab_required: ClassVar = {"destination_cidrblock": "the entry routes a block",
                              "nexthop_id": "the entry delivers the block to an instance"}
    unsupported: ClassVar = {"nexthop_type": (lambda v: v != "Instance",
                                              "only the Instance next hop is supported by acklab yet")}
    realized = _ROUTE_ARGS

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        dst = inputs.get("destination_cidrblock")
        # against the VPC's vSwitches at create, under the lab's lock; here the block's own syntax and range
        return problems(lambda: check_destination(ctx.label, dst, [])) if dst is not None and known(dst) else ()

    @staticmethod
    def _entry(ctx: Context, table: str, destination: str, nexthop: str) -> RouteEntryRealization:
        return RouteEntryRealization(VpcRouter(ctx.lab, vpc_of_route_table(table)),
                                     ipaddress.IPv4Network(destination), nexthop)

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        table, destination = inputs["route_table_id"], str(check_destination(ctx.label, inputs["destination_cidrblock"],
                                                                              []))
        self._entry(ctx, table, destination, inputs["nexthop_id"]).create(ctx.label)  # checks the rest, locked
        router_id = _router_ids(vpc_of_route_table(table))["router_id"]
        # the real provider's id: <route table>:<router>:<destination>:<next hop type>:<next hop>
        entry_id = ":".join((table, router_id, destination, inputs["nexthop_type"], inputs["nexthop_id"]))
        return entry_id, self.state({**inputs, "destination_cidrblock": destination, "router_id": router_id})

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        table, router_id, destination, nexthop_type, nexthop = _route_entry_ids(id_)
        if not self._entry(ctx, table, destination, nexthop).exists():
            return None
        return self.state({**state, "route_table_id": table, "router_id": router_id,
                           "destination_cidrblock": destination, "nexthop_type": nexthop_type, "nexthop_id": nexthop})

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        table, _, destination, _, nexthop = _route_entry_ids(id_)
        self._entry(ctx, table, destination, nexthop).delete()


def _route_entry_ids(id_: str) -> tuple[str, str, str, str, str]:
    table, router_id, destination, nexthop_type, nexthop = id_.split(":")
    return table, router_id, destination, nexthop_type, nexthop


# --- NAT gateways: a vSwitch's egress to the lab's internet (netns/realize/nat_gateway.py) ---------------------

# How long a SNAT entry waits for its snat_ip to be bound to the gateway. The SDK's own example binds the EIP
# (ecs.EipAssociation) and adds the entry with no dependency between the two, so the engine creates them in
# parallel; the real provider retries Alibaba's "EIP not bound yet" errors the same way.
EIP_WAIT = 30.0


def retry(attempt: Callable[[], T], retry_on: type[Exception], timeout: float = EIP_WAIT,
          when: Callable[[Any], bool] = lambda _: True) -> T:
    """Call ``attempt`` until it stops raising ``retry_on`` (that ``when`` accepts) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except retry_on as exc:
            if not when(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


class NatGateway(Kind):
    token = "alicloud:vpc/natGateway:NatGateway"
    label = "vpc.NatGateway"
    replace_on = ("vpc_id", "vswitch_id", "nat_type", "network_type")  # where it sits and what it is
    computed = ("nat_gateway_name", "name", "payment_type", "instance_charge_type")  # aliases
    defaults: ClassVar = {"nat_type": "Enhanced", "network_type": "internet", "internet_charge_type": "PayByLcu",
                          "eip_bind_mode": "MULTI_BINDED", "deletion_protection": False}
    lab_required: ClassVar = {"vswitch_id": "an Enhanced NAT gateway takes an address in one vSwitch of its VPC"}
    unsupported: ClassVar = {
        "nat_type": (lambda v: v not in ngw_model.NAT_TYPES, "Alibaba's NAT gateways are Enhanced"),
        "network_type": (lambda v: v not in ngw_model.NETWORK_TYPES,
                         "VPC NAT gateways (intranet) are not in the lab; acklab's face its internet"),
        "access_mode": (given, "reverse access (access_mode) is for VPC NAT gateways, which the lab has not"),
    }
    realized = ("vpc_id", "vswitch_id", "nat_type", "network_type")
    not_imported = ("name", "instance_charge_type")

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The deprecated ``name`` and ``instance_charge_type`` fill ``nat_gateway_name`` and ``payment_type``."""
        charge = {"PostPaid": "PayAsYouGo", "PrePaid": "Subscription"}.get(inputs.get("instance_charge_type") or "")
        filled = {"nat_gateway_name": first(inputs.get("nat_gateway_name"), inputs.get("name")),
                  "payment_type": first(inputs.get("payment_type"), charge, "PayAsYouGo")}
        return {**inputs, **{k: v for k, v in filled.items() if v is not None}}

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        choices = {"payment_type": ("PayAsYouGo", "Subscription"), "internet_charge_type": ("PayByLcu",),
                   "eip_bind_mode": ("MULTI_BINDED", "NAT"), "specification": ("Small", "Middle", "Large", "XLarge.1")}
        checks = [lambda f=field, a=allowed: not_one_of(ctx.label, f, inputs[f], a)
                  for field, allowed in choices.items()
                  if inputs.get(field) is not None and known(inputs[field]) and inputs[field] not in allowed]
        return problems(*checks)

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        router = require_vpc(ctx, inputs["vpc_id"])
        vswitch = find_vswitch(ctx.lab, inputs["vswitch_id"])
        if vswitch.router.vpc_id != router.vpc_id:
            raise ValidationError(ctx.label, "vswitch_id", f"{vswitch.vswitch_id} is in VPC {vswitch.router.vpc_id}, "
                                                           f"not in vpc_id {router.vpc_id}")
        ngw_id = new_id("ngw")
        NatGatewayRealization(ctx.lab, ngw_id).create(vswitch, ctx.label)  # a free address, under the lock
        name = inputs.get("nat_gateway_name")
        state = self.state({**inputs, "nat_gateway_name": name, "name": name, "status": "Available",
                            "instance_charge_type": "PrePaid" if inputs["payment_type"] == "Subscription"
                            else "PostPaid", **_tables(ngw_id)})
        records.put(ctx.lab, ngw_id, state)
        return ngw_id, state

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        found = NatGatewayRealization(ctx.lab, id_).read()
        if found is None:
            return None
        return self.state({**records.get(ctx.lab, id_), **state, "vpc_id": found.vpc_id,
                           "vswitch_id": found.vswitch_id, "status": "Available", **_tables(id_)})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        state = self.merged(olds, news)
        records.put(ctx.lab, id_, state)
        return state

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        if state.get("deletion_protection") is True:  # as Alibaba: protection is switched off first
            raise LabError(f"{self.label} {id_}: deletion_protection is on; set it to false before deleting it")
        gateway = NatGatewayRealization(ctx.lab, id_)
        if state.get("force") is True:  # as Alibaba's force: its entries go, its EIPs are unbound
            for rule, _ in gateway.entries():
                gateway.remove_entry(rule.entry_id)
                records.drop(ctx.lab, rule.entry_id)
            for forward, _ in gateway.forwards():
                gateway.remove_forward(forward.entry_id)
                records.drop(ctx.lab, forward.entry_id)
            for eip_id in gateway.eips().values():
                ElasticIp(ctx.lab, eip_id).disassociate()
        gateway.delete(f"{self.label} {id_}")  # refused while EIPs are bound
        records.drop(ctx.lab, id_)


def _tables(ngw_id: str) -> dict[str, str]:
    return {"snat_table_ids": ngw_model.snat_table_id(ngw_id), "forward_table_ids": ngw_model.forward_table_id(ngw_id)}


def _one_source(resource: str, inputs: dict[str, Any]) -> None:
    """Alibaba: a SNAT entry translates either a vSwitch or a CIDR block."""
    both = given(inputs.get("source_vswitch_id")) and given(inputs.get("source_cidr"))
    if both:
        raise ValidationError(resource, "source_cidr", "give source_vswitch_id or source_cidr, not both")
    if not given(inputs.get("source_vswitch_id")) and not given(inputs.get("source_cidr")):
        raise ValidationError(resource, "source_vswitch_id", "is required (or source_cidr): the entry translates "
                                                             "a vSwitch or a CIDR block")


class SnatEntry(Kind):
    token = "alicloud:vpc/snatEntry:SnatEntry"
    label = "vpc.SnatEntry"
    # The entry is its rules: another table, source or address is another entry (Alibaba changes snat_ip in place).
    replace_on = ("snat_table_id", "source_vswitch_id", "source_cidr", "snat_ip")
    defaults: ClassVar = {"eip_affinity": 0}
    realized = ("snat_table_id", "source_vswitch_id", "source_cidr", "snat_ip")

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """A SNAT address pool as the state keeps it: ``a,b`` (a program may write ``"a, b"``)."""
        snat_ip = inputs.get("snat_ip")
        if isinstance(snat_ip, str) and known(snat_ip) and "," in snat_ip:
            inputs = {**inputs, "snat_ip": ",".join(part.strip() for part in snat_ip.split(","))}
        return inputs

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        value, checks = inputs.get, []
        if known(value("source_vswitch_id")) and known(value("source_cidr")):
            checks.append(lambda: _one_source(ctx.label, inputs))
        if given(value("source_cidr")) and known(value("source_cidr")):
            checks.append(lambda: ngw_model.check_source_cidr(ctx.label, value("source_cidr")))
        if value("snat_ip") is not None and known(value("snat_ip")):
            checks.append(lambda: ngw_model.check_snat_ip(ctx.label, value("snat_ip")))
        if known(value("eip_affinity")) and value("eip_affinity") not in (0, 1):
            checks.append(lambda: not_one_of(ctx.label, "eip_affinity", value("eip_affinity"), (0, 1)))
        return problems(*checks)

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        table, entry_id = inputs["snat_table_id"], new_id("snat")
        gateway = NatGatewayRealization(ctx.lab, ngw_model.ngw_of_snat_table(table))
        source_cidr, source_vswitch = inputs.get("source_cidr") or None, inputs.get("source_vswitch_id") or None
        rule = retry(lambda: gateway.add_entry(entry_id, ctx.label, inputs["snat_ip"], source_cidr, source_vswitch),
                      ValidationError, when=lambda exc: exc.field == "snat_ip")
        state = self.state({**inputs, **self._facts(rule), "status": "Available"})
        records.put(ctx.lab, entry_id, state)  # its name, for vpc.get_snat_entries and an import by id
        # the real provider's id: <snat table>:<snat entry>
        return f"{table}:{entry_id}", state

    @staticmethod
    def _facts(rule: ngw_model.SnatRule) -> dict[str, Any]:
        source = {"source_vswitch_id": rule.source_vswitch_id} if rule.source_vswitch_id else \
            {"source_cidr": str(rule.source)}
        return {"snat_entry_id": rule.entry_id, "snat_ip": str(rule.snat_ip), **source}

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        table, _, entry_id = id_.partition(":")
        rule = NatGatewayRealization(ctx.lab, ngw_model.ngw_of_snat_table(table)).entry(entry_id)
        if rule is None:
            records.drop(ctx.lab, entry_id)  # gone behind Pulumi's back: the engine forgets it, so does the record
            return None
        # an import by id finds what the lab only keeps (the name) in the record
        return self.state({**records.get(ctx.lab, entry_id), **state, "snat_table_id": table, **self._facts(rule),
                           "status": "Available"})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        """What changes in place is what the lab only keeps (the name, eip_affinity): the record follows."""
        state = self.merged(olds, news)
        records.put(ctx.lab, id_.partition(":")[2], state)
        return state

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        table, _, entry_id = id_.partition(":")
        NatGatewayRealization(ctx.lab, ngw_model.ngw_of_snat_table(table)).remove_entry(entry_id)
        records.drop(ctx.lab, entry_id)


class ForwardEntry(Kind):
    """A DNAT entry: what reaches one of the gateway's EIPs on a port goes to an address (and port) of its VPC."""

    token = "alicloud:vpc/forwardEntry:ForwardEntry"
    label = "vpc.ForwardEntry"
    # Another table is another gateway; the rest changes in place (Alibaba's ModifyForwardEntry), which also keeps
    # a changed port from colliding with the entry's own old one, as a new entry made before the old goes would.
    replace_on = ("forward_table_id",)
    computed = ("forward_entry_name", "name")  # each the other's alias
    defaults: ClassVar = {"port_break": False}
    realized = ("forward_table_id", "external_ip", "external_port", "ip_protocol", "internal_ip", "internal_port",
                "port_break")
    not_imported = ("name",)

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        name = first(inputs.get("forward_entry_name"), inputs.get("name"))
        return {**inputs, "forward_entry_name": name} if name is not None else inputs

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        value, label, checks = inputs.get, ctx.label, []

        def have(field: str) -> bool:  # given and known (a missing required one is reported as such)
            return value(field) is not None and known(value(field))

        if have("forward_table_id"):
            checks.append(lambda: ngw_model.check_forward_table_id(label, value("forward_table_id")))
        if have("external_ip"):
            checks.append(lambda: ngw_model.check_external_ip(label, value("external_ip")))
        if have("internal_ip"):
            checks.append(lambda: ngw_model.check_internal_ip(label, value("internal_ip")))
        if have("ip_protocol"):
            checks.append(lambda: ngw_model.check_ip_protocol(label, value("ip_protocol")))
            protocol = str(value("ip_protocol")).lower()
            ports = {f: value(f) for f in ("external_port", "internal_port") if have(f)}
            checks += [lambda f=f, v=v: ngw_model.check_ports(label, f, v, protocol) for f, v in ports.items()]
            if len(ports) == 2 and protocol in ngw_model.PROTOCOLS:
                checks.append(lambda: ngw_model.check_port_pair(
                    label, *(ngw_model.check_ports(label, f, v, protocol) for f, v in ports.items())))
        return _unique(problems(*checks))

    def diff(self, olds: dict[str, Any], news: dict[str, Any]) -> Diff:
        """Alibaba takes ``TCP``/``tcp`` and ``Any``/``any`` alike: a spelling alone is no change (an import reads the
        kernel's lower case)."""
        spelled = {k: olds[k] for k in ("ip_protocol", "external_port", "internal_port")
                   if isinstance(olds.get(k), str) and isinstance(news.get(k), str)
                   and olds[k].lower() == news[k].lower()}
        return super().diff({**olds, **{k: news[k] for k in spelled}}, news)

    def _rule(self, ctx: Context, entry_id: str, inputs: dict[str, Any]) -> ngw_model.DnatRule:
        return ngw_model.forward_rule(ctx.label, entry_id, inputs["external_ip"], inputs["external_port"],
                                      inputs["ip_protocol"], inputs["internal_ip"], inputs["internal_port"],
                                      inputs.get("port_break") is True)

    @staticmethod
    def _gateway(ctx: Context, table: str) -> NatGatewayRealization:
        return NatGatewayRealization(ctx.lab, ngw_model.ngw_of_forward_table(table))

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        table = inputs["forward_table_id"]
        rule = self._rule(ctx, ngw_model.new_forward_id(), inputs)
        gateway = self._gateway(ctx, table)
        # The SDK's example binds the EIP beside the entry, in parallel: wait for the binding as the real provider does.
        made = retry(lambda: gateway.add_forward(ctx.label, rule), ValidationError,
                     when=lambda exc: exc.field == "external_ip" and ngw_model.NOT_BOUND in exc.reason)
        name = inputs.get("forward_entry_name")
        state = self.state({**inputs, **self._facts(made, inputs), "forward_entry_name": name, "name": name})
        records.put(ctx.lab, made.entry_id, state)  # the name, for an import by id
        return f"{table}:{made.entry_id}", state  # the real provider's id: <forward table>:<forward entry>

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        table, _, entry_id = id_.partition(":")
        made = self._gateway(ctx, table).replace_forward(ctx.label, self._rule(ctx, entry_id, news))
        state = self.merged(olds, {**news, **self._facts(made, news)})
        records.put(ctx.lab, entry_id, state)
        return state

    @staticmethod
    def _facts(rule: ngw_model.DnatRule, given_: dict[str, Any]) -> dict[str, Any]:
        """The entry's facts from the kernel, spelled as the program gave them when they mean the same
        (``TCP``/``tcp``, ``Any``/``any``): no drift from spelling alone."""
        kernel = {"external_ip": str(rule.external_ip), "internal_ip": str(rule.internal_ip),
                  "ip_protocol": rule.protocol, "external_port": str(rule.external or ngw_model.ANY),
                  "internal_port": str(rule.internal or ngw_model.ANY), "port_break": rule.port_break}
        spelled = {k: given_[k] if isinstance(given_.get(k), str) and str(given_[k]).lower() == v else v
                   for k, v in kernel.items() if isinstance(v, str)}
        return {**kernel, **spelled, "forward_entry_id": rule.entry_id, "status": "Available"}

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        table, _, entry_id = id_.partition(":")
        rule = self._gateway(ctx, table).forward(entry_id)
        if rule is None:
            records.drop(ctx.lab, entry_id)  # gone behind Pulumi's back: the engine forgets it, so does the record
            return None
        name = state.get("forward_entry_name") or records.get(ctx.lab, entry_id).get("forward_entry_name")
        return self.state({**state, "forward_table_id": table, **self._facts(rule, state),
                           "forward_entry_name": name, "name": name})

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        table, _, entry_id = id_.partition(":")
        self._gateway(ctx, table).remove_forward(entry_id)
        records.drop(ctx.lab, entry_id)


def _unique(found: list[ValidationError]) -> list[ValidationError]:
    """One error per field and reason (the pair check repeats a port's own error)."""
    unique: dict[tuple[str, str], ValidationError] = {}
    for error in found:
        unique.setdefault((error.field, error.reason), error)
    return list(unique.values())


KINDS = (Network(), Switch(), RouteEntry(), NatGateway(), SnatEntry(), ForwardEntry())


# --- data sources ------------------------------------------------------------------------------------------

GET_NETWORKS = "alicloud:vpc/getNetworks:getNetworks"
GET_SWITCHES = "alicloud:vpc/getSwitches:getSwitches"
_OUTPUTS = "pulumi_alicloud.vpc.outputs"


def matches(value: Any, wanted: Any) -> bool:
    """A filter left out matches everything."""
    return wanted is None or value == wanted


def name_matches(name: str | None, pattern: str | None) -> bool:
    """``name_regex`` as the real provider applies it (Go's MatchString: anywhere in the name)."""
    return pattern is None or re.search(pattern, name or "") is not None


def tags_match(tags: dict[str, str] | None, wanted: dict[str, str] | None) -> bool:
    return not wanted or all((tags or {}).get(k) == v for k, v in wanted.items())


def _network_item(region: str, router: VpcRouter, cidr: ipaddress.IPv4Network,
                  record: dict[str, Any]) -> dict[str, Any]:
    ids = _router_ids(router.vpc_id)
    return {"id": router.vpc_id, "vpc_id": router.vpc_id, "cidr_block": str(cidr), "vpc_name": record.get("vpc_name"),
            "status": "Available", "region_id": region, "route_table_id": ids["route_table_id"],
            "router_id": ids["router_id"], "vrouter_id": ids["router_id"], "is_default": False,
            "vswitch_ids": [v.vswitch_id for v in router.vswitches()], "creation_time": record.get("create_time"),
            "description": record.get("description"), "resource_group_id": record.get("resource_group_id"),
            "tags": record.get("tags") or {}, "secondary_cidr_blocks": [], "user_cidrs": [], "ipv6_cidr_block": "",
            "dhcp_options_set_id": "", "dhcp_options_set_status": "", "dns_hostname_status": "DISABLED"}


def _network_wanted(args: dict[str, Any], item: dict[str, Any]) -> bool:
    return (matches(item["cidr_block"], args.get("cidr_block")) and matches(item["vpc_name"], args.get("vpc_name"))
            and matches(item["status"], args.get("status")) and matches(False, args.get("is_default") or None)
            and (not args.get("ids") or item["id"] in args["ids"])
            and (args.get("vswitch_id") is None or args["vswitch_id"] in item["vswitch_ids"])
            and matches(item["resource_group_id"], args.get("resource_group_id"))
            and name_matches(item["vpc_name"], args.get("name_regex")) and tags_match(item["tags"], args.get("tags")))


def get_networks(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The lab's VPCs (router namespaces) by id; names, descriptions and tags from the plugin's records."""
    module = "pulumi_alicloud.vpc.get_networks"
    args = arguments(module, "GetNetworksResult", wire_args)
    items = []
    for router in sorted(routers(lab) if lab else [], key=lambda r: r.vpc_id):
        cidr = router.cidr()  # None: a router being torn down
        item = _network_item(config.region, router, cidr, records.get(router.lab, router.vpc_id)) if cidr else None
        if item is not None and _network_wanted(args, item):
            items.append(item)
    ids = [i["id"] for i in items]
    return result(module, "GetNetworksResult", {
        **args, "id": data_id(ids), "ids": ids, "names": [i["vpc_name"] or "" for i in items],
        "total_count": len(items), "vpcs": [result(_OUTPUTS, "GetNetworksVpcResult", i) for i in items]})


def _free_addresses(vswitch: VSwitch, cidr: ipaddress.IPv4Network) -> int:
    """What Alibaba reports as available: the block without its 4 reserved addresses and those in use."""
    return cidr.num_addresses - len(addressing.reserved(cidr)) - len(vswitch.used_addresses())


def _switch_item(vswitch: VSwitch, cidr: ipaddress.IPv4Network, record: dict[str, Any]) -> dict[str, Any]:
    name = record.get("vswitch_name")
    return {"id": vswitch.vswitch_id, "vswitch_id": vswitch.vswitch_id, "vpc_id": vswitch.router.vpc_id,
            "zone_id": vswitch.zone_id(), "cidr_block": str(cidr), "name": name, "vswitch_name": name,
            "status": "Available", "description": record.get("description"),
            "creation_time": record.get("create_time"), "is_default": False,
            "available_ip_address_count": _free_addresses(vswitch, cidr),
            "route_table_id": _router_ids(vswitch.router.vpc_id)["route_table_id"],
            "resource_group_id": record.get("resource_group_id"), "tags": record.get("tags") or {},
            "ipv6_cidr_block": "", "enable_ipv6": False}


def _switch_wanted(args: dict[str, Any], item: dict[str, Any]) -> bool:
    return (all(matches(item[k], args.get(k)) for k in ("vpc_id", "zone_id", "cidr_block", "vswitch_name", "status",
                                                         "route_table_id", "resource_group_id"))
            and matches(False, args.get("is_default") or None) and (not args.get("ids") or item["id"] in args["ids"])
            and name_matches(item["vswitch_name"], args.get("name_regex"))
            and tags_match(item["tags"], args.get("tags")))


def get_switches(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The lab's vSwitches (bridges) by VPC and id, with the free addresses counted from the ports' aliases."""
    module = "pulumi_alicloud.vpc.get_switches"
    args = arguments(module, "GetSwitchesResult", wire_args)
    items = []
    for router in sorted(routers(lab) if lab else [], key=lambda r: r.vpc_id):
        for vswitch in router.vswitches():
            cidr = vswitch.cidr()
            item = _switch_item(vswitch, cidr, records.get(lab, vswitch.vswitch_id)) if cidr else None
            if item is not None and _switch_wanted(args, item):
                items.append(item)
    ids = [i["id"] for i in items]
    return result(module, "GetSwitchesResult", {
        **args, "id": data_id(ids), "ids": ids, "names": [i["vswitch_name"] or "" for i in items],
        "vswitches": [result(_OUTPUTS, "GetSwitchesVswitchResult", i) for i in items]})


GET_ENHANCED_NAT_ZONES = "alicloud:vpc/getEnhancedNatAvailableZones:getEnhancedNatAvailableZones"


def get_enhanced_nat_available_zones(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None
                                     ) -> dict[str, Any]:
    """Every zone of the provider's region (`<region>-a` ... `-k`): the lab's Enhanced NAT gateways, the only kind,
    can sit in any of them."""
    module = "pulumi_alicloud.vpc.get_enhanced_nat_available_zones"
    args = arguments(module, "GetEnhancedNatAvailableZonesResult", wire_args)
    ids = catalog.zones(config.region)
    zones = [result(_OUTPUTS, "GetEnhancedNatAvailableZonesZoneResult",
                    {"zone_id": z, "local_name": catalog.zone_local_name(config.region, z)}) for z in ids]
    return result(module, "GetEnhancedNatAvailableZonesResult",
                  {**args, "id": data_id(ids), "ids": ids, "zones": zones})


GET_NAT_GATEWAYS = "alicloud:vpc/getNatGateways:getNatGateways"


def _nat_gateway_item(gateway: NatGatewayRealization, found: Any, record: dict[str, Any]) -> dict[str, Any]:
    name = record.get("nat_gateway_name") or ""
    return {"id": gateway.ngw_id, "nat_gateway_id": gateway.ngw_id, "name": name, "nat_gateway_name": name,
            "vpc_id": found.vpc_id, "vswitch_id": found.vswitch_id, "status": "Available",
            "business_status": "Normal", "nat_type": record.get("nat_type") or "Enhanced",
            "network_type": record.get("network_type") or "internet",
            "payment_type": record.get("payment_type") or "PayAsYouGo",
            "internet_charge_type": record.get("internet_charge_type") or "PayByLcu",
            "specification": record.get("specification") or "", "spec": record.get("specification") or "",
            "description": record.get("description") or "", "resource_group_id": record.get("resource_group_id") or "",
            "deletion_protection": bool(record.get("deletion_protection")), "ecs_metric_enabled": False,
            "expired_time": "", "tags": record.get("tags") or {}, "ip_lists": sorted(gateway.eips()),
            **{k: [v] for k, v in _tables(gateway.ngw_id).items()}}


def _nat_gateway_wanted(args: dict[str, Any], item: dict[str, Any]) -> bool:
    return (all(matches(item[k], args.get(k)) for k in ("vpc_id", "nat_gateway_name", "nat_type", "payment_type",
                                                         "specification", "status", "resource_group_id"))
            and (not args.get("ids") or item["id"] in args["ids"])
            and name_matches(item["nat_gateway_name"], args.get("name_regex"))
            and tags_match(item["tags"], args.get("tags")))


def get_nat_gateways(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The lab's NAT gateways (their namespaces) by id, with the addresses of the EIPs bound to them; names, types
    and tags from the plugin's records."""
    module = "pulumi_alicloud.vpc.get_nat_gateways"
    args = arguments(module, "GetNatGatewaysResult", wire_args)
    items = []
    for gateway in sorted(nat_gateways(lab) if lab else [], key=lambda g: g.ngw_id):
        found = gateway.read()  # None: a gateway being torn down
        item = _nat_gateway_item(gateway, found, records.get(lab, gateway.ngw_id)) if found else None
        if item is not None and _nat_gateway_wanted(args, item):
            items.append(item)
    ids = [i["id"] for i in items]
    return result(module, "GetNatGatewaysResult", {
        **args, "id": data_id(ids), "ids": ids, "names": [i["nat_gateway_name"] for i in items],
        "total_count": len(items), "gateways": [result(_OUTPUTS, "GetNatGatewaysGatewayResult", i) for i in items]})


GET_SNAT_ENTRIES = "alicloud:vpc/getSnatEntries:getSnatEntries"
GET_FORWARD_ENTRIES = "alicloud:vpc/getForwardEntries:getForwardEntries"


def _table_gateway(lab: str | None, table: str, prefix: str) -> NatGatewayRealization | None:
    """The gateway of a SNAT (``stb-``) or forward (``ftb-``) table id, if it is one of the lab's."""
    if not lab or not table.startswith(prefix):
        return None
    gateway = NatGatewayRealization(lab, "ngw-" + table[len(prefix):])
    try:
        return gateway if gateway.namespace.exists() else None
    except ValueError:  # not an acklab id: no such table
        return None


def _entries(lab: str | None, wire_args: dict[str, Any], kind: str, table_field: str, prefix: str,
             rows: Callable[[NatGatewayRealization], list[dict[str, Any]]], filters: tuple[str, ...]) -> dict[str, Any]:
    """``vpc.get_<kind>_entries``: the rows of the gateway whose table ``table_field`` names (none for another
    kind of id or a gateway not in the lab), filtered as the SDK's arguments say."""
    module, name = f"pulumi_alicloud.vpc.get_{kind}_entries", f"{kind}_entry_name"
    title = kind.capitalize()
    args = arguments(module, f"Get{title}EntriesResult", wire_args)
    gateway = _table_gateway(lab, args.get(table_field) or "", prefix)
    items = [row for row in (rows(gateway) if gateway is not None else [])
             if all(matches(row[k], args.get(k)) for k in (name, *filters, "status"))
             and (not args.get("ids") or row["id"] in args["ids"]) and name_matches(row[name], args.get("name_regex"))]
    ids = [i["id"] for i in items]
    return result(module, f"Get{title}EntriesResult", {
        **args, "id": data_id(ids), "ids": ids, "names": [i[name] for i in items],
        "entries": [result(_OUTPUTS, f"Get{title}EntriesEntryResult", i) for i in items]})


def _snat_rows(lab: str, gateway: NatGatewayRealization) -> list[dict[str, Any]]:
    return [{"id": rule.entry_id, "snat_entry_id": rule.entry_id, "status": "Available",
             "snat_entry_name": records.get(lab, rule.entry_id).get("snat_entry_name") or "",
             "snat_ip": str(rule.snat_ip), "source_cidr": str(rule.source), "source_vswitch_id": rule.source_vswitch_id}
            for rule, _ in gateway.entries()]


def _forward_rows(lab: str, gateway: NatGatewayRealization) -> list[dict[str, Any]]:
    rows = []
    for rule, _ in gateway.forwards():
        name = records.get(lab, rule.entry_id).get("forward_entry_name") or ""
        rows.append({"id": rule.entry_id, "forward_entry_id": rule.entry_id, "forward_entry_name": name,
                     "name": name, "status": "Available", "external_ip": str(rule.external_ip),
                     "external_port": str(rule.external or ngw_model.ANY), "internal_ip": str(rule.internal_ip),
                     "internal_port": str(rule.internal or ngw_model.ANY), "ip_protocol": rule.protocol})
    return rows


def get_snat_entries(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The SNAT entries of a gateway's SNAT table (the nftables rules whose comments hold them), names from the
    plugin's records."""
    return _entries(lab, wire_args, "snat", "snat_table_id", "stb-", lambda g: _snat_rows(g.lab, g),
                    ("snat_ip", "source_cidr", "source_vswitch_id"))


def get_forward_entries(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The DNAT entries of a gateway's forward table (the nftables rules whose comments hold them), names from the
    plugin's records."""
    return _entries(lab, wire_args, "forward", "forward_table_id", "ftb-", lambda g: _forward_rows(g.lab, g),
                    ("external_ip", "external_port", "internal_ip", "internal_port", "ip_protocol"))


FUNCTIONS: dict[str, Function] = {GET_NETWORKS: get_networks, GET_SWITCHES: get_switches,
                                  GET_ENHANCED_NAT_ZONES: get_enhanced_nat_available_zones,
                                  GET_NAT_GATEWAYS: get_nat_gateways, GET_SNAT_ENTRIES: get_snat_entries,
                                  GET_FORWARD_ENTRIES: get_forward_entries}
