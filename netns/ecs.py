"""``ecs.Instance``, with pulumi-alicloud's argument names, realized as a namespace on the kernel."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource, UpdateResult

from netns._provider import LabProvider, current_lab, is_known, recall
from netns.model import addressing
from netns.model.errors import ValidationError
from netns.model.names import new_id
from netns.realize.instance import EcsInstance
from netns.realize.vpc import find_vswitch


def _check_ip_format(resource: str, value: Any) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValidationError(resource, "private_ip", f"{value!r} is not an IPv4 address") from None


class InstanceProvider(LabProvider):
    kind = "ecs.Instance"
    inputs = ("lab", "vswitch_id", "private_ip", "instance_type", "image_id", "instance_name",
              "description", "tags")
    replace_on = ("lab", "vswitch_id", "private_ip", "image_id")
    computed_when_absent = ("private_ip",)
    validators: ClassVar[dict[str, Callable[[str, Any], Any]]] = {"private_ip": _check_ip_format}

    def create(self, props: dict[str, Any]) -> CreateResult:
        resource = f"{self.kind} {props['__name']!r}"
        vswitch = find_vswitch(props["lab"], props["vswitch_id"])
        instance = EcsInstance(props["lab"], new_id("i"), new_id("eni"))
        private_ip = instance.create(vswitch, props.get("private_ip"), resource, props["instance_name"])
        return CreateResult(instance.instance_id, {
            **props, "private_ip": private_ip, "netns": instance.namespace.name,
            "network_interface_id": instance.eni_id,
        })

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        state = EcsInstance(props["lab"], id_, props["network_interface_id"]).read()
        if state is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "private_ip": state.private_ip,
                                "vswitch_id": state.vswitch_id or props["vswitch_id"]})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        result = super().update(id_, olds, news)
        if olds.get("instance_name") != news.get("instance_name"):
            EcsInstance(olds["lab"], id_, olds["network_interface_id"]).rename(news["instance_name"])
        return result

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        EcsInstance(props["lab"], id_, props["network_interface_id"]).delete()


class Instance(Resource):
    """An ECS instance: a namespace whose eth0 (primary ENI) sits on a vSwitch, default route via its gateway."""

    private_ip: pulumi.Output[str]
    instance_name: pulumi.Output[str]
    vswitch_id: pulumi.Output[str]
    netns: pulumi.Output[str]
    network_interface_id: pulumi.Output[str]

    def __init__(self, resource_name: str, vswitch_id: pulumi.Input[str],
                 instance_type: pulumi.Input[str] = "ecs.g7.large",
                 image_id: pulumi.Input[str] | None = None, private_ip: pulumi.Input[str] | None = None,
                 instance_name: pulumi.Input[str] | None = None, description: pulumi.Input[str] | None = None,
                 tags: pulumi.Input[dict[str, str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        resource = f"{InstanceProvider.kind} {resource_name!r}"
        if vswitch_id is None:
            raise ValidationError(resource, "vswitch_id", "is required: an ECS in a VPC sits on a vSwitch")
        self._check_early(resource, vswitch_id, private_ip)
        super().__init__(InstanceProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "vswitch_id": vswitch_id, "private_ip": private_ip,
            "instance_type": instance_type, "image_id": image_id,
            "instance_name": instance_name if instance_name is not None else resource_name,
            "description": description, "tags": tags, "netns": None, "network_interface_id": None,
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


__all__ = ["Instance"]
