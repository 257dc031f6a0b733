"""``slb.*`` with pulumi-alicloud's names and arguments, realized as HAProxy in a namespace (netns/realize/slb.py).

Resources: ``ApplicationLoadBalancer``, ``Listener``, ``BackendServer``, ``ServerGroup``,
``ServerGroupServerAttachment``, ``Acl``, ``AclEntryAttachment``, ``ServerCertificate``. Arguments are validated
when the program builds them (so ``pulumi up`` stops in its preview), again in the providers' ``check`` and,
against the kernel, before ``create`` changes anything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, ReadResult, Resource, UpdateResult

from netns._provider import LabProvider, current_lab, is_known, recall, remember
from netns.model import addressing
from netns.model import slb as model
from netns.model.errors import ValidationError
from netns.model.names import new_id
from netns.realize import slb as realize
from netns.realize.vpc import find_vswitch

_PLACEHOLDERS = {"load_balancer_id": "lb-00000000", "server_group_id": "rsp-00000000", "acl_id": "acl-00000000",
                 "server_certificate_id": "cert-00000000", "server_id": "i-00000000"}


def _plain(value: Any) -> bool:
    """A value already known (not an Output, nor an unknown placeholder of a preview)."""
    if isinstance(value, Mapping):
        return all(_plain(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def _knowable(args: Mapping[str, Any]) -> dict[str, Any] | None:
    """Arguments with unknown ids replaced by placeholders; None if another argument is still unknown."""
    out = {}
    for key, value in args.items():
        if _plain(value):
            out[key] = value
        elif key in _PLACEHOLDERS:
            out[key] = _PLACEHOLDERS[key]
        else:
            return None
    return out


def _check_server_known(resource: str, field: str, server_id: Any) -> None:
    """A plain server id must name an ECS (or ENI) that exists in the lab: the kernel is the inventory."""
    if isinstance(server_id, str) and not realize.server_exists(current_lab(), server_id):
        raise ValidationError(resource, field, f"{server_id} is not an ECS instance or ENI of lab {current_lab()}")


# --- load balancer -----------------------------------------------------------------------------------------

class ApplicationLoadBalancerProvider(LabProvider):
    kind = "slb.ApplicationLoadBalancer"
    inputs = ("lab", "load_balancer_name", "address_type", "vswitch_id", "address", "load_balancer_spec",
              "bandwidth", "internet_charge_type", "payment_type", "tags")
    replace_on = ("lab", "address_type", "vswitch_id", "address")
    computed_when_absent = ("address",)

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        try:
            _check_lb(f"{self.kind} {news.get('__name')!r}", news.get("address_type"), news.get("vswitch_id"))
        except ValidationError as exc:
            result.failures.append(CheckFailure(exc.field, exc.reason))
        return result

    def create(self, props: dict[str, Any]) -> CreateResult:
        resource = f"{self.kind} {props['__name']!r}"
        _check_lb(resource, props["address_type"], props.get("vswitch_id"))
        vswitch = find_vswitch(props["lab"], props["vswitch_id"]) if props["address_type"] == "intranet" else None
        lb_id = new_id("lb")
        slb = realize.SlbInstance(props["lab"], lb_id)
        address = slb.create(props["address_type"], vswitch, props.get("address"), resource,
                             props.get("load_balancer_name") or props["__name"])
        return CreateResult(lb_id, {**props, "address": address, "netns": slb.namespace.name})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        result = super().update(id_, olds, news)
        if olds.get("load_balancer_name") != news.get("load_balancer_name"):
            realize.SlbInstance(news["lab"], id_).rename(news.get("load_balancer_name") or news["__name"])
        return result

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        state = realize.SlbInstance(props["lab"], id_).read()
        if state is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "address": state.address})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        realize.SlbInstance(props["lab"], id_).delete()


def _check_lb(resource: str, address_type: Any, vswitch_id: Any) -> None:
    model.check_address_type(resource, address_type)
    if address_type == "intranet" and not vswitch_id:
        raise ValidationError(resource, "vswitch_id", "an intranet SLB needs the vSwitch its address is on")
    if address_type == "internet" and vswitch_id:
        raise ValidationError(resource, "vswitch_id", "an internet SLB's address is on the lab's internet "
                              f"({model.INTERNET}); leave vswitch_id out")


class ApplicationLoadBalancer(Resource):
    """An SLB instance: a virtual service address (intranet on a vSwitch, or internet) in front of backends."""

    address: pulumi.Output[str]
    netns: pulumi.Output[str]
    load_balancer_name: pulumi.Output[str]

    def __init__(self, resource_name: str, load_balancer_name: pulumi.Input[str] | None = None,
                 address_type: pulumi.Input[str] | None = None, vswitch_id: pulumi.Input[str] | None = None,
                 address: pulumi.Input[str] | None = None, load_balancer_spec: pulumi.Input[str] = "slb.s1.small",
                 bandwidth: pulumi.Input[int] | None = None, internet_charge_type: pulumi.Input[str] | None = None,
                 payment_type: pulumi.Input[str] = "PayAsYouGo", tags: pulumi.Input[dict[str, str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        resource = f"{ApplicationLoadBalancerProvider.kind} {resource_name!r}"
        if address_type is None:
            address_type = "intranet" if vswitch_id is not None else "internet"
        if is_known(address_type):
            _check_lb(resource, address_type, vswitch_id)
        if address is not None and is_known(address):
            self._check_address(resource, address_type, vswitch_id, address)
        super().__init__(ApplicationLoadBalancerProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "load_balancer_name": load_balancer_name,
            "address_type": address_type, "vswitch_id": vswitch_id, "address": address,
            "load_balancer_spec": load_balancer_spec, "bandwidth": bandwidth,
            "internet_charge_type": internet_charge_type, "payment_type": payment_type, "tags": tags,
            "netns": None,
        }, opts)
        remember(self.id, kind="slb", resource=resource, ports={})

    @staticmethod
    def _check_address(resource: str, address_type: Any, vswitch_id: Any, address: str) -> None:
        if address_type == "internet":
            model.check_internet_address(resource, address)
            return
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ValidationError(resource, "address", f"{address!r} is not an IPv4 address") from None
        vswitch = recall(vswitch_id)
        if vswitch is None or vswitch["cidr"] is None:
            return
        addressing.check_private_ip(resource, address, vswitch["cidr"], vswitch["ips"], "address")
        vswitch["ips"].add(ipaddress.IPv4Address(address))  # an ECS asking for it later is refused


# --- listener ----------------------------------------------------------------------------------------------

def _listener_args(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: props.get(k) for k in model.LISTENER_ARGS if props.get(k) is not None}


class ListenerProvider(LabProvider):
    kind = "slb.Listener"
    inputs = ("lab", "load_balancer_id", *model.LISTENER_ARGS)
    replace_on = ("lab", "load_balancer_id", "frontend_port", "protocol")

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        args = _knowable(_listener_args(news))
        if args is not None:
            try:
                model.parse_listener(f"{self.kind} {news.get('__name')!r}", "lb-00000000", args)
            except ValidationError as exc:
                result.failures.append(CheckFailure(exc.field, exc.reason))
        return result

    def _put(self, props: dict[str, Any]) -> model.Listener:
        resource = f"{self.kind} {props['__name']!r}"
        args = _listener_args(props)
        listener = model.parse_listener(resource, props["load_balancer_id"], args)
        realize.put_listener(props["lab"], listener, args, resource)
        return listener

    def create(self, props: dict[str, Any]) -> CreateResult:
        listener = self._put(props)
        return CreateResult(listener.listener_id, dict(props))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._put(news)  # re-renders and reloads HAProxy: open connections are kept
        return UpdateResult(dict(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        lb_id, protocol, port = id_.rsplit(":", 2)
        if realize.listener_args(props["lab"], lb_id, protocol, int(port)) is None:
            return ReadResult("", {})
        return ReadResult(id_, dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        lb_id, protocol, port = id_.rsplit(":", 2)
        realize.delete_listener(props["lab"], lb_id, protocol, int(port))


class Listener(Resource):
    """A listener of an SLB: a frontend port and protocol, a scheduler, health checks, ACL, persistence."""

    def __init__(self, resource_name: str, load_balancer_id: pulumi.Input[str], frontend_port: pulumi.Input[int],
                 protocol: pulumi.Input[str], backend_port: pulumi.Input[int] | None = None,
                 opts: pulumi.ResourceOptions | None = None, **kwargs: Any) -> None:
        resource = f"{ListenerProvider.kind} {resource_name!r}"
        unknown = set(kwargs) - set(model.LISTENER_ARGS)
        if unknown:
            raise ValidationError(resource, sorted(unknown)[0], "is not an argument of slb.Listener")
        args = {"frontend_port": frontend_port, "protocol": protocol, "backend_port": backend_port, **kwargs}
        args = {k: v for k, v in args.items() if v is not None}
        known = _knowable(args)
        if known is not None:
            model.parse_listener(resource, "lb-00000000", known)
        self._check_port(resource, load_balancer_id, frontend_port)
        super().__init__(ListenerProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "load_balancer_id": load_balancer_id,
            **{k: args.get(k) for k in model.LISTENER_ARGS},
        }, opts)

    @staticmethod
    def _check_port(resource: str, load_balancer_id: Any, frontend_port: Any) -> None:
        lb = recall(load_balancer_id)
        if lb is None or not is_known(frontend_port):
            return
        port = int(frontend_port)
        if port in lb["ports"]:
            raise ValidationError(resource, "frontend_port", f"{port} is already used by {lb['ports'][port]} "
                                  f"of {lb['resource']}")
        lb["ports"][port] = resource


# --- backends ----------------------------------------------------------------------------------------------

class BackendServerProvider(LabProvider):
    kind = "slb.BackendServer"
    inputs = ("lab", "load_balancer_id", "backend_servers", "delete_protection_validation")
    replace_on = ("lab", "load_balancer_id")

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        servers = _knowable({"backend_servers": news.get("backend_servers")})
        if servers is not None:
            try:
                model.parse_backend_servers(f"{self.kind} {news.get('__name')!r}", servers["backend_servers"])
            except ValidationError as exc:
                result.failures.append(CheckFailure(exc.field, exc.reason))
        return result

    def _put(self, props: dict[str, Any]) -> None:
        resource = f"{self.kind} {props['__name']!r}"
        refs = model.parse_backend_servers(resource, props["backend_servers"])
        realize.put_backend_servers(props["lab"], props["load_balancer_id"], refs, resource)

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._put(props)
        return CreateResult(props["load_balancer_id"], dict(props))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._put(news)
        return UpdateResult(dict(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if realize.backend_servers(props["lab"], id_) is None:
            return ReadResult("", {})
        return ReadResult(id_, dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        realize.delete_backend_servers(props["lab"], id_)


class BackendServer(Resource):
    """The default server group of an SLB: ``backend_servers=[{server_id, weight}]`` (weight 0..100)."""

    def __init__(self, resource_name: str, load_balancer_id: pulumi.Input[str],
                 backend_servers: pulumi.Input[list[Mapping[str, Any]]],
                 delete_protection_validation: bool | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        resource = f"{BackendServerProvider.kind} {resource_name!r}"
        if is_known(backend_servers):
            # Unknown server ids (other resources' outputs) get distinct placeholders: duplicates stay visible.
            placeholders = [{k: (v if _plain(v) else f"i-ffff{n:04x}" if k == "server_id" else v)
                             for k, v in dict(item).items()} if isinstance(item, Mapping) else item
                            for n, item in enumerate(backend_servers)]
            if all(_plain(item) for item in placeholders):
                model.parse_backend_servers(resource, placeholders)
            for n, item in enumerate(backend_servers):
                _check_server_known(resource, f"backend_servers[{n}].server_id", dict(item).get("server_id"))
        super().__init__(BackendServerProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "load_balancer_id": load_balancer_id,
            "backend_servers": backend_servers, "delete_protection_validation": delete_protection_validation,
        }, opts)


class ServerGroupProvider(LabProvider):
    kind = "slb.ServerGroup"
    inputs = ("lab", "load_balancer_id", "name", "delete_protection_validation")
    replace_on = ("lab", "load_balancer_id")

    def create(self, props: dict[str, Any]) -> CreateResult:
        group_id = new_id("rsp")
        realize.create_server_group(props["lab"], group_id, props["load_balancer_id"], props.get("name") or "",
                                    f"{self.kind} {props['__name']!r}")
        return CreateResult(group_id, dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if realize.server_group(props["lab"], id_) is None:
            return ReadResult("", {})
        return ReadResult(id_, dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        realize.delete_server_group(props["lab"], id_)


class ServerGroup(Resource):
    """A virtual server group of an SLB: backends with their own ports (``ServerGroupServerAttachment``)."""

    def __init__(self, resource_name: str, load_balancer_id: pulumi.Input[str], name: pulumi.Input[str] | None = None,
                 delete_protection_validation: bool | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(ServerGroupProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "load_balancer_id": load_balancer_id, "name": name,
            "delete_protection_validation": delete_protection_validation,
        }, opts)


def _attachment(resource: str, props: Mapping[str, Any]) -> model.BackendRef:
    port = props.get("port")
    if port is None:
        raise ValidationError(resource, "port", "is required (1..65535)")
    return model.parse_backend(resource, "", props.get("server_id"), props.get("weight", 100), port,
                               props.get("type") or "ecs")


class ServerGroupServerAttachmentProvider(LabProvider):
    kind = "slb.ServerGroupServerAttachment"
    inputs = ("lab", "server_group_id", "server_id", "port", "weight", "type", "description")
    replace_on = ("lab", "server_group_id", "server_id", "port", "type")

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        args = _knowable({k: news.get(k) for k in ("server_id", "port", "weight", "type")})
        if args is not None:
            try:
                _attachment(f"{self.kind} {news.get('__name')!r}", args)
            except ValidationError as exc:
                result.failures.append(CheckFailure(exc.field, exc.reason))
        return result

    def _put(self, props: dict[str, Any]) -> model.BackendRef:
        resource = f"{self.kind} {props['__name']!r}"
        ref = _attachment(resource, props)
        realize.attach_server(props["lab"], props["server_group_id"], ref, resource)
        return ref

    def create(self, props: dict[str, Any]) -> CreateResult:
        ref = self._put(props)
        return CreateResult(f"{props['server_group_id']}:{ref.server_id}:{ref.port}", dict(props))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._put(news)
        return UpdateResult(dict(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        group_id, server_id, port = id_.split(":")
        group = realize.server_group(props["lab"], group_id)
        if group is None or not any((s["server_id"], s["port"]) == (server_id, int(port)) for s in group["servers"]):
            return ReadResult("", {})
        return ReadResult(id_, dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        group_id, server_id, port = id_.split(":")
        realize.detach_server(props["lab"], group_id, server_id, int(port))


class ServerGroupServerAttachment(Resource):
    """One backend (ECS and port, weight 0..100) of a server group."""

    def __init__(self, resource_name: str, server_group_id: pulumi.Input[str], server_id: pulumi.Input[str],
                 port: pulumi.Input[int], weight: pulumi.Input[int] = 100, type: pulumi.Input[str] = "ecs",
                 description: pulumi.Input[str] | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        resource = f"{ServerGroupServerAttachmentProvider.kind} {resource_name!r}"
        args = _knowable({"server_id": server_id, "port": port, "weight": weight, "type": type})
        if args is not None:
            _attachment(resource, args)
        _check_server_known(resource, "server_id", server_id)
        super().__init__(ServerGroupServerAttachmentProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "server_group_id": server_group_id,
            "server_id": server_id, "port": port, "weight": weight, "type": type, "description": description,
        }, opts)


# --- access control lists and certificates -----------------------------------------------------------------

class AclProvider(LabProvider):
    kind = "slb.Acl"
    inputs = ("lab", "name", "ip_version", "tags")
    replace_on = ("lab", "ip_version")

    def create(self, props: dict[str, Any]) -> CreateResult:
        acl_id = new_id("acl")
        realize.create_acl(props["lab"], acl_id, props.get("name") or "")
        return CreateResult(acl_id, dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, dict(props)) if realize.acl(props["lab"], id_) is not None else ReadResult("", {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        realize.delete_acl(props["lab"], id_)


class Acl(Resource):
    """An access control list: addresses and blocks a listener allows (white) or refuses (black)."""

    def __init__(self, resource_name: str, name: pulumi.Input[str] | None = None,
                 ip_version: pulumi.Input[str] = "ipv4", tags: pulumi.Input[dict[str, str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        if ip_version != "ipv4" and is_known(ip_version):
            raise ValidationError(f"slb.Acl {resource_name!r}", "ip_version", f"{ip_version!r}: only ipv4 is built")
        super().__init__(AclProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "name": name, "ip_version": ip_version, "tags": tags,
        }, opts)


class AclEntryAttachmentProvider(LabProvider):
    kind = "slb.AclEntryAttachment"
    inputs = ("lab", "acl_id", "entry", "comment")
    replace_on = inputs
    validators = {"entry": model.check_acl_entry}  # noqa: RUF012

    def create(self, props: dict[str, Any]) -> CreateResult:
        resource = f"{self.kind} {props['__name']!r}"
        entry = model.check_acl_entry(resource, props["entry"])
        realize.set_acl_entry(props["lab"], props["acl_id"], entry, props.get("comment") or "", resource)
        return CreateResult(f"{props['acl_id']}:{entry}", dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        acl_id, entry = id_.split(":", 1)
        data = realize.acl(props["lab"], acl_id)
        return ReadResult(id_, dict(props)) if data and entry in data["entries"] else ReadResult("", {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        acl_id, entry = id_.split(":", 1)
        if realize.acl(props["lab"], acl_id) is not None:
            realize.set_acl_entry(props["lab"], acl_id, entry, None, f"{self.kind} {props['__name']!r}")


class AclEntryAttachment(Resource):
    """One entry (an address or CIDR block) of an ACL."""

    def __init__(self, resource_name: str, acl_id: pulumi.Input[str], entry: pulumi.Input[str],
                 comment: pulumi.Input[str] | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        if is_known(entry):
            model.check_acl_entry(f"{AclEntryAttachmentProvider.kind} {resource_name!r}", entry)
        super().__init__(AclEntryAttachmentProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "acl_id": acl_id, "entry": entry, "comment": comment,
        }, opts)


class ServerCertificateProvider(LabProvider):
    kind = "slb.ServerCertificate"
    inputs = ("lab", "name", "server_certificate", "private_key")
    replace_on = ("lab", "server_certificate", "private_key")

    def create(self, props: dict[str, Any]) -> CreateResult:
        resource = f"{self.kind} {props['__name']!r}"
        model.check_certificate(resource, props["server_certificate"], props["private_key"])
        cert_id = new_id("cert")
        realize.put_certificate(props["lab"], cert_id, props["server_certificate"], props["private_key"])
        return CreateResult(cert_id, dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, dict(props)) if realize.certificate_exists(props["lab"], id_) else ReadResult("", {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        realize.delete_certificate(props["lab"], id_)


class ServerCertificate(Resource):
    """A server certificate (PEM certificate chain and private key) that https listeners terminate TLS with."""

    def __init__(self, resource_name: str, server_certificate: pulumi.Input[str], private_key: pulumi.Input[str],
                 name: pulumi.Input[str] | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        if is_known(server_certificate) and is_known(private_key):
            model.check_certificate(f"{ServerCertificateProvider.kind} {resource_name!r}", server_certificate,
                                    private_key)
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key"]))
        super().__init__(ServerCertificateProvider(), resource_name, {
            "__name": resource_name, "lab": current_lab(), "name": name, "server_certificate": server_certificate,
            "private_key": private_key,
        }, opts)
