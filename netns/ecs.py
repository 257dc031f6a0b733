"""``ecs.Instance``, with pulumi-alicloud's argument names, realized as a namespace on the kernel."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, ReadResult, Resource, UpdateResult

from netns._provider import LabProvider, current_lab, is_known, recall
from netns.model import addressing
from netns.model.errors import ValidationError
from netns.model.names import new_id
from netns.model.security_group import Group, check_group, parse_rule
from netns.realize import security_group as sg
from netns.realize.eni import check_secondary
from netns.realize.instance import EcsInstance
from netns.realize.network_interface import NetworkInterface
from netns.realize.vpc import find_vswitch

_HOST_NAME = re.compile(r"^(?=.{2,64}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def _check_ip_format(resource: str, value: Any) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValidationError(resource, "private_ip", f"{value!r} is not an IPv4 address") from None


class InstanceProvider(LabProvider):
    kind = "ecs.Instance"
    inputs = ("lab", "vswitch_id", "private_ip", "instance_type", "image_id", "instance_name",
              "security_groups", "secondary_private_ips", "secondary_private_ip_address_count", "host_name",
              "user_data", "description", "tags")
    # secondary IPs, host name and user data are fixed at creation here (user data runs once, at boot)
    replace_on = ("lab", "vswitch_id", "private_ip", "image_id", "secondary_private_ips",
                  "secondary_private_ip_address_count", "host_name", "user_data")
    computed_when_absent = ("private_ip",)
    validators: ClassVar[dict[str, Callable[[str, Any], Any]]] = {"private_ip": _check_ip_format}

    def create(self, props: dict[str, Any]) -> CreateResult:
        resource = f"{self.kind} {props['__name']!r}"
        vswitch = find_vswitch(props["lab"], props["vswitch_id"])
        instance = EcsInstance(props["lab"], new_id("i"), new_id("eni"))
        private_ip = instance.create(
            vswitch, props.get("private_ip"), resource, props["instance_name"],
            tuple(props.get("security_groups") or ()),
            tuple(check_secondary(resource, "secondary_private_ips", props.get("secondary_private_ips") or ())),
            int(props.get("secondary_private_ip_address_count") or 0), props.get("host_name") or "",
            props.get("user_data") or "")
        state = instance.read()
        return CreateResult(instance.instance_id, {
            **props, "private_ip": private_ip, "netns": instance.namespace.name,
            "network_interface_id": instance.eni_id,
            "assigned_secondary_private_ips": list(state.secondary_private_ips) if state else [],
        })

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        state = EcsInstance(props["lab"], id_, props["network_interface_id"]).read()
        if state is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "private_ip": state.private_ip,
                                "vswitch_id": state.vswitch_id or props["vswitch_id"],
                                "security_groups": list(state.security_groups),
                                "assigned_secondary_private_ips": list(state.secondary_private_ips)})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        result = super().update(id_, olds, news)
        groups = tuple(news.get("security_groups") or ())
        renamed = olds.get("instance_name") != news.get("instance_name")
        if renamed or tuple(olds.get("security_groups") or ()) != groups:
            EcsInstance(olds["lab"], id_, olds["network_interface_id"]).relabel(
                f"{self.kind} {news['__name']!r}", news["instance_name"], groups)
        return result

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        EcsInstance(props["lab"], id_, props["network_interface_id"]).delete()


class Instance(Resource):
    """An ECS instance: a namespace whose eth0 (primary ENI) sits on a vSwitch, default route via its gateway."""

    private_ip: pulumi.Output[str]
    security_groups: pulumi.Output[list[str]]
    instance_name: pulumi.Output[str]
    vswitch_id: pulumi.Output[str]
    netns: pulumi.Output[str]
    network_interface_id: pulumi.Output[str]

    def __init__(self, resource_name: str, vswitch_id: pulumi.Input[str],
                 instance_type: pulumi.Input[str] = "ecs.g7.large",
                 image_id: pulumi.Input[str] | None = None, private_ip: pulumi.Input[str] | None = None,
                 instance_name: pulumi.Input[str] | None = None,
                 security_groups: pulumi.Input[list[pulumi.Input[str]]] | None = None,
                 description: pulumi.Input[str] | None = None,
                 tags: pulumi.Input[dict[str, str]] | None = None,
                 secondary_private_ips: pulumi.Input[list[pulumi.Input[str]]] | None = None,
                 secondary_private_ip_address_count: pulumi.Input[int] | None = None,
                 host_name: pulumi.Input[str] | None = None,
                 user_data: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        resource = f"{InstanceProvider.kind} {resource_name!r}"
        if is_known(host_name) and host_name is not None and not _HOST_NAME.match(host_name):
            raise ValidationError(resource, "host_name", f"{host_name!r}: 2-64 letters, digits, dots and dashes, "
                                  "not starting or ending with a dot or dash")
        if vswitch_id is None:
            raise ValidationError(resource, "vswitch_id", "is required: an ECS in a VPC sits on a vSwitch")
        self._check_early(resource, vswitch_id, private_ip)
        super().__init__(InstanceProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "vswitch_id": vswitch_id, "private_ip": private_ip,
            "instance_type": instance_type, "image_id": image_id,
            "instance_name": instance_name if instance_name is not None else resource_name,
            "security_groups": security_groups or [], "description": description, "tags": tags,
            "secondary_private_ips": secondary_private_ips, "host_name": host_name, "user_data": user_data,
            "secondary_private_ip_address_count": secondary_private_ip_address_count,
            "netns": None, "network_interface_id": None, "assigned_secondary_private_ips": None,
        }, opts)

    @staticmethod
    def _check_early(resource: str, vswitch_id: Any, private_ip: Any) -> None:
        if private_ip is None or not is_known(private_ip):
            return
        _check_ip_format(resource, private_ip)
        vswitch = recall(vswitch_id)
        if vswitch is None or vswitch["cidr"] is None:
            return
        addressing.check_private_ip(resource, private_ip, vswitch["cidr"], vswitch["ips"])
        vswitch["ips"].add(ipaddress.IPv4Address(private_ip))




class SecurityGroupProvider(LabProvider):
    kind = "ecs.SecurityGroup"
    inputs = ("lab", "vpc_id", "security_group_name", "security_group_type", "inner_access_policy",
              "description", "tags")
    replace_on = ("lab", "vpc_id", "security_group_type")

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        try:
            check_group(f"{self.kind} {news.get('__name')!r}", news.get("security_group_type"),
                        news.get("inner_access_policy"))
        except ValidationError as exc:
            result.failures.append(CheckFailure(exc.field, exc.reason))
        return result

    def _group(self, sg_id: str, props: dict[str, Any]) -> Group:
        return Group(sg_id, props["vpc_id"], props["security_group_type"], props["inner_access_policy"])

    def create(self, props: dict[str, Any]) -> CreateResult:
        sg_id = new_id("sg")
        sg.create_group(props["lab"], self._group(sg_id, props))
        return CreateResult(sg_id, dict(props))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        result = super().update(id_, olds, news)
        if olds.get("inner_access_policy") != news.get("inner_access_policy"):
            sg.create_group(news["lab"], self._group(id_, news))  # keeps the rules, re-applies
        return result

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        group = sg.load_group(props["lab"], id_)
        if group is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "inner_access_policy": group.inner_access_policy})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        sg.delete_group(props["lab"], id_)


class SecurityGroup(Resource):
    """A security group of a VPC: stateful rules enforced on the VPC's fabric, outside the instances."""

    vpc_id: pulumi.Output[str]
    security_group_name: pulumi.Output[str | None]
    security_group_type: pulumi.Output[str]
    inner_access_policy: pulumi.Output[str]

    def __init__(self, resource_name: str, vpc_id: pulumi.Input[str],
                 security_group_name: pulumi.Input[str] | None = None,
                 security_group_type: pulumi.Input[str] = "normal",
                 inner_access_policy: pulumi.Input[str] | None = None,
                 description: pulumi.Input[str] | None = None, tags: pulumi.Input[dict[str, str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        resource = f"{SecurityGroupProvider.kind} {resource_name!r}"
        if inner_access_policy is None:
            inner_access_policy = "Drop" if security_group_type == "enterprise" else "Accept"
        if is_known(security_group_type) and is_known(inner_access_policy):
            check_group(resource, security_group_type, inner_access_policy)
        super().__init__(SecurityGroupProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "vpc_id": vpc_id,
            "security_group_name": security_group_name, "security_group_type": security_group_type,
            "inner_access_policy": inner_access_policy, "description": description, "tags": tags,
        }, opts)


_RULE_ARGS = ("type", "ip_protocol", "port_range", "policy", "priority", "cidr_ip", "source_security_group_id",
              "nic_type")


def _rule_from(resource: str, rule_id: str, props: dict[str, Any]):
    return parse_rule(resource, rule_id, **{k: props[k] for k in _RULE_ARGS if props.get(k) is not None})


class SecurityGroupRuleProvider(LabProvider):
    kind = "ecs.SecurityGroupRule"
    inputs = ("lab", "security_group_id", *_RULE_ARGS, "description")
    replace_on = ("lab", "security_group_id", *_RULE_ARGS)

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        known = {k: v for k, v in news.items() if k in _RULE_ARGS}
        if "source_security_group_id" in known and not isinstance(known["source_security_group_id"], str):
            return result  # still unknown in a preview
        try:
            _rule_from(f"{self.kind} {news.get('__name')!r}", "sgr-00000000", known)
        except ValidationError as exc:
            result.failures.append(CheckFailure(exc.field, exc.reason))
        return result

    def create(self, props: dict[str, Any]) -> CreateResult:
        rule_id = new_id("sgr")
        rule = _rule_from(f"{self.kind} {props['__name']!r}", rule_id, props)
        sg.add_rule(props["lab"], props["security_group_id"], rule)
        return CreateResult(rule_id, dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        group = sg.load_group(props["lab"], props["security_group_id"])
        if group is None or all(r.rule_id != id_ for r in group.rules):
            return ReadResult("", {})
        return ReadResult(id_, dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        sg.remove_rule(props["lab"], props["security_group_id"], id_)


class SecurityGroupRule(Resource):
    """One rule of a security group (pulumi-alicloud's ``ecs.SecurityGroupRule``)."""

    def __init__(self, resource_name: str, security_group_id: pulumi.Input[str], type: pulumi.Input[str],
                 ip_protocol: pulumi.Input[str], port_range: pulumi.Input[str] = "-1/-1",
                 policy: pulumi.Input[str] = "accept", priority: pulumi.Input[int] = 1,
                 cidr_ip: pulumi.Input[str] | None = None,
                 source_security_group_id: pulumi.Input[str] | None = None,
                 nic_type: pulumi.Input[str] = "intranet", description: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        args = {"type": type, "ip_protocol": ip_protocol, "port_range": port_range, "policy": policy,
                "priority": priority, "cidr_ip": cidr_ip, "source_security_group_id": source_security_group_id,
                "nic_type": nic_type}
        if all(is_known(v) for v in args.values()):
            resource = f"{SecurityGroupRuleProvider.kind} {resource_name!r}"
            peer = args["source_security_group_id"]
            _rule_from(resource, "sgr-00000000", {**args, "source_security_group_id": peer and "sg-00000000"})
        super().__init__(SecurityGroupRuleProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "security_group_id": security_group_id, **args,
            "description": description,
        }, opts)


class EcsNetworkInterfaceProvider(LabProvider):
    kind = "ecs.EcsNetworkInterface"
    inputs = ("lab", "vswitch_id", "security_group_ids", "primary_ip_address", "private_ip_addresses",
              "secondary_private_ip_address_count", "network_interface_name", "description", "tags")
    replace_on = ("lab", "vswitch_id", "security_group_ids", "primary_ip_address", "private_ip_addresses",
                  "secondary_private_ip_address_count")
    computed_when_absent = ("primary_ip_address",)

    def create(self, props: dict[str, Any]) -> CreateResult:
        resource = f"{self.kind} {props['__name']!r}"
        vswitch = find_vswitch(props["lab"], props["vswitch_id"])
        eni = NetworkInterface(props["lab"], new_id("eni"))
        state = eni.create(
            vswitch, resource, props.get("primary_ip_address"),
            tuple(check_secondary(resource, "private_ip_addresses", props.get("private_ip_addresses") or ())),
            int(props.get("secondary_private_ip_address_count") or 0), tuple(props.get("security_group_ids") or ()),
            props.get("network_interface_name") or "")
        return CreateResult(eni.eni_id, {**props, "primary_ip_address": state.primary_ip,
                                         "assigned_private_ip_addresses": list(state.secondary_ips)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        state = NetworkInterface(props["lab"], id_).read()
        if state is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "primary_ip_address": state.primary_ip,
                                "assigned_private_ip_addresses": list(state.secondary_ips)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        NetworkInterface(props["lab"], id_).delete()


class EcsNetworkInterface(Resource):
    """A secondary ENI: a port on a vSwitch (of the same VPC) with a primary and secondary private IPs."""

    primary_ip_address: pulumi.Output[str]
    assigned_private_ip_addresses: pulumi.Output[list[str]]
    vswitch_id: pulumi.Output[str]

    def __init__(self, resource_name: str, vswitch_id: pulumi.Input[str],
                 security_group_ids: pulumi.Input[list[pulumi.Input[str]]] | None = None,
                 primary_ip_address: pulumi.Input[str] | None = None,
                 private_ip_addresses: pulumi.Input[list[pulumi.Input[str]]] | None = None,
                 secondary_private_ip_address_count: pulumi.Input[int] | None = None,
                 network_interface_name: pulumi.Input[str] | None = None,
                 description: pulumi.Input[str] | None = None, tags: pulumi.Input[dict[str, str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        resource = f"{EcsNetworkInterfaceProvider.kind} {resource_name!r}"
        if vswitch_id is None:
            raise ValidationError(resource, "vswitch_id", "is required: an ENI sits on a vSwitch")
        if is_known(primary_ip_address) and primary_ip_address is not None:
            vswitch = recall(vswitch_id)
            if vswitch is not None and vswitch["cidr"] is not None:
                addressing.check_private_ip(resource, primary_ip_address, vswitch["cidr"], vswitch["ips"],
                                            "primary_ip_address")
                vswitch["ips"].add(ipaddress.IPv4Address(primary_ip_address))
        super().__init__(EcsNetworkInterfaceProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "vswitch_id": vswitch_id,
            "security_group_ids": security_group_ids or [], "primary_ip_address": primary_ip_address,
            "private_ip_addresses": private_ip_addresses,
            "secondary_private_ip_address_count": secondary_private_ip_address_count,
            "network_interface_name": network_interface_name if network_interface_name is not None
            else resource_name, "description": description, "tags": tags,
            "assigned_private_ip_addresses": None,
        }, opts)


class EcsNetworkInterfaceAttachmentProvider(LabProvider):
    kind = "ecs.EcsNetworkInterfaceAttachment"
    inputs = ("lab", "network_interface_id", "instance_id")
    replace_on = inputs

    def create(self, props: dict[str, Any]) -> CreateResult:
        resource = f"{self.kind} {props['__name']!r}"
        instance = EcsInstance(props["lab"], props["instance_id"], "")
        device = NetworkInterface(props["lab"], props["network_interface_id"]).attach(
            instance.namespace, props["instance_id"], resource)
        return CreateResult(f"{props['network_interface_id']}:{props['instance_id']}", {**props, "device": device})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        state = NetworkInterface(props["lab"], props["network_interface_id"]).read()
        if state is None or state.instance_id != props["instance_id"]:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "device": f"eth{state.device}"})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        instance = EcsInstance(props["lab"], props["instance_id"], "")
        NetworkInterface(props["lab"], props["network_interface_id"]).detach(instance.namespace)


class EcsNetworkInterfaceAttachment(Resource):
    """Attaches a secondary ENI to an instance: it appears there as the next ``ethN`` (output ``device``)."""

    device: pulumi.Output[str]

    def __init__(self, resource_name: str, network_interface_id: pulumi.Input[str], instance_id: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(EcsNetworkInterfaceAttachmentProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "network_interface_id": network_interface_id,
            "instance_id": instance_id, "device": None,
        }, opts)

