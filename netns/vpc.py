"""``vpc.Network`` and ``vpc.Switch``, with pulumi-alicloud's argument names, realized on the kernel."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, ReadResult, Resource

from netns._provider import LabProvider, all_facts, current_lab, is_known, recall, remember
from netns.model import addressing
from netns.model.errors import NotFoundError, ValidationError
from netns.model.names import new_id
from netns.realize.route_entry import RouteEntry as RouteEntryRealization
from netns.realize.route_entry import check_destination
from netns.realize.vpc import VpcRouter, VSwitch


class NetworkProvider(LabProvider):
    kind = "vpc.Network"
    inputs = ("lab", "cidr_block", "vpc_name", "description", "tags")
    replace_on = ("lab", "cidr_block")
    validators: ClassVar[dict[str, Callable[[str, Any], Any]]] = {"cidr_block": addressing.check_vpc_cidr}

    def create(self, props: dict[str, Any]) -> CreateResult:
        resource = f"{self.kind} {props['__name']!r}"
        cidr = addressing.check_vpc_cidr(resource, props["cidr_block"])
        vpc_id = new_id("vpc")
        router = VpcRouter(props["lab"], vpc_id)
        router.create(cidr)
        return CreateResult(vpc_id, self._outs(props, router))

    def _outs(self, props: dict[str, Any], router: VpcRouter) -> dict[str, Any]:
        suffix = router.vpc_id.removeprefix("vpc-")
        return {
            **props,
            "route_table_id": f"vtb-{suffix}",
            "router_id": f"vrt-{suffix}",
            "netns": router.namespace.name,
        }

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        router = VpcRouter(props["lab"], id_)
        cidr = router.cidr()
        if cidr is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "cidr_block": str(cidr), "netns": router.namespace.name})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        VpcRouter(props["lab"], id_).delete()


class Network(Resource):
    """A VPC: a private CIDR block with its own router (one namespace) and route table."""

    cidr_block: pulumi.Output[str]
    vpc_name: pulumi.Output[str | None]
    route_table_id: pulumi.Output[str]
    router_id: pulumi.Output[str]
    netns: pulumi.Output[str]

    def __init__(self, resource_name: str, cidr_block: pulumi.Input[str], vpc_name: pulumi.Input[str] | None = None,
                 description: pulumi.Input[str] | None = None, tags: pulumi.Input[dict[str, str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        resource = f"{NetworkProvider.kind} {resource_name!r}"
        cidr = addressing.check_vpc_cidr(resource, cidr_block) if is_known(cidr_block) else None
        super().__init__(NetworkProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "cidr_block": cidr_block, "vpc_name": vpc_name,
            "description": description, "tags": tags,
            "route_table_id": None, "router_id": None, "netns": None,
        }, opts)
        remember(self.id, kind="vpc", resource=resource, cidr=cidr)
        remember(self.route_table_id, kind="route_table", vpc=id(self.id))


class SwitchProvider(LabProvider):
    kind = "vpc.Switch"
    inputs = ("lab", "vpc_id", "cidr_block", "zone_id", "vswitch_name", "description", "tags")
    replace_on = ("lab", "vpc_id", "cidr_block", "zone_id")
    validators: ClassVar[dict[str, Callable[[str, Any], Any]]] = {"cidr_block": addressing.check_vswitch_cidr}

    def create(self, props: dict[str, Any]) -> CreateResult:
        resource = f"{self.kind} {props['__name']!r}"
        cidr = addressing.check_vswitch_cidr(resource, props["cidr_block"])
        router = VpcRouter(props["lab"], props["vpc_id"])
        if router.cidr() is None:
            raise NotFoundError(f"{resource}: vpc_id: VPC {props['vpc_id']} does not exist in lab {props['lab']}")
        vswitch = VSwitch(router, new_id("vsw"))
        vswitch.create(cidr, props["zone_id"], resource)
        return CreateResult(vswitch.vswitch_id, self._outs(props, vswitch, cidr))

    def _outs(self, props: dict[str, Any], vswitch: VSwitch, cidr: addressing.Net) -> dict[str, Any]:
        return {**props, "gateway_ip": str(addressing.gateway(cidr)), "bridge": vswitch.vswitch_id,
                "netns": vswitch.router.namespace.name}

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        vswitch = VSwitch(VpcRouter(props["lab"], props["vpc_id"]), id_)
        cidr = vswitch.cidr()
        if cidr is None:
            return ReadResult("", {})
        return ReadResult(id_, {**self._outs(props, vswitch, cidr), "cidr_block": str(cidr),
                                "zone_id": vswitch.zone_id()})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        VSwitch(VpcRouter(props["lab"], props["vpc_id"]), id_).delete()


class Switch(Resource):
    """A vSwitch: a subnet of the VPC in one zone; a bridge in the VPC router with the gateway address."""

    vpc_id: pulumi.Output[str]
    cidr_block: pulumi.Output[str]
    zone_id: pulumi.Output[str]
    vswitch_name: pulumi.Output[str | None]
    gateway_ip: pulumi.Output[str]
    netns: pulumi.Output[str]

    def __init__(self, resource_name: str, vpc_id: pulumi.Input[str], cidr_block: pulumi.Input[str],
                 zone_id: pulumi.Input[str], vswitch_name: pulumi.Input[str] | None = None,
                 description: pulumi.Input[str] | None = None, tags: pulumi.Input[dict[str, str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        resource = f"{SwitchProvider.kind} {resource_name!r}"
        if zone_id is None:
            raise ValidationError(resource, "zone_id", "is required (e.g. cn-hangzhou-h)")
        cidr = self._check_early(resource, vpc_id, cidr_block)
        super().__init__(SwitchProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "vpc_id": vpc_id, "cidr_block": cidr_block,
            "zone_id": zone_id, "vswitch_name": vswitch_name, "description": description, "tags": tags,
            "gateway_ip": None, "bridge": None, "netns": None,
        }, opts)
        remember(self.id, kind="vswitch", resource=resource, cidr=cidr, vpc=id(vpc_id), ips=set())

    @staticmethod
    def _check_early(resource: str, vpc_id: Any, cidr_block: Any) -> addressing.Net | None:
        if not is_known(cidr_block):
            return None
        vpc = recall(vpc_id)
        vpc_cidr = vpc["cidr"] if vpc else None
        siblings = [(f["resource"], f["cidr"]) for f in all_facts("vswitch")
                    if f["vpc"] == id(vpc_id) and f["cidr"] is not None]
        return addressing.check_vswitch_cidr(resource, cidr_block, vpc_cidr, siblings if vpc else ())


class RouteEntryProvider(LabProvider):
    kind = "vpc.RouteEntry"
    inputs = ("lab", "route_table_id", "destination_cidrblock", "nexthop_type", "nexthop_id")
    replace_on = inputs

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        try:
            _check_route_entry(f"{self.kind} {news.get('__name')!r}", news)
        except ValidationError as exc:
            result.failures.append(CheckFailure(exc.field, exc.reason))
        return result

    @staticmethod
    def _entry(props: dict[str, Any]) -> RouteEntryRealization:
        vpc_id = "vpc-" + props["route_table_id"].removeprefix("vtb-")
        destination = ipaddress.IPv4Network(props["destination_cidrblock"])
        return RouteEntryRealization(VpcRouter(props["lab"], vpc_id), destination, props["nexthop_id"])

    def create(self, props: dict[str, Any]) -> CreateResult:
        resource = f"{self.kind} {props['__name']!r}"
        _check_route_entry(resource, props)
        self._entry(props).create(resource)
        entry_id = ":".join((props["route_table_id"], props["destination_cidrblock"], props["nexthop_type"],
                             props["nexthop_id"]))
        return CreateResult(entry_id, dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, dict(props)) if self._entry(props).exists() else ReadResult("", {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        self._entry(props).delete()


def _check_route_entry(resource: str, props: dict[str, Any]) -> None:
    table = props.get("route_table_id")
    if is_known(table) and table is not None and not str(table).startswith("vtb-"):
        raise ValidationError(resource, "route_table_id", f"{table!r} is not a route table id (vtb-...)")
    if props.get("nexthop_type", "Instance") != "Instance":
        raise ValidationError(resource, "nexthop_type", f"{props.get('nexthop_type')!r}: only Instance is "
                              "supported (the next hop is an ECS instance)")
    dst = props.get("destination_cidrblock")
    if is_known(dst) and dst is not None:
        check_destination(resource, dst, [])


class RouteEntry(Resource):
    """A custom route in a VPC's route table: the destination block is delivered to an ECS instance."""

    route_table_id: pulumi.Output[str]
    destination_cidrblock: pulumi.Output[str]
    nexthop_id: pulumi.Output[str]

    def __init__(self, resource_name: str, route_table_id: pulumi.Input[str],
                 destination_cidrblock: pulumi.Input[str], nexthop_id: pulumi.Input[str],
                 nexthop_type: pulumi.Input[str] = "Instance", name: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"__name": resource_name, "lab": current_lab(), "route_table_id": route_table_id,
                 "destination_cidrblock": destination_cidrblock, "nexthop_type": nexthop_type,
                 "nexthop_id": nexthop_id, "name": name}
        resource = f"{RouteEntryProvider.kind} {resource_name!r}"
        _check_route_entry(resource, props)
        table = recall(route_table_id)
        if table is not None and is_known(destination_cidrblock):  # against the program's own vSwitches
            blocks = [f["cidr"] for f in all_facts("vswitch") if f["vpc"] == table["vpc"] and f["cidr"] is not None]
            check_destination(resource, destination_cidrblock, blocks)
        super().__init__(RouteEntryProvider(), resource_name, props, opts)

