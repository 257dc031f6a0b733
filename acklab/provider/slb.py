"""``slb.*`` of pulumi-alicloud (Alibaba's Classic Load Balancer) → ``netns/realize/slb.py``: a namespace per SLB
on a vSwitch (intranet) or the lab's sealed internet, layer 4 in the kernel and layer 7 in HAProxy, with listeners,
backends, server groups, ACLs and certificates as the realization's API state.

Validation is ``netns/model/slb.py``'s, the same the cloud controller uses: Check runs it on a
resource's own arguments (ids of other resources still unknown in a preview stand in as placeholders); what needs
another resource (the SLB of a listener, a backend's instance, a group's SLB, an ACL) is checked by the
realization at create, under the lab's lock, and a failed change is rolled back (HAProxy keeps the old
configuration). The data source ``slb.get_zones`` answers from the catalog.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from acklab.provider import catalog, records
from acklab.provider.base import Context, Kind, check_zone, first, given, problems
from acklab.provider.config import ProviderConfig
from acklab.provider.index import Function, arguments, data_id
from acklab.provider.sdk import nested_to_python, resource_schema, result
from acklab.provider.wire import known
from netns.model import slb as model
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import check_alias_part, new_id
from netns.realize import slb as realize
from netns.realize.vpc import VSwitch, find_vswitch

_INPUTS = "pulumi_alicloud.slb._inputs"
_OUTPUTS = "pulumi_alicloud.slb.outputs"
# Stand-ins for ids still unknown in a preview: the model checks their syntax only.
_PLACEHOLDERS = {"load_balancer_id": "lb-00000000", "server_group_id": "rsp-00000000", "acl_id": "acl-00000000",
                 "server_certificate_id": "cert-00000000"}


def _refuse(resource: str, field: str, reason: str) -> None:
    raise ValidationError(resource, field, reason)


def _choices(ctx: Context, inputs: dict[str, Any], table: dict[str, tuple[Any, ...]]) -> list[Callable[[], object]]:
    """Checks that each given argument of ``table`` is one of its values (as Alibaba's API validates them)."""
    checks = []
    for field, allowed in table.items():
        value = inputs.get(field)
        if value is not None and known(value) and value not in allowed:
            checks.append(lambda f=field, v=value, a=allowed: _refuse(ctx.label, f, f"{v!r} is not one of "
                                                                        f"{', '.join(map(str, a))}"))
    return checks


def _int_range(ctx: Context, inputs: dict[str, Any], field: str, low: int, high: int,
               also: tuple[int, ...] = ()) -> list[Callable[[], object]]:
    value = inputs.get(field)
    if value is None or not known(value) or value in also or (isinstance(value, int) and low <= value <= high):
        return []
    extra = f" (or {', '.join(map(str, also))})" if also else ""
    return [lambda: _refuse(ctx.label, field, f"{value!r} is not an integer from {low} to {high}{extra}")]


def _require_lb(ctx: Context, lb_id: str) -> None:
    """The SLB a listener or backend names must exist: an early, clear error naming the argument."""
    if realize.SlbInstance(ctx.lab, lb_id).read() is None:
        raise NotFoundError(f"{ctx.label}: load_balancer_id: SLB {lb_id} does not exist in lab {ctx.lab}")


# --- the load balancer -------------------------------------------------------------------------------------

# What Alibaba names an SLB created without a name.
DEFAULT_LB_NAME = "auto_named_slb"
_LB_SPECS = ("slb.s1.small", "slb.s2.small", "slb.s2.medium", "slb.s3.small", "slb.s3.medium", "slb.s3.large",
             "slb.s4.large")
_LB_CHOICES: dict[str, tuple[Any, ...]] = {
    "load_balancer_spec": _LB_SPECS, "specification": _LB_SPECS, "payment_type": ("PayAsYouGo", "Subscription"),
    "internet_charge_type": ("PayByTraffic", "PayByBandwidth", "paybytraffic", "paybybandwidth"),
    "instance_charge_type": ("PayBySpec", "PayByCLCU"), "delete_protection": ("on", "off"),
    "modification_protection_status": ("ConsoleProtection", "NonProtection"),
    "period": (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 24, 36)}
_NAME_MAX = 80  # Alibaba's limit, in characters
_NAME_BYTES = 160  # what the SLB's interface alias has room for beside its other facts (kernel limit)


def _check_lb_name(resource: str, name: Any) -> None:
    if isinstance(name, str) and len(name) > _NAME_MAX:
        raise ValidationError(resource, "load_balancer_name", f"is {len(name)} characters; at most {_NAME_MAX}")
    check_alias_part(resource, "load_balancer_name", name, _NAME_BYTES)


def _check_lb_address(resource: str, address_type: str, address: Any) -> None:
    if address_type == "internet":
        model.check_internet_address(resource, address)  # on the lab's internet, past the clients' addresses
        return
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise ValidationError(resource, "address", f"{address!r} is not an IPv4 address") from None


class ApplicationLoadBalancer(Kind):
    token = "alicloud:slb/applicationLoadBalancer:ApplicationLoadBalancer"
    label = "slb.ApplicationLoadBalancer"
    # The address (and the network it is on) is the SLB's namespace's leg: another one is another SLB.
    replace_on = ("address_type", "vswitch_id", "address", "address_ip_version", "master_zone_id", "slave_zone_id")
    computed = ("address", "load_balancer_name", "name", "load_balancer_spec", "specification", "master_zone_id",
                "slave_zone_id")
    defaults: ClassVar = {"payment_type": "PayAsYouGo", "internet_charge_type": "PayByTraffic",
                          "instance_charge_type": "PayBySpec", "address_ip_version": "ipv4", "delete_protection": "off",
                          "modification_protection_status": "NonProtection", "status": "active"}
    unsupported: ClassVar = {
        "address_ip_version": (lambda v: v != "ipv4", "acklab's SLBs are IPv4 only"),
        "status": (lambda v: v != "active", "only active SLBs are supported by acklab"),
    }
    realized = ("address_type", "vswitch_id", "address", "load_balancer_name", "name")

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """An SLB given a vSwitch is an intranet one, else internet (what the real provider sends Alibaba)."""
        filled = {"address_type": first(inputs.get("address_type"),
                                        "intranet" if given(inputs.get("vswitch_id")) else "internet"),
                  "load_balancer_name": first(inputs.get("load_balancer_name"), inputs.get("name")),
                  "load_balancer_spec": first(inputs.get("load_balancer_spec"), inputs.get("specification"))}
        return {**inputs, **{k: v for k, v in filled.items() if v is not None}}

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        value, kind = inputs.get, inputs.get("address_type")
        checks = _choices(ctx, inputs, _LB_CHOICES) + _int_range(ctx, inputs, "bandwidth", 1, 5120)
        if known(kind):
            checks.append(lambda: model.check_address_type(ctx.label, kind))
            if kind == "intranet" and value("vswitch_id") is None:
                checks.append(lambda: _refuse(ctx.label, "vswitch_id", "is required for an intranet SLB: its address "
                                                                       "is on the vSwitch"))
            if kind == "intranet" and str(value("internet_charge_type")).lower() == "paybybandwidth":
                checks.append(lambda: _refuse(ctx.label, "internet_charge_type", "PayByBandwidth is for internet "
                                                                                 "SLBs"))
            if value("address") is not None and known(value("address")):
                checks.append(lambda: _check_lb_address(ctx.label, kind, value("address")))
        if value("load_balancer_name") is not None and known(value("load_balancer_name")):
            checks.append(lambda: _check_lb_name(ctx.label, value("load_balancer_name")))
        for field in ("master_zone_id", "slave_zone_id"):
            if value(field) is not None and known(value(field)):
                checks.append(lambda f=field: check_zone(ctx, f, value(f)))
        return problems(*checks)

    def _vswitch(self, ctx: Context, inputs: dict[str, Any]) -> VSwitch:
        try:
            vswitch = find_vswitch(ctx.lab, inputs["vswitch_id"])
        except NotFoundError as exc:
            raise NotFoundError(f"{ctx.label}: vswitch_id: {exc}") from None
        zone = inputs.get("master_zone_id")
        if zone is not None and zone != vswitch.zone_id():
            raise ValidationError(ctx.label, "master_zone_id", f"{zone} is not the zone of vSwitch "
                                                               f"{vswitch.vswitch_id} ({vswitch.zone_id()})")
        return vswitch

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kind = inputs["address_type"]
        # an internet SLB's address is on the lab's internet; the SDK says its vswitch_id is then ignored
        vswitch = self._vswitch(ctx, inputs) if kind == "intranet" else None
        lb_id, name = new_id("lb"), inputs.get("load_balancer_name") or DEFAULT_LB_NAME
        address = realize.SlbInstance(ctx.lab, lb_id).create(kind, vswitch, inputs.get("address"), ctx.label, name)
        zones = catalog.zones(ctx.region)
        master = vswitch.zone_id() if vswitch else inputs.get("master_zone_id") or zones[0]
        spec = inputs.get("load_balancer_spec")
        state = self.state({
            **inputs, "address": address, "load_balancer_name": name, "name": name, "load_balancer_spec": spec,
            "specification": spec, "master_zone_id": master,
            "slave_zone_id": inputs.get("slave_zone_id") or zones[(zones.index(master) + 1) % len(zones)]})
        records.put(ctx.lab, lb_id, state)  # what the kernel has no field for (billing, zones), for an import
        return lb_id, state

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        found = realize.SlbInstance(ctx.lab, id_).read()
        if found is None:
            records.drop(ctx.lab, id_)  # gone behind Pulumi's back: the engine forgets it, so does the record
            return None
        base = self.known_state(ctx.lab, id_, state)  # found by its id alone for `pulumi import`: the record
        vswitch = found.vswitch_id if found.address_type == "intranet" else base.get("vswitch_id")
        name = base.get("load_balancer_name") or found.name or DEFAULT_LB_NAME
        return self.state({**base, "address": found.address, "address_type": found.address_type or
                           base.get("address_type"), "vswitch_id": vswitch, "load_balancer_name": name,
                           "name": base.get("name") or name})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        merged = self.merged(olds, news)
        name = merged.get("load_balancer_name") or DEFAULT_LB_NAME
        if name != olds.get("load_balancer_name"):
            realize.SlbInstance(ctx.lab, id_).rename(name)
        state = self.state({**merged, "load_balancer_name": name, "name": name})
        records.put(ctx.lab, id_, state)
        return state

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        if state.get("delete_protection") == "on":  # as Alibaba: protection is switched off first
            raise LabError(f"{self.label} {id_}: delete_protection is on; set it to off before deleting the SLB")
        realize.SlbInstance(ctx.lab, id_).delete()
        records.drop(ctx.lab, id_)


# --- listeners ---------------------------------------------------------------------------------------------

_TLS_POLICIES = ("tls_cipher_policy_1_0", "tls_cipher_policy_1_1", "tls_cipher_policy_1_2",
                 "tls_cipher_policy_1_2_strict", "tls_cipher_policy_1_2_strict_with_1_3")


def _listener_args(inputs: dict[str, Any]) -> dict[str, Any]:
    """The arguments the model validates and the realization keeps (netns/model/slb.py's names)."""
    args = {k: inputs[k] for k in model.LISTENER_ARGS if inputs.get(k) is not None}
    if isinstance(args.get("x_forwarded_for"), dict):  # a nested block: the engine sends its wire names
        args["x_forwarded_for"] = nested_to_python(_INPUTS, "ListenerXForwardedForArgs", args["x_forwarded_for"])
    return args


_LISTENER = "alicloud:slb/listener:Listener"


class Listener(Kind):
    token = _LISTENER
    label = "slb.Listener"
    # the listener's id; and Alibaba turns the HTTP-to-HTTPS redirect on only when a listener is created
    replace_on = ("load_balancer_id", "frontend_port", "protocol", "listener_forward")
    # The SDK's (Alibaba's) defaults; the model's are the same.
    defaults: ClassVar = {
        "scheduler": "wrr", "health_check": "on", "sticky_session": "off", "acl_status": "off",
        "persistence_timeout": 0, "health_check_interval": 2, "health_check_timeout": 5, "healthy_threshold": 3,
        "unhealthy_threshold": 3, "established_timeout": 900, "idle_timeout": 15, "request_timeout": 60,
        "health_check_http_code": "http_2xx", "gzip": True, "enable_http2": "on",
        "tls_cipher_policy": "tls_cipher_policy_1_0", "delete_protection_validation": False,
        "listener_forward": "off", "proxy_protocol_v2_enabled": False}
    unsupported: ClassVar = {
        "ca_certificate_id": (given, "client certificates (mutual TLS) are not supported by acklab's SLB yet"),
        "master_slave_server_group_id": (given, "primary/secondary server groups are not supported by acklab yet"),
        "acl_ids": (lambda v: isinstance(v, list) and len(v) > 1, "acklab's listeners take one ACL"),
    }
    # The model's listener arguments that the SDK's slb.Listener has (the model also serves the cloud controller,
    # whose Service annotations reach further, e.g. connection_drain).
    realized = (*(a for a in model.LISTENER_ARGS if a not in ("bandwidth", "description")
                  and a in resource_schema(_LISTENER).inputs), "load_balancer_id", "acl_ids", "ssl_certificate_id")

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Health checks are tcp for tcp listeners and http for http/https ones; the certificate's and the ACL's
        arguments have aliases (``ssl_certificate_id``, a one-element ``acl_ids`` as in the SDK's example)."""
        protocol, acl_ids = inputs.get("protocol"), inputs.get("acl_ids")
        filled = {"server_certificate_id": first(inputs.get("server_certificate_id"), inputs.get("ssl_certificate_id")),
                  "acl_id": first(inputs.get("acl_id"), acl_ids[0] if isinstance(acl_ids, list) and acl_ids else None)}
        if inputs.get("health_check_type") is None and known(protocol) and protocol is not None:
            filled["health_check_type"] = "tcp" if protocol in ("tcp", "udp") else "http"
        return {**inputs, **{k: v for k, v in filled.items() if v is not None}}

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        checks = _choices(ctx, inputs, {"tls_cipher_policy": _TLS_POLICIES, "enable_http2": ("on", "off"),
                                        "health_check_method": ("head", "get")})
        checks += _int_range(ctx, inputs, "bandwidth", 1, 5120, also=(-1,))
        args = {k: (v if known(v) else _PLACEHOLDERS.get(k, v)) for k, v in _listener_args(inputs).items()}
        if all(known(v) for v in args.values()) and inputs.get("protocol") is not None:
            checks.append(lambda: model.parse_listener(ctx.label, _PLACEHOLDERS["load_balancer_id"], args))
        return problems(*checks)

    def _put(self, ctx: Context, inputs: dict[str, Any]) -> model.Listener:
        lb_id, args = inputs["load_balancer_id"], _listener_args(inputs)
        listener = model.parse_listener(ctx.label, lb_id, args)
        _require_lb(ctx, lb_id)
        # under the lab's lock: the port against the SLB's other listeners, the group, ACL and certificate it
        # names; then HAProxy reloads (open connections are kept); on failure the old listener is put back
        realize.put_listener(ctx.lab, listener, args, ctx.label)
        return listener

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        listener_id, state = self._put(ctx, inputs).listener_id, self.state(inputs)
        records.put(ctx.lab, listener_id, state)  # the arguments as the program gave them, for an import
        return listener_id, state

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        lb_id, protocol, port = id_.rsplit(":", 2)
        args = realize.listener_args(ctx.lab, lb_id, protocol, int(port))
        if args is None:
            records.drop(ctx.lab, id_)
            return None
        if state:
            return self.state(state)
        # `pulumi import` by id (<SLB id>:<protocol>:<port>): the record, else the arguments the SLB keeps (nested
        # blocks, kept in the model's names, left out)
        flat = {k: v for k, v in args.items() if not isinstance(v, dict) and k in self.schema.inputs}
        kept = {**flat, "load_balancer_id": lb_id, "protocol": protocol, "frontend_port": int(port)}
        return self.state(self.fill({**self.defaults, **kept, **records.get(ctx.lab, id_)}))

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        merged = self.merged(olds, news)
        self._put(ctx, merged)
        records.put(ctx.lab, id_, merged)
        return merged

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        lb_id, protocol, port = id_.rsplit(":", 2)
        realize.delete_listener(ctx.lab, lb_id, protocol, int(port))
        records.drop(ctx.lab, id_)


# --- backends: the default server group, virtual server groups and their attachments -----------------------

def _server_placeholder(n: int, kind: Any) -> str:
    """Distinct stand-ins for servers still unknown in a preview: a server listed twice stays visible."""
    return f"eni-ffff{n:04x}" if kind == "eni" else f"i-ffff{n:04x}"


class BackendServer(Kind):
    token = "alicloud:slb/backendServer:BackendServer"
    label = "slb.BackendServer"
    replace_on = ("load_balancer_id",)  # the resource's id is its SLB's
    realized = ("load_balancer_id", "backend_servers")

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Each server's weight (100) and type (ecs) as the SDK defaults them."""
        servers = inputs.get("backend_servers")
        if not isinstance(servers, list):
            return inputs
        return {**inputs, "backend_servers": [{"weight": 100, "type": "ecs", **item} if isinstance(item, dict)
                                              else item for item in servers]}

    def _servers(self, servers: Any, placeholders: bool = False) -> list[dict[str, Any]]:
        items = []
        for n, item in enumerate(servers or []):
            server = nested_to_python(_INPUTS, "BackendServerBackendServerArgs", item) if isinstance(item, dict) \
                else item
            if placeholders and isinstance(server, dict) and not known(server.get("server_id")):
                server = {**server, "server_id": _server_placeholder(n, server.get("type"))}
            items.append(server)
        return items

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        servers = inputs.get("backend_servers")
        if not servers or not known([v for i in servers if isinstance(i, dict) for k, v in i.items()
                                     if k != "serverId"]):
            return ()
        return problems(lambda: model.parse_backend_servers(ctx.label, self._servers(servers, placeholders=True)))

    def _put(self, ctx: Context, inputs: dict[str, Any]) -> None:
        servers = self._servers(inputs.get("backend_servers"))
        # none given: an empty default server group (the model refuses an empty list, the SDK allows leaving it out)
        refs = model.parse_backend_servers(ctx.label, servers) if servers else ()
        # checks the servers and the SLB, then re-syncs its HAProxy under the lab's lock (rolled back on failure)
        realize.put_backend_servers(ctx.lab, inputs["load_balancer_id"], refs, ctx.label)

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._put(ctx, inputs)
        return inputs["load_balancer_id"], self.state(inputs)

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        return self.state(state) if realize.backend_servers(ctx.lab, id_) is not None else None

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        merged = self.merged(olds, news)
        self._put(ctx, merged)
        return merged

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        realize.delete_backend_servers(ctx.lab, id_)


def _group_refs(resource: str, servers: Any) -> list[model.BackendRef]:
    """slb.ServerGroup's inline ``servers`` blocks ({server_ids, port, weight, type}) as one ref per server."""
    refs = []
    for n, item in enumerate(servers or []):
        block = nested_to_python(_INPUTS, "ServerGroupServerArgs", item)
        for server_id in block.get("server_ids") or []:
            refs.append(model.parse_backend(resource, f"servers[{n}].", server_id, block.get("weight", 100),
                                            block.get("port"), block.get("type", "ecs")))
    return refs


class ServerGroup(Kind):
    token = "alicloud:slb/serverGroup:ServerGroup"
    label = "slb.ServerGroup"
    replace_on = ("load_balancer_id",)
    realized = ("load_balancer_id", "name", "servers")

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        servers = inputs.get("servers")
        return problems(lambda: _group_refs(ctx.label, servers)) if servers and known(servers) else ()

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        refs = _group_refs(ctx.label, inputs.get("servers"))
        group_id = new_id("rsp")
        realize.create_server_group(ctx.lab, group_id, inputs["load_balancer_id"], inputs.get("name") or "",
                                    ctx.label)
        try:
            for ref in refs:
                realize.attach_server(ctx.lab, group_id, ref, ctx.label)
        except Exception:
            realize.delete_server_group(ctx.lab, group_id)  # nothing half-made
            raise
        return group_id, self.state(inputs)

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        group = realize.server_group(ctx.lab, id_)
        if group is None:
            return None
        if state:  # a refresh: the program's servers stay as it gave them
            return self.state(state)
        # `pulumi import` by id: the SLB and the name from the kernel's record; its servers are left to the
        # program (they may as well be ServerGroupServerAttachments, which would then fight the inline list)
        return self.state({"load_balancer_id": group["load_balancer_id"], "name": group["name"] or None})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        merged = self.merged(olds, news)
        if merged.get("name") != olds.get("name"):  # rewrites the name, keeps the servers
            realize.create_server_group(ctx.lab, id_, merged["load_balancer_id"], merged.get("name") or "",
                                        ctx.label)
        old, new = _group_refs(ctx.label, olds.get("servers")), _group_refs(ctx.label, merged.get("servers"))
        kept = {(r.server_id, r.port) for r in new}
        for ref in old:
            if (ref.server_id, ref.port) not in kept:
                realize.detach_server(ctx.lab, id_, ref.server_id, ref.port or 0)
        for ref in new:  # attaching again only changes the weight
            realize.attach_server(ctx.lab, id_, ref, ctx.label)
        return merged

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        realize.delete_server_group(ctx.lab, id_)


class ServerGroupServerAttachment(Kind):
    token = "alicloud:slb/serverGroupServerAttachment:ServerGroupServerAttachment"
    label = "slb.ServerGroupServerAttachment"
    replace_on = ("server_group_id", "server_id", "port", "type")  # the id; the weight changes in place
    defaults: ClassVar = {"weight": 100, "type": "ecs"}
    realized = ("server_group_id", "server_id", "port", "weight", "type")

    def _ref(self, ctx: Context, inputs: dict[str, Any], server_id: Any) -> model.BackendRef:
        return model.parse_backend(ctx.label, "", server_id, inputs.get("weight"), inputs.get("port"),
                                   inputs.get("type"))

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        if not all(known(inputs.get(k)) for k in ("port", "weight", "type")) or inputs.get("port") is None:
            return ()
        server = inputs.get("server_id")
        stand_in = server if known(server) else _server_placeholder(0, inputs.get("type"))
        return problems(lambda: self._ref(ctx, inputs, stand_in)) if server is not None else ()

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        ref = self._ref(ctx, inputs, inputs["server_id"])
        realize.attach_server(ctx.lab, inputs["server_group_id"], ref, ctx.label)  # checks group and server
        return f"{inputs['server_group_id']}:{ref.server_id}:{ref.port}", self.state(inputs)  # the real provider's id

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        group_id, server_id, port = id_.split(":")
        group = realize.server_group(ctx.lab, group_id)
        if group is None or all((s["server_id"], s["port"]) != (server_id, int(port)) for s in group["servers"]):
            return None
        return self.state(state)

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        merged = self.merged(olds, news)
        realize.attach_server(ctx.lab, merged["server_group_id"], self._ref(ctx, merged, merged["server_id"]),
                              ctx.label)
        return merged

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        group_id, server_id, port = id_.split(":")
        realize.detach_server(ctx.lab, group_id, server_id, int(port))


# --- access control lists and certificates -----------------------------------------------------------------

def _acl_entries(resource: str, entry_lists: Any) -> dict[str, str]:
    """slb.Acl's inline ``entry_lists`` ({entry, comment}) as entry → comment, each entry checked."""
    entries = {}
    for n, item in enumerate(entry_lists or []):
        block = nested_to_python(_INPUTS, "AclEntryListArgs", item)
        try:
            entry = model.check_acl_entry(resource, block.get("entry"))
        except ValidationError as exc:
            raise ValidationError(resource, f"entry_lists[{n}].entry", exc.reason) from None
        entries[entry] = block.get("comment") or ""
    return entries


class Acl(Kind):
    token = "alicloud:slb/acl:Acl"
    label = "slb.Acl"
    replace_on = ("ip_version",)
    defaults: ClassVar = {"ip_version": "ipv4"}
    unsupported: ClassVar = {"ip_version": (lambda v: v != "ipv4", "acklab's SLB ACLs are IPv4 only")}
    realized = ("name", "entry_lists")

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        entries = inputs.get("entry_lists")
        return problems(lambda: _acl_entries(ctx.label, entries)) if entries and known(entries) else ()

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        entries = _acl_entries(ctx.label, inputs.get("entry_lists"))
        acl_id = new_id("acl")
        realize.create_acl(ctx.lab, acl_id, inputs.get("name") or "")
        for entry, comment in entries.items():  # a new ACL: no listener uses it yet, nothing to re-sync
            realize.set_acl_entry(ctx.lab, acl_id, entry, comment, ctx.label)
        return acl_id, self.state(inputs)

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        found = realize.acl(ctx.lab, id_)
        if found is None:
            return None
        if state:
            return self.state(state)
        # `pulumi import` by id: the name; the entries are left to the program (inline or AclEntryAttachments)
        return self.state({"name": found["name"] or None, "ip_version": "ipv4"})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        merged = self.merged(olds, news)
        if merged.get("name") != olds.get("name"):
            realize.create_acl(ctx.lab, id_, merged.get("name") or "")  # rewrites the name, keeps the entries
        old, new = _acl_entries(ctx.label, olds.get("entry_lists")), _acl_entries(ctx.label, merged.get("entry_lists"))
        for entry, comment in new.items():  # added before removed: an allowed source is never refused meanwhile
            if old.get(entry) != comment:
                realize.set_acl_entry(ctx.lab, id_, entry, comment, ctx.label)
        for entry in old.keys() - new.keys():
            realize.set_acl_entry(ctx.lab, id_, entry, None, ctx.label)
        return merged

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        realize.delete_acl(ctx.lab, id_)


class AclEntryAttachment(Kind):
    token = "alicloud:slb/aclEntryAttachment:AclEntryAttachment"
    label = "slb.AclEntryAttachment"
    replace_on = ("acl_id", "entry", "comment")
    realized = ("acl_id", "entry", "comment")

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        entry = inputs.get("entry")
        return problems(lambda: model.check_acl_entry(ctx.label, entry)) if entry is not None and known(entry) else ()

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        entry = model.check_acl_entry(ctx.label, inputs["entry"])
        # the SLBs whose listeners use the ACL follow, under the lab's lock
        realize.set_acl_entry(ctx.lab, inputs["acl_id"], entry, inputs.get("comment") or "", ctx.label)
        return f"{inputs['acl_id']}:{entry}", self.state(inputs)  # the real provider's id

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        acl_id, entry = id_.split(":", 1)
        found = realize.acl(ctx.lab, acl_id)
        return self.state(state) if found is not None and entry in found["entries"] else None

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        acl_id, entry = id_.split(":", 1)
        realize.set_acl_entry(ctx.lab, acl_id, entry, None, ctx.label)


_CAS = "certificates of Alibaba's Certificate Management Service are not in the lab; give server_certificate and " \
       "private_key"


class ServerCertificate(Kind):
    token = "alicloud:slb/serverCertificate:ServerCertificate"
    label = "slb.ServerCertificate"
    replace_on = ("server_certificate", "private_key", "alicloud_certificate_id", "alicloud_certifacte_id")
    lab_required: ClassVar = {"server_certificate": "the lab has only uploaded certificates",
                              "private_key": "the lab has only uploaded certificates"}
    unsupported: ClassVar = {"alicloud_certificate_id": (given, _CAS), "alicloud_certifacte_id": (given, _CAS)}
    realized = ("server_certificate", "private_key")

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        cert, key = inputs.get("server_certificate"), inputs.get("private_key")
        if cert is None or key is None or not known(cert) or not known(key):
            return ()
        return problems(lambda: model.check_certificate(ctx.label, cert, key))

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        model.check_certificate(ctx.label, inputs["server_certificate"], inputs["private_key"])
        cert_id = new_id("cert")
        realize.put_certificate(ctx.lab, cert_id, inputs["server_certificate"], inputs["private_key"])
        return cert_id, self.state(inputs)

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        return self.state(state) if realize.certificate_exists(ctx.lab, id_) else None

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        realize.delete_certificate(ctx.lab, id_)  # refused while a listener uses it


KINDS = (ApplicationLoadBalancer(), Listener(), BackendServer(), ServerGroup(), ServerGroupServerAttachment(), Acl(),
         AclEntryAttachment(), ServerCertificate())


# --- data sources ------------------------------------------------------------------------------------------

GET_ZONES = "alicloud:slb/getZones:getZones"
_ADDRESS_TYPES = ("vpc", "classic_internet", "classic_intranet")  # what Alibaba's DescribeZones lists


def get_zones(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """Each zone of the region as an SLB's primary zone, the next one as its standby; IPv4 only (the lab's SLBs
    are), every address type."""
    module = "pulumi_alicloud.slb.get_zones"
    args = arguments(module, "GetZonesResult", wire_args)
    zones = catalog.zones(config.region)
    offered = (args.get("available_slb_address_ip_version") in (None, "ipv4")
               and args.get("available_slb_address_type") in (None, *_ADDRESS_TYPES))
    items = []
    for n, zone in enumerate(zones if offered else []):
        standby = zones[(n + 1) % len(zones)]
        if args.get("master_zone_id") not in (None, zone) or args.get("slave_zone_id") not in (None, standby):
            continue
        resources = [result(_OUTPUTS, "GetZonesZoneSupportedResourceResult",
                            {"address_ip_version": "ipv4", "address_type": kind}) for kind in _ADDRESS_TYPES]
        items.append(result(_OUTPUTS, "GetZonesZoneResult", {
            "id": zone, "master_zone_id": zone, "slave_zone_id": standby, "slb_slave_zone_ids": [standby],
            "supported_resources": resources}))
    ids = [i["id"] for i in items]
    return result(module, "GetZonesResult", {**args, "id": data_id(ids), "ids": ids, "zones": items})


FUNCTIONS: dict[str, Function] = {GET_ZONES: get_zones}
