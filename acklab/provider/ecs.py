"""``ecs.SecurityGroup``, ``ecs.SecurityGroupRule``, ``ecs.Instance``, ``ecs.EcsNetworkInterface`` and its
attachment, ``ecs.EipAddress`` and ``ecs.EipAssociation`` of pulumi-alicloud → ``netns/realize`` (security groups:
rules in the VPC router's filter table; an instance: a namespace plugged into its vSwitch; a secondary ENI: a veth
on its vSwitch, moved into the instance when attached; an EIP: a port on the lab's internet, NATed 1:1 to an
instance in its VPC's router); the data sources ``ecs.get_images``, ``ecs.get_instance_types`` and
``ecs.get_security_groups``."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable
from typing import Any, ClassVar

from acklab.provider import catalog, records
from acklab.provider.base import Context, Failure, Kind, check_zone, first, given, not_one_of, now, problems
from acklab.provider.config import ProviderConfig
from acklab.provider.index import Function, arguments, data_id
from acklab.provider.sdk import result
from acklab.provider.vpc import matches, name_matches, require_vpc, retry, tags_match
from acklab.provider.wire import known
from netns.kernel.link import index_of
from netns.model import eip as eip_model
from netns.model import slb as slb_model
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import (
    ENI_ALIAS_INPUTS,
    check_eni_alias,
    check_group_count,
    check_instance_name,
    check_reference,
    new_id,
)
from netns.model.security_group import Group, Rule, check_group, parse_rule
from netns.realize import security_group as sg
from netns.realize.eip import ElasticIp
from netns.realize.eni import check_secondary, find_primary_port
from netns.realize.instance import EcsInstance, InstanceState
from netns.realize.nat_gateway import EipInUse
from netns.realize.network_interface import EniState, NetworkInterface
from netns.realize.vpc import VSwitch, find_vswitch, routers

_FOREIGN_GROUP = "sg-00000000"  # stands for a peer group still unknown in a preview (the syntax is all Check needs)


class SecurityGroup(Kind):
    token = "alicloud:ecs/securityGroup:SecurityGroup"
    label = "ecs.SecurityGroup"
    replace_on = ("vpc_id", "security_group_type")
    computed = ("security_group_name", "name", "inner_access")  # aliases
    defaults: ClassVar = {"security_group_type": "normal"}
    lab_required: ClassVar = {"vpc_id": "a group's rules are enforced in its VPC's router"}
    realized = ("vpc_id", "security_group_type", "inner_access_policy", "inner_access")
    not_imported = ("name", "inner_access")

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Alibaba's default policy between members: Accept in a basic group, Drop in an enterprise one; the
        deprecated ``inner_access`` (a bool) says the same."""
        if inputs.get("inner_access_policy") is None:
            access, kind = inputs.get("inner_access"), inputs.get("security_group_type")
            if access is not None and known(access):
                inputs = {**inputs, "inner_access_policy": "Accept" if access else "Drop"}
            elif known(kind):
                inputs = {**inputs, "inner_access_policy": "Drop" if kind == "enterprise" else "Accept"}
        return inputs

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        kind, policy = inputs.get("security_group_type"), inputs.get("inner_access_policy")
        return problems(lambda: check_group(ctx.label, kind, policy)) if known(kind) and known(policy) else ()

    def _group(self, sg_id: str, inputs: dict[str, Any]) -> Group:
        return Group(sg_id, inputs["vpc_id"], inputs["security_group_type"], inputs["inner_access_policy"])

    def _outputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        name = first(inputs.get("security_group_name"), inputs.get("name"))
        return {"security_group_name": name, "name": name,
                "inner_access": inputs["inner_access_policy"] == "Accept"}

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        require_vpc(ctx, inputs["vpc_id"])
        sg_id = new_id("sg")
        sg.create_group(ctx.lab, self._group(sg_id, inputs))
        state = self.state({**inputs, **self._outputs(inputs), "create_time": now()})
        records.put(ctx.lab, sg_id, state)
        return sg_id, state

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        group = sg.load_group(ctx.lab, id_)
        if group is None:
            return None
        return self.state({**records.get(ctx.lab, id_), **state, "vpc_id": group.vpc_id,
                           "security_group_type": group.group_type,
                           "inner_access_policy": group.inner_access_policy,
                           "inner_access": group.inner_access_policy == "Accept"})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        merged = self.merged(olds, news)
        if olds.get("inner_access_policy") != merged["inner_access_policy"]:
            sg.create_group(ctx.lab, self._group(id_, merged))  # keeps the rules, applies the new policy
        state = self.state({**merged, **self._outputs(merged)})
        records.put(ctx.lab, id_, state)
        return state

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        sg.delete_group(ctx.lab, id_)
        records.drop(ctx.lab, id_)


_RULE_ARGS = ("type", "ip_protocol", "port_range", "policy", "priority", "cidr_ip", "source_security_group_id")


class SecurityGroupRule(Kind):
    token = "alicloud:ecs/securityGroupRule:SecurityGroupRule"
    label = "ecs.SecurityGroupRule"
    # A rule is replaced when it changes (the lab's compiled rules are keyed by the rule's id); its description
    # is only state.
    replace_on = ("security_group_id", *_RULE_ARGS, "nic_type", "ipv6_cidr_ip", "prefix_list_id",
                  "source_group_owner_account", "source_group_owner_id")
    computed = ("nic_type",)
    defaults: ClassVar = {"policy": "accept", "priority": 1, "port_range": "-1/-1"}
    realized = ("security_group_id", *_RULE_ARGS)
    unsupported: ClassVar = {
        "ipv6_cidr_ip": (given, "acklab VPCs are IPv4 only"),
        "prefix_list_id": (given, "prefix lists are not supported by acklab yet; give cidr_ip"),
        # The SDK's default is internet; in a VPC group Alibaba takes every rule as intranet whatever is given.
        "nic_type": (lambda v: v not in ("intranet", "internet"), "must be intranet or internet"),
    }

    def _rule(self, ctx: Context, rule_id: str, inputs: dict[str, Any]) -> Rule:
        args = {k: inputs[k] for k in _RULE_ARGS if inputs.get(k) is not None}
        return parse_rule(ctx.label, rule_id, **args, nic_type="intranet")

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        if not all(known(inputs.get(k)) for k in _RULE_ARGS if k != "source_security_group_id"):
            return ()
        if inputs.get("type") is None or inputs.get("ip_protocol") is None:
            return ()  # reported as required
        peer = inputs.get("source_security_group_id")
        syntax = {**inputs, "source_security_group_id": peer if known(peer) or peer is None else _FOREIGN_GROUP}
        return problems(lambda: self._rule(ctx, "sgr-00000000", syntax))

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        sg_id, rule_id = inputs["security_group_id"], new_id("sgr")
        rule = self._rule(ctx, rule_id, inputs)
        if sg.load_group(ctx.lab, sg_id) is None:
            raise NotFoundError(f"{ctx.label}: security_group_id: {sg_id} does not exist in lab {ctx.lab}")
        sg.add_rule(ctx.lab, sg_id, rule)  # checks the peer group (same VPC) under the lab's lock
        return f"{sg_id}:{rule_id}", self.state({
            **inputs, "nic_type": inputs.get("nic_type") or "intranet", "security_group_rule_id": rule_id})

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        sg_id, rule_id = _rule_ids(id_)
        group = sg.load_group(ctx.lab, sg_id)
        if group is None or all(r.rule_id != rule_id for r in group.rules):
            return None
        return self.state({**state, "security_group_id": sg_id, "security_group_rule_id": rule_id})

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        sg.remove_rule(ctx.lab, *_rule_ids(id_))


def _rule_ids(id_: str) -> tuple[str, str]:
    """A rule's id is ``<security group id>:<rule id>``: the group is found from the id alone."""
    sg_id, _, rule_id = id_.partition(":")
    return sg_id, rule_id


_HOST_NAME = re.compile(r"^(?=.{2,64}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
# Outputs Alibaba computes for an instance whose program leaves them out (billing, disks: kept, not realized).
_INSTANCE_DEFAULTS = {"instance_charge_type": "PostPaid", "internet_charge_type": "PayByTraffic",
                      "internet_max_bandwidth_out": 0, "system_disk_category": "cloud_efficiency",
                      "system_disk_size": 40, "spot_strategy": "NoSpot", "status": "Running",
                      "secondary_private_ip_address_count": 0, "deletion_protection": False}
_PAY_AS_YOU_GO_EXPIRY = "2099-12-31T15:59Z"  # what Alibaba reports for a pay-as-you-go instance


def _check_host_name(resource: str, value: Any) -> None:
    if not isinstance(value, str) or not _HOST_NAME.match(value):
        raise ValidationError(resource, "host_name", f"{value!r}: 2-64 letters, digits, dots and dashes, not "
                                                     "starting or ending with a dot or dash")


def _check_private_ip(resource: str, value: Any) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValidationError(resource, "private_ip", f"{value!r} is not an IPv4 address") from None


def user_data_script(value: str | None) -> str:
    """The script to run: the SDK takes user data as base64 (preferred) or as plain text, like the provider."""
    if not value:
        return ""
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


class Instance(Kind):
    token = "alicloud:ecs/instance:Instance"
    label = "ecs.Instance"
    # The primary ENI (vSwitch, addresses), the host name and the user data (run once, at boot) are fixed when
    # the namespace is made; name and groups change in place; image, type, disks and billing are only state.
    replace_on = ("vswitch_id", "private_ip", "vpc_id", "availability_zone", "secondary_private_ips",
                  "secondary_private_ip_address_count", "host_name", "user_data")
    computed = ("private_ip", "instance_name", "availability_zone", "vpc_id", "secondary_private_ips",
                "network_interface_id", *_INSTANCE_DEFAULTS)
    lab_required: ClassVar = {"vswitch_id": "an instance's primary ENI sits on a vSwitch (VPC instances only)"}
    unsupported: ClassVar = {
        "status": (lambda v: v != "Running", "only Running instances are supported by acklab"),
        "network_interface_id": (given, "an existing ENI as the primary one is not supported by acklab yet"),
        "network_interfaces": (given, "secondary ENIs at creation are not supported by acklab yet; attach them"),
        "ipv6_addresses": (given, "acklab VPCs are IPv4 only"),
        "ipv6_address_count": (lambda v: v not in (None, 0), "acklab VPCs are IPv4 only"),
    }
    realized = ("vswitch_id", "private_ip", "security_groups", "instance_name", "host_name", "user_data",
                "secondary_private_ips", "secondary_private_ip_address_count")
    # the primary ENI is the instance's own (refused as an argument); user data ran once, at creation
    not_imported = ("network_interface_id", "user_data")

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        checks = []
        value = inputs.get
        if value("private_ip") is not None and known(value("private_ip")):
            checks.append(lambda: _check_private_ip(ctx.label, value("private_ip")))
        if value("instance_name") is not None and known(value("instance_name")):
            checks.append(lambda: check_instance_name(ctx.label, value("instance_name")))
        if value("host_name") is not None and known(value("host_name")):
            checks.append(lambda: _check_host_name(ctx.label, value("host_name")))
        if known(value("security_groups")):
            checks.append(lambda: check_group_count(ctx.label, value("security_groups")))
        if value("secondary_private_ips") is not None and known(value("secondary_private_ips")):
            checks.append(lambda: check_secondary(ctx.label, "secondary_private_ips", value("secondary_private_ips")))
        if value("availability_zone") is not None and known(value("availability_zone")):
            checks.append(lambda: check_zone(ctx, "availability_zone", value("availability_zone")))
        alias = {f: value(f) for f in ENI_ALIAS_INPUTS if f in self.schema.inputs}
        if all(known(v) for v in alias.values()):  # the ENI's facts must fit its interface alias (kernel limit)
            checks.append(lambda: check_eni_alias(ctx.label, alias))
        return problems(*checks)

    def _check_placement(self, ctx: Context, inputs: dict[str, Any], vswitch: VSwitch, zone_id: str | None) -> None:
        """The zone and VPC the program may also give must be the vSwitch's."""
        zone, vpc_id = inputs.get("availability_zone"), inputs.get("vpc_id")
        if zone is not None and zone != zone_id:
            raise ValidationError(ctx.label, "availability_zone", f"{zone} is not the zone of vSwitch "
                                                                  f"{vswitch.vswitch_id} ({zone_id})")
        if vpc_id is not None and vpc_id != vswitch.router.vpc_id:
            raise ValidationError(ctx.label, "vpc_id", f"{vpc_id} is not the VPC of vSwitch {vswitch.vswitch_id} "
                                                       f"({vswitch.router.vpc_id})")

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        instance = EcsInstance(ctx.lab, new_id("i"), new_id("eni"))
        # Alibaba names an instance created without a name by its id.
        name = inputs.get("instance_name") or instance.instance_id
        secondary = check_secondary(ctx.label, "secondary_private_ips", inputs.get("secondary_private_ips") or ())
        # The realization finds the vSwitch (checked with its zone before anything is made) and answers the
        # addresses it gave, in its own session: the provider opens none.
        plugged = instance.plug(
            inputs["vswitch_id"], inputs.get("private_ip"), ctx.label, name, tuple(inputs.get("security_groups") or ()),
            tuple(secondary), int(inputs.get("secondary_private_ip_address_count") or 0),
            inputs.get("host_name") or "", user_data_script(inputs.get("user_data")),
            check=lambda vswitch, zone_id: self._check_placement(ctx, inputs, vswitch, zone_id))
        private_ip, vswitch = plugged.private_ip, plugged.vswitch
        kind, system = catalog.instance_type(inputs.get("instance_type") or ""), catalog.image(inputs.get("image_id"))
        created = now(minutes_only=True)
        return instance.instance_id, self._recorded(ctx, instance.instance_id, {
            **_INSTANCE_DEFAULTS, **{k: v for k, v in inputs.items() if v is not None},
            "instance_name": name, "private_ip": private_ip, "primary_ip_address": private_ip,
            "network_interface_id": instance.eni_id, "vpc_id": vswitch.router.vpc_id,
            "availability_zone": plugged.zone_id, "security_groups": list(inputs.get("security_groups") or []),
            "secondary_private_ips": list(plugged.secondary_private_ips),
            "cpu": kind.cpu if kind else None, "memory": kind.memory_mib if kind else None,
            "os_type": system.os_type, "os_name": system.os_name, "public_ip": "",
            "create_time": created, "start_time": created, "expired_time": _PAY_AS_YOU_GO_EXPIRY,
            "system_disk_id": "d-" + instance.instance_id.removeprefix("i-"),
        })

    def _recorded(self, ctx: Context, id_: str, outputs: dict[str, Any]) -> dict[str, Any]:
        state = self.state(outputs)
        records.put(ctx.lab, id_, state)
        return state

    def _instance(self, ctx: Context, id_: str, state: dict[str, Any]) -> EcsInstance:
        return EcsInstance(ctx.lab, id_, state.get("network_interface_id") or _primary_eni(ctx.lab, id_) or "")

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        instance = self._instance(ctx, id_, state)
        found = instance.read()
        if found is None:
            return None
        # Imported by its id alone, the state is empty: the kernel has the instance's network facts, the record
        # what the lab only keeps (image, type, billing); a program's own state wins over both.
        state = {**_INSTANCE_DEFAULTS, **self._kernel_facts(ctx, found), **records.get(ctx.lab, id_), **state}
        return self.state({**state, "private_ip": found.private_ip, "primary_ip_address": found.private_ip,
                           "vswitch_id": found.vswitch_id or state.get("vswitch_id"),
                           "network_interface_id": instance.eni_id or None,
                           "security_groups": list(found.security_groups),
                           "secondary_private_ips": list(found.secondary_private_ips)})

    @staticmethod
    def _kernel_facts(ctx: Context, found: InstanceState) -> dict[str, Any]:
        """What an instance's primary ENI port and its vSwitch say of it (its name with spaces as ``_``)."""
        facts: dict[str, Any] = {"instance_name": found.name or None, "host_name": found.host_name or None}
        if found.vswitch_id:
            vswitch = find_vswitch(ctx.lab, found.vswitch_id)
            facts.update(vpc_id=vswitch.router.vpc_id, availability_zone=vswitch.zone_id())
        return facts

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        merged = self.merged(olds, news)
        name = news.get("instance_name") or olds.get("instance_name") or id_
        groups = tuple(merged.get("security_groups") or ())
        if name != olds.get("instance_name") or groups != tuple(olds.get("security_groups") or ()):
            self._instance(ctx, id_, olds).relabel(ctx.label, name, groups)  # the groups' sets follow the ENI
        return self._recorded(ctx, id_, {**merged, "instance_name": name, "security_groups": list(groups)})

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        self._instance(ctx, id_, state).delete()
        records.drop(ctx.lab, id_)


def _primary_eni(lab: str, instance_id: str) -> str | None:
    """The id of an instance's primary ENI, found on the routers' ports (an import knows only the instance)."""
    for router in routers(lab):
        found = find_primary_port(router, instance_id)
        if found is not None:
            return found[0].eni_id
    return None


# --- secondary ENIs ----------------------------------------------------------------------------------------

def _ipv4(resource: str, field: str, value: Any) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValidationError(resource, field, f"{value!r} is not an IPv4 address") from None


class EcsNetworkInterface(Kind):
    token = "alicloud:ecs/ecsNetworkInterface:EcsNetworkInterface"
    label = "ecs.EcsNetworkInterface"
    # The port's vSwitch, groups and addresses are fixed when it is plugged (as for an instance's primary ENI).
    replace_on = ("vswitch_id", "security_group_ids", "security_groups", "primary_ip_address", "private_ip",
                  "private_ip_addresses", "private_ips", "secondary_private_ip_address_count", "private_ips_count")
    # Allocated addresses and the SDK's deprecated aliases (each pair is filled from the other).
    computed = ("primary_ip_address", "private_ip", "private_ip_addresses", "private_ips",
                "secondary_private_ip_address_count", "private_ips_count", "security_groups", "name",
                "network_interface_name")
    unsupported: ClassVar = {
        "ipv6_addresses": (given, "acklab VPCs are IPv4 only"),
        "ipv6_address_count": (lambda v: v not in (None, 0), "acklab VPCs are IPv4 only"),
        "ipv4_prefixes": (given, "IPv4 prefixes on ENIs are not supported by acklab yet; use route entries"),
        "ipv4_prefix_count": (lambda v: v not in (None, 0),
                              "IPv4 prefixes on ENIs are not supported by acklab yet; use route entries"),
    }
    realized = ("vswitch_id", "security_group_ids", "security_groups", "primary_ip_address", "private_ip",
                "private_ip_addresses", "private_ips", "secondary_private_ip_address_count", "private_ips_count")
    not_imported = ("private_ip", "private_ips", "private_ips_count", "security_groups", "name")
    _ALIASES = (("primary_ip_address", "private_ip"), ("security_group_ids", "security_groups"),
                ("private_ip_addresses", "private_ips"), ("secondary_private_ip_address_count", "private_ips_count"),
                ("network_interface_name", "name"))

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The current argument of each pair takes the deprecated one's value when only that is given."""
        filled = {new: first(inputs.get(new), inputs.get(old)) for new, old in self._ALIASES}
        return {**inputs, **{k: v for k, v in filled.items() if v is not None}}

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        value, checks = inputs.get, []
        if value("primary_ip_address") is not None and known(value("primary_ip_address")):
            checks.append(lambda: _ipv4(ctx.label, "primary_ip_address", value("primary_ip_address")))
        if value("private_ip_addresses") is not None and known(value("private_ip_addresses")):
            checks.append(lambda: check_secondary(ctx.label, "private_ip_addresses", value("private_ip_addresses")))
        if known(value("security_group_ids")) and len(value("security_group_ids") or ()) > 5:
            checks.append(lambda: _too_many_groups(ctx.label, value("security_group_ids")))
        deprecated = {old for _, old in self._ALIASES}  # filled into the current arguments: counted there
        alias = {f: value(f) for f in ENI_ALIAS_INPUTS if f in self.schema.inputs and f not in deprecated}
        if all(known(v) for v in alias.values()):  # the ENI's facts must fit its port's alias (kernel limit)
            checks.append(lambda: check_eni_alias(ctx.label, alias))
        return problems(*checks)

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            vswitch = find_vswitch(ctx.lab, inputs["vswitch_id"])
        except NotFoundError as exc:
            raise NotFoundError(f"{ctx.label}: vswitch_id: {exc}") from None
        eni = NetworkInterface(ctx.lab, new_id("eni"))
        secondary = check_secondary(ctx.label, "private_ip_addresses", inputs.get("private_ip_addresses") or ())
        found = eni.create(vswitch, ctx.label, inputs.get("primary_ip_address"), tuple(secondary),
                           int(inputs.get("secondary_private_ip_address_count") or 0),
                           tuple(inputs.get("security_group_ids") or ()), inputs.get("network_interface_name") or "")
        state = self.state({**inputs, **self._facts(found), "mac": _parked_mac(vswitch, eni.eni_id)})
        records.put(ctx.lab, eni.eni_id, state)  # what the kernel has no field for (description, tags), for an import
        return eni.eni_id, state

    @staticmethod
    def _facts(found: EniState) -> dict[str, Any]:
        secondary = list(found.secondary_ips)
        return {"vswitch_id": found.vswitch_id, "primary_ip_address": found.primary_ip, "private_ip": found.primary_ip,
                "private_ip_addresses": secondary, "private_ips": secondary,
                "secondary_private_ip_address_count": len(secondary), "private_ips_count": len(secondary),
                "security_group_ids": list(found.security_groups), "security_groups": list(found.security_groups),
                "status": "InUse" if found.instance_id else "Available"}

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        found = NetworkInterface(ctx.lab, id_).read()
        if found is None:
            records.drop(ctx.lab, id_)  # gone behind Pulumi's back: the engine forgets it, so does the record
            return None
        return self.state({**self.known_state(ctx.lab, id_, state), **self._facts(found)})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        state = self.merged(olds, news)
        records.put(ctx.lab, id_, state)
        return state

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        NetworkInterface(ctx.lab, id_).delete()
        records.drop(ctx.lab, id_)


def _too_many_groups(resource: str, groups: list[str]) -> None:
    try:
        check_group_count(resource, groups)
    except ValidationError as exc:  # the check names the instance's argument; an ENI's is security_group_ids
        raise ValidationError(resource, "security_group_ids", exc.reason) from None


def _parked_mac(vswitch: VSwitch, eni_id: str) -> str | None:
    """The ENI's MAC address: that of the veth end the instance gets (parked in the router until attached)."""
    with vswitch.router.namespace.ipr() as ipr:
        index = index_of(ipr, NetworkInterface(vswitch.router.lab, eni_id).parked)
        return ipr.get_links(index)[0].get("IFLA_ADDRESS") if index is not None else None


class EcsNetworkInterfaceAttachment(Kind):
    token = "alicloud:ecs/ecsNetworkInterfaceAttachment:EcsNetworkInterfaceAttachment"
    label = "ecs.EcsNetworkInterfaceAttachment"
    replace_on = ("instance_id", "network_interface_id", "network_card_index", "trunk_network_instance_id")
    unsupported: ClassVar = {"trunk_network_instance_id": (given, "trunk ENIs are not supported by acklab")}
    realized = ("instance_id", "network_interface_id")

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        eni_id, instance_id = inputs["network_interface_id"], inputs["instance_id"]
        # checks, under the lab's lock, that both exist, are in one VPC and the ENI is free; it appears as ethN
        NetworkInterface(ctx.lab, eni_id).attach(EcsInstance(ctx.lab, instance_id, "").namespace, instance_id,
                                                 ctx.label)
        return f"{eni_id}:{instance_id}", self.state(inputs)  # the real provider's id

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        eni_id, _, instance_id = id_.partition(":")
        found = NetworkInterface(ctx.lab, eni_id).read()
        if found is None or found.instance_id != instance_id:
            return None
        return self.state({**state, "network_interface_id": eni_id, "instance_id": instance_id})

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        eni_id, _, instance_id = id_.partition(":")
        NetworkInterface(ctx.lab, eni_id).detach(EcsInstance(ctx.lab, instance_id, "").namespace)


# --- EIPs: an address on the lab's internet, NATed 1:1 to an instance (netns/realize/eip.py) ----------------

_ISPS = ("BGP", "BGP_PRO", "ChinaTelecom", "ChinaUnicom", "ChinaMobile", "ChinaTelecom_L2", "ChinaUnicom_L2",
         "ChinaMobile_L2", "BGP_FinanceCloud", "BGP_International")
_PAYMENT = {"PostPaid": "PayAsYouGo", "PrePaid": "Subscription"}  # the deprecated instance_charge_type's values


def _eip_bandwidth(resource: str, inputs: dict[str, Any]) -> None:
    """Alibaba's bounds: 1-500 Mbit/s pay-by-bandwidth, 1-200 pay-by-traffic, 1-1000 for a subscription."""
    value, traffic = inputs.get("bandwidth"), inputs.get("internet_charge_type") == "PayByTraffic"
    high = 1000 if inputs.get("payment_type") == "Subscription" else 200 if traffic else 500
    if not str(value).isdigit() or not 1 <= int(value) <= high:
        raise ValidationError(resource, "bandwidth", f"{value!r} is not a whole number of Mbit/s from 1 to {high}")
    if inputs.get("payment_type") == "Subscription" and traffic:
        raise ValidationError(resource, "internet_charge_type", "a subscription EIP is paid by bandwidth")


def _eip_address(resource: str, value: Any) -> None:
    try:
        slb_model.check_internet_address(resource, value)
    except ValidationError as exc:  # the model names an SLB's argument
        raise ValidationError(resource, "ip_address", exc.reason) from None


class EipAddress(Kind):
    token = "alicloud:ecs/eipAddress:EipAddress"
    label = "ecs.EipAddress"
    replace_on = ("ip_address", "isp", "netmode", "zone")  # the address (and where it comes from) is the EIP
    computed = ("ip_address", "address_name", "name", "payment_type", "instance_charge_type")
    defaults: ClassVar = {"internet_charge_type": "PayByBandwidth", "bandwidth": "5", "isp": "BGP",
                          "netmode": "public", "deletion_protection": False}
    unsupported: ClassVar = {
        "netmode": (lambda v: v != "public", "the lab's EIPs are public (on its internet)"),
        "public_ip_address_pool_id": (given, "IP address pools are not in the lab; give ip_address or nothing"),
        "allocation_id": (given, "an existing EIP cannot be taken over; leave allocation_id out"),
    }
    realized = ("ip_address",)
    not_imported = ("name", "instance_charge_type")

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The deprecated ``name`` and ``instance_charge_type`` fill ``address_name`` and ``payment_type``."""
        charge = inputs.get("instance_charge_type")
        filled = {"address_name": first(inputs.get("address_name"), inputs.get("name")),
                  "payment_type": first(inputs.get("payment_type"), _PAYMENT.get(charge, charge), "PayAsYouGo")}
        return {**inputs, **{k: v for k, v in filled.items() if v is not None}}

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        value, checks = inputs.get, []
        if value("ip_address") is not None and known(value("ip_address")):
            checks.append(lambda: _eip_address(ctx.label, value("ip_address")))
        if all(known(value(k)) for k in ("bandwidth", "internet_charge_type", "payment_type")):
            checks.append(lambda: _eip_bandwidth(ctx.label, inputs))
        choices = {"isp": _ISPS, "internet_charge_type": ("PayByBandwidth", "PayByTraffic"),
                   "payment_type": ("PayAsYouGo", "Subscription")}
        for field, allowed in choices.items():
            if known(value(field)) and value(field) not in allowed:
                checks.append(lambda f=field, a=allowed: not_one_of(ctx.label, f, value(f), a))
        return problems(*checks)

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        eip_id = eip_model.new_eip_id()
        address = ElasticIp(ctx.lab, eip_id).create(inputs.get("ip_address"), ctx.label)  # free, under the lock
        name = inputs.get("address_name")
        state = self.state({**inputs, "ip_address": address, "address_name": name, "name": name,
                            "instance_charge_type": _charge_type(inputs["payment_type"]),
                            "status": "Available", "create_time": now()})
        records.put(ctx.lab, eip_id, state)  # name, billing, bandwidth: no kernel field; for an import
        return eip_id, state

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        found = ElasticIp(ctx.lab, id_).read()
        if found is None:
            records.drop(ctx.lab, id_)
            return None
        base = self.known_state(ctx.lab, id_, state)
        return self.state({"instance_charge_type": _charge_type(base.get("payment_type") or "PayAsYouGo"), **base,
                           "ip_address": found.address, "status": "InUse" if found.instance_id else "Available"})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        state = self.merged(olds, news)
        records.put(ctx.lab, id_, state)
        return state

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        if state.get("deletion_protection") is True:  # as Alibaba: protection is switched off first
            raise LabError(f"{self.label} {id_}: deletion_protection is on; set it to false before releasing it")
        ElasticIp(ctx.lab, id_).delete(f"{self.label} {id_}")  # refused while associated
        records.drop(ctx.lab, id_)


def _charge_type(payment_type: str) -> str:
    return next((old for old, new in _PAYMENT.items() if new == payment_type), payment_type)


class EipAssociation(Kind):
    token = "alicloud:ecs/eipAssociation:EipAssociation"
    label = "ecs.EipAssociation"
    replace_on = ("allocation_id", "instance_id", "instance_type", "private_ip_address", "mode", "vpc_id")
    computed = ("private_ip_address",)
    defaults: ClassVar = {"instance_type": "EcsInstance", "mode": "NAT"}
    unsupported: ClassVar = {
        "instance_type": (lambda v: v not in eip_model.INSTANCE_TYPES, "acklab associates EIPs with ECS instances, "
                          f"NAT gateways and intranet SLBs only ({', '.join(eip_model.INSTANCE_TYPES)})"),
        "mode": (lambda v: v != "NAT", "acklab's EIPs are NATed (mode NAT)"),
    }
    realized = ("allocation_id", "instance_id", "instance_type", "private_ip_address")

    def check(self, ctx: Context, news: dict[str, Any]) -> tuple[dict[str, Any], list[Failure]]:
        """Left out, ``instance_type`` follows the id, as Alibaba's API does: the SDK's own NAT gateway example binds
        an EIP with ``instance_id=nat_gateway.id`` and no type."""
        instance = news.get("instance_id")
        if news.get("instance_type") is None and isinstance(instance, str) and instance.startswith(("ngw-", "lb-")):
            news = {**news, "instance_type": "Nat" if instance.startswith("ngw-") else "SlbInstance"}
        return super().check(ctx, news)

    def references(self, ctx: Context, inputs: dict[str, Any]) -> list[ValidationError]:
        """``instance_id`` names an instance or, with ``instance_type`` ``Nat``, a NAT gateway (``SlbInstance``: an
        SLB)."""
        found = [e for e in super().references(ctx, inputs) if e.field != "instance_id"]
        instance = inputs.get("instance_id")
        kind = {"Nat": "ngw", "SlbInstance": "lb"}.get(inputs.get("instance_type") or "", "i")
        if isinstance(instance, str) and known(instance):
            found += problems(lambda: check_reference(ctx.label, "instance_id", instance, kind))
        return found

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        value, checks = inputs.get, []
        if value("allocation_id") is not None and known(value("allocation_id")):
            checks.append(lambda: eip_model.check_eip_id(ctx.label, "allocation_id", value("allocation_id")))
        if value("private_ip_address") is not None and known(value("private_ip_address")):
            checks.append(lambda: _ipv4(ctx.label, "private_ip_address", value("private_ip_address")))
        return problems(*checks)

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        eip_id, instance_id = inputs["allocation_id"], inputs["instance_id"]
        # checks the EIP, the instance and its address under the lab's lock; nothing is left of a failed attempt
        found = ElasticIp(ctx.lab, eip_id).associate(instance_id, ctx.label, inputs.get("private_ip_address"))
        return f"{eip_id}:{instance_id}", self.state({**inputs, "private_ip_address": found.private_ip})

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        eip_id, _, instance_id = id_.partition(":")
        found = ElasticIp(ctx.lab, eip_id).read()
        if found is None or found.instance_id != instance_id:
            return None
        return self.state({**state, "allocation_id": eip_id, "instance_id": instance_id,
                           "private_ip_address": found.private_ip})

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        eip_id, _, instance_id = id_.partition(":")
        eip = ElasticIp(ctx.lab, eip_id)
        found = eip.read()
        if found is not None and found.instance_id == instance_id:
            # a NAT gateway's EIP waits for the SNAT and DNAT entries that use it: the engine deletes them in parallel
            retry(eip.disassociate, EipInUse)


KINDS = (SecurityGroup(), SecurityGroupRule(), Instance(), EcsNetworkInterface(), EcsNetworkInterfaceAttachment(),
         EipAddress(), EipAssociation())


# --- data sources ------------------------------------------------------------------------------------------

GET_IMAGES = "alicloud:ecs/getImages:getImages"
GET_INSTANCE_TYPES = "alicloud:ecs/getInstanceTypes:getInstanceTypes"
GET_SECURITY_GROUPS = "alicloud:ecs/getSecurityGroups:getSecurityGroups"
_OUTPUTS = "pulumi_alicloud.ecs.outputs"


def _image_item(image: catalog.SystemImage) -> dict[str, Any]:
    system = catalog.image(image.image_id)
    disk = result(_OUTPUTS, "GetImagesImageDiskDeviceMappingResult",
                  {"device": "/dev/xvda", "size": str(image.size_gib), "snapshot_id": ""})
    return {"id": image.image_id, "image_id": image.image_id, "name": image.image_id,
            "architecture": image.architecture, "os_type": system.os_type, "os_name": system.os_name,
            "os_name_en": system.os_name, "platform": image.platform, "creation_time": image.created,
            "size": image.size_gib, "status": "Available", "state": "Available", "image_owner_alias": "system",
            "image_version": "", "is_copied": False, "is_self_shared": "", "is_subscribed": False,
            "is_support_io_optimized": True, "usage": "instance", "product_code": "", "progress": "100%",
            "description": "", "tags": {}, "disk_device_mappings": [disk]}


def _image_wanted(args: dict[str, Any], item: dict[str, Any]) -> bool:
    owners = args.get("owners")
    return (owners in (None, "system")  # the lab has system images only: none of self, others or marketplace
            and all(matches(item[k], args.get(k)) for k in ("os_type", "architecture", "image_id", "status", "usage"))
            and matches(item["name"], args.get("image_name")) and not args.get("image_family")
            and name_matches(item["name"], args.get("name_regex")))


def get_images(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The catalog's system images, newest first (`most_recent`: the newest only); `owners` other than
    `system` find none."""
    module = "pulumi_alicloud.ecs.get_images"
    args = arguments(module, "GetImagesResult", wire_args)
    items = [i for i in map(_image_item, catalog.IMAGES) if _image_wanted(args, i)]
    items.sort(key=lambda i: (i["creation_time"], i["id"]), reverse=True)  # newest first, as Alibaba lists them
    if args.get("most_recent"):
        items = items[:1]
    ids = [i["id"] for i in items]
    return result(module, "GetImagesResult", {**args, "id": data_id(ids), "ids": ids, "images": [
        result(_OUTPUTS, "GetImagesImageResult", i) for i in items]})


def _instance_type_item(kind: catalog.InstanceType, zones: list[str]) -> dict[str, Any]:
    enis, ips = catalog.eni_limits(kind.name, kind.cpu)
    return {"id": kind.name, "family": catalog.family(kind.name), "cpu_core_count": kind.cpu,
            "memory_size": kind.memory_mib / 1024, "availability_zones": zones, "eni_amount": enis,
            "eni_quantity": enis, "eni_private_ip_address_quantity": ips, "eni_ipv6_address_quantity": 0,
            "gpus": [result(_OUTPUTS, "GetInstanceTypesInstanceTypeGpusResult", {"amount": "0", "category": ""})],
            "burstable_instances": [result(_OUTPUTS, "GetInstanceTypesInstanceTypeBurstableInstanceResult",
                                           {"initial_credit": "", "baseline_credit": ""})],
            "local_storages": [result(_OUTPUTS, "GetInstanceTypesInstanceTypeLocalStorageResult",
                                      {"capacity": "0", "amount": "0", "category": ""})],
            "price": "0", "nvme_support": "unsupported", "maximum_queue_number_per_eni": kind.cpu,
            "primary_eni_queue_number": kind.cpu, "secondary_eni_queue_number": kind.cpu,
            "total_eni_queue_quantity": kind.cpu * enis}


def _type_wanted(args: dict[str, Any], item: dict[str, Any]) -> bool:
    memory = args.get("memory_size")
    return (matches(item["id"], args.get("instance_type")) and matches(item["family"], args.get("instance_type_family"))
            and matches(item["cpu_core_count"], args.get("cpu_core_count"))
            and (memory is None or float(memory) == item["memory_size"])
            and (args.get("eni_amount") is None or item["eni_quantity"] >= args["eni_amount"])
            and not args.get("gpu_amount") and not args.get("gpu_spec")  # the lab has no GPUs
            and matches("vpc", args.get("network_type")))


_SORTS = {"CPU": lambda i: (i["cpu_core_count"], i["id"]), "Memory": lambda i: (i["memory_size"], i["id"]),
          "Price": lambda i: (i["cpu_core_count"], i["id"])}


def get_instance_types(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The catalog's instance types, and the sizes of an `instance_type_family` asked for, in every zone of the
    region; vCPUs, memory and ENI limits from the type's name; no GPUs."""
    module = "pulumi_alicloud.ecs.get_instance_types"
    args = arguments(module, "GetInstanceTypesResult", wire_args)
    zones = catalog.zones(config.region)
    zone = args.get("availability_zone")
    kinds = {t.name: t for t in map(catalog.instance_type, catalog.INSTANCE_TYPES) if t is not None}
    kinds.update({t.name: t for t in catalog.family_types(args.get("instance_type_family") or "")})
    items = [i for i in (_instance_type_item(k, zones) for k in kinds.values()) if _type_wanted(args, i)]
    if zone is not None and zone not in zones:
        items = []  # a zone of another region offers nothing here
    items.sort(key=_SORTS.get(args.get("sorted_by") or "CPU", _SORTS["CPU"]))
    ids = [i["id"] for i in items]
    return result(module, "GetInstanceTypesResult", {**args, "id": data_id(ids), "ids": ids, "instance_types": [
        result(_OUTPUTS, "GetInstanceTypesInstanceTypeResult", i) for i in items]})


def _group_item(group: Group, record: dict[str, Any]) -> dict[str, Any]:
    name = first(record.get("security_group_name"), record.get("name"))
    return {"id": group.sg_id, "name": name, "vpc_id": group.vpc_id, "security_group_type": group.group_type,
            "inner_access": group.inner_access_policy == "Accept", "creation_time": record.get("create_time"),
            "description": record.get("description"), "resource_group_id": record.get("resource_group_id"),
            "tags": record.get("tags") or {}}


def _group_wanted(args: dict[str, Any], item: dict[str, Any]) -> bool:
    return (matches(item["vpc_id"], args.get("vpc_id")) and (not args.get("ids") or item["id"] in args["ids"])
            and matches(item["resource_group_id"], args.get("resource_group_id"))
            and name_matches(item["name"], args.get("name_regex")) and tags_match(item["tags"], args.get("tags")))


def get_security_groups(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The lab's security groups (of VPCs that exist) by id; names and tags from the plugin's records."""
    module = "pulumi_alicloud.ecs.get_security_groups"
    args = arguments(module, "GetSecurityGroupsResult", wire_args)
    groups = [g for router in (routers(lab) if lab else []) for g in sg.load_groups(lab, router.vpc_id).values()]
    items = [i for i in (_group_item(g, records.get(lab, g.sg_id)) for g in sorted(groups, key=lambda g: g.sg_id))
             if _group_wanted(args, i)]
    ids = [i["id"] for i in items]
    return result(module, "GetSecurityGroupsResult", {
        **args, "id": data_id(ids), "ids": ids, "names": [i["name"] or "" for i in items],
        "total_count": len(items), "groups": [result(_OUTPUTS, "GetSecurityGroupsGroupResult", i) for i in items]})


FUNCTIONS: dict[str, Function] = {GET_IMAGES: get_images, GET_INSTANCE_TYPES: get_instance_types,
                                  GET_SECURITY_GROUPS: get_security_groups}
