"""The cloud controller manager's share of LoadBalancer Services: one SLB per Service, as ACK's CCM makes it.

For every Service of ``type: LoadBalancer`` the CCM creates a CLB (here: ``slb.ApplicationLoadBalancer``),
a listener per Service port whose backend port is the port's NodePort, and adds the cluster's nodes as backend
servers; the SLB's address becomes the Service's ``status.loadBalancer.ingress``. Annotations (ACK's names):

- ``service.beta.kubernetes.io/alibaba-cloud-loadbalancer-address-type``: ``internet`` (default) | ``intranet``
  (on the nodes' vSwitch);
- ``...-scheduler``: ``rr`` (default) | ``wrr`` | ``wlc``;
- ``...-protocol-port``: e.g. ``"http:80"`` or ``"udp:53"`` — the listener protocol of a port (default: the
  port's own, ``tcp`` or ``udp``; an entry names the Service port of its number whose protocol it can carry: udp a
  UDP port, tcp and http a TCP port, so a port number that is TCP and UDP gets a tcp and a udp listener);
- ``...-spec``: the instance spec (default ``slb.s1.small``); ``...-name``: the instance name;
- ``...-persistence-timeout``: source-address persistence of tcp and udp listeners (seconds).

``spec.loadBalancerSourceRanges`` becomes a whitelist ACL on the listeners (kube-proxy enforces the same ranges
for traffic that reaches the nodes for the LB address). ``service.beta.kubernetes.io/backend-type: eni`` (ACK's
option for Terway clusters; ``ecs``, the nodes, is the default here) attaches the pods themselves: each ready
endpoint's address on the ENI that holds it (``ServerIp``), each listener's backend port the endpoints' target port,
no NodePort hop (:func:`eni_backends`). Left out: reusing an existing SLB by id, HTTPS listeners from certificate
ids, SCTP ports.

More annotations for the controller on the API (``acklab/k8s/cloud_controller.py``): health checks
(``...-health-check-flag``, ``-type``, ``-uri``, ``-connect-port``, ``-domain``, ``-httpcode``, ``-interval``,
``-connect-timeout``, ``-timeout``, ``healthy-threshold``, ``unhealthy-threshold``), an existing ACL
(``...-acl-status``, ``-acl-id``, ``-acl-type``), ``...-vswitch-id`` (intranet), ``...-backend-label`` (which
Nodes are backends), connection drain (``...-connection-drain``, ``-connection-drain-timeout``: the tcp and udp
listeners' ``connection_drain``) and ``...-proxy-protocol`` (``on``: the tcp listeners'
``proxy_protocol_v2_enabled``, a PROXY v2 header ahead of the client's bytes; refused with a udp port, which no
PROXY header is built for). ``externalTrafficPolicy: Local`` makes the tcp and http listeners check the nodes over
http on the Service's ``healthCheckNodePort`` (kube-proxy answers 200 only on nodes with a ready local endpoint),
as ACK does; udp listeners keep their udp check (silence is up, so a node without a local endpoint, where
kube-proxy drops the datagram, stays in rotation: not built).

:func:`load_balancers` turns Services (as the API server returns them) into what to create. :func:`node_instance_id`,
:func:`backend_servers`, :func:`listener_args` and :func:`decide` are the controller's pure share: Nodes → ECS ids,
a listener's ``slb.Listener`` arguments, and the steps from what exists to what is wanted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netns.model.errors import ValidationError

PREFIX = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-"
ADDRESS_TYPE = PREFIX + "address-type"
SCHEDULER = PREFIX + "scheduler"
PROTOCOL_PORT = PREFIX + "protocol-port"
SPEC = PREFIX + "spec"
NAME = PREFIX + "name"
PERSISTENCE = PREFIX + "persistence-timeout"
HEALTH_FLAG = PREFIX + "health-check-flag"
HEALTH_TYPE = PREFIX + "health-check-type"
HEALTH_URI = PREFIX + "health-check-uri"
HEALTH_PORT = PREFIX + "health-check-connect-port"
HEALTH_DOMAIN = PREFIX + "health-check-domain"
HEALTH_CODE = PREFIX + "health-check-httpcode"
HEALTH_INTERVAL = PREFIX + "health-check-interval"
HEALTH_CONNECT_TIMEOUT = PREFIX + "health-check-connect-timeout"  # tcp checks
HEALTH_TIMEOUT = PREFIX + "health-check-timeout"  # http checks
HEALTHY = PREFIX + "healthy-threshold"
UNHEALTHY = PREFIX + "unhealthy-threshold"
ACL_STATUS = PREFIX + "acl-status"
ACL_ID = PREFIX + "acl-id"
ACL_TYPE = PREFIX + "acl-type"
VSWITCH = PREFIX + "vswitch-id"
BACKEND_LABEL = PREFIX + "backend-label"
DRAIN = PREFIX + "connection-drain"
DRAIN_TIMEOUT = PREFIX + "connection-drain-timeout"
PROXY_PROTOCOL = PREFIX + "proxy-protocol"
BACKEND_TYPE = "service.beta.kubernetes.io/backend-type"
BACKEND_TYPES = ("ecs", "eni")
SCHEDULERS = ("rr", "wrr", "wlc")
LISTENER_PROTOCOLS = ("tcp", "udp", "http")
# a listener protocol → the Service port protocol it forwards to (its NodePort's)
PORT_PROTOCOL = {"tcp": "TCP", "http": "TCP", "udp": "UDP"}
# Nodes left out of every SLB: upstream's label and ACK's
EXCLUDE_LABELS = ("node.kubernetes.io/exclude-from-external-load-balancers", "service.alibabacloud.com/exclude-node")
# annotation → (slb.Listener argument, low, high) for the integer health-check settings
_HEALTH_INTS = {HEALTH_PORT: ("health_check_connect_port", 1, 65535), HEALTH_INTERVAL: ("health_check_interval", 1, 50),
                HEALTHY: ("healthy_threshold", 2, 10), UNHEALTHY: ("unhealthy_threshold", 2, 10)}


@dataclass(frozen=True)
class LbListener:
    port: int
    protocol: str  # tcp | udp | http
    node_port: int  # 0: none allocated (ENI backends need none)
    port_name: str = ""  # the Service port's name: its EndpointSlice ports carry it (ENI backends)
    target_port: int = 0  # a numeric targetPort (0: named, resolved from the EndpointSlices)


@dataclass(frozen=True)
class LbSpec:
    namespace: str
    name: str
    address_type: str
    scheduler: str
    spec: str
    lb_name: str
    listeners: tuple[LbListener, ...]
    source_ranges: tuple[str, ...] = ()
    persistence_timeout: int = 0
    uid: str = ""
    health: tuple[tuple[str, Any], ...] = ()  # slb.Listener health-check arguments from annotations
    acl: tuple[tuple[str, str], ...] = ()  # acl_status/acl_type/acl_id of an existing ACL from annotations
    vswitch_id: str | None = None
    backend_label: tuple[tuple[str, str], ...] = ()  # only Nodes with all these labels are backends
    drain_timeout: int = 0  # connection drain of the tcp and udp listeners (0: off)
    health_check_node_port: int = 0  # externalTrafficPolicy Local: kube-proxy's per-Service health port
    proxy_protocol: bool = False  # a PROXY v2 header on the tcp listeners
    backend_type: str = "ecs"  # ecs: the Nodes, on NodePorts; eni: the pods, on their ENIs

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def resource_name(self) -> str:
        return f"svc-{self.namespace}-{self.name}"


def _protocol_ports(where: str, text: str) -> dict[tuple[int, str], str]:
    """The annotation's entries: (port, Service port protocol) → listener protocol."""
    out: dict[tuple[int, str], str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        protocol, _, port = item.partition(":")
        if protocol not in LISTENER_PROTOCOLS or not port.isdigit():
            raise ValidationError(where, _field(PROTOCOL_PORT), f"{item!r} is not protocol:port with protocol "
                                  f"{', '.join(LISTENER_PROTOCOLS[:-1])} or {LISTENER_PROTOCOLS[-1]}")
        key = (int(port), PORT_PROTOCOL[protocol])
        if key in out:
            raise ValidationError(where, _field(PROTOCOL_PORT), f"port {port} is named twice for {key[1]}")
        out[key] = protocol
    return out


def _listeners(where: str, ports: list[Mapping[str, Any]], protocols: dict[tuple[int, str], str],
               eni: bool = False) -> tuple[LbListener, ...]:
    """A listener per Service port, of the annotation's protocol or the port's own, to the port's NodePort (with
    ENI backends: to the pods' target port)."""
    listeners = []
    for i, port in enumerate(ports):
        kind = str(port.get("protocol", "TCP"))
        if kind not in ("TCP", "UDP"):
            raise ValidationError(where, f"spec.ports[{i}].protocol", f"{kind}: acklab's SLB has tcp, udp and http "
                                  "listeners (no SCTP)")
        if not port.get("nodePort") and not eni:
            raise ValidationError(where, f"spec.ports[{i}].nodePort", "is not allocated (allocateLoadBalancerNodePorts"
                                  f" false needs ENI backends: {BACKEND_TYPE}: eni)")
        number = int(port["port"])
        target = port.get("targetPort", number)
        listeners.append(LbListener(number, protocols.get((number, kind), kind.lower()), int(port.get("nodePort") or 0),
                                    str(port.get("name") or ""), target if isinstance(target, int) else 0))
    for number, kind in sorted(set(protocols) - {(x.port, PORT_PROTOCOL[x.protocol]) for x in listeners}):
        if any(x.port == number for x in listeners):  # e.g. udp:53 for a TCP port 53
            raise ValidationError(where, _field(PROTOCOL_PORT), f"{protocols[(number, kind)]}:{number} needs a "
                                  f"{kind} port {number}; the Service's is not {kind}")
        raise ValidationError(where, _field(PROTOCOL_PORT), f"port {number} is not a port of the Service")
    return tuple(listeners)


def load_balancer_spec(service: Mapping[str, Any]) -> LbSpec | None:
    """What the CCM makes for one Service (with its NodePorts allocated); None unless type LoadBalancer."""
    spec = service.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return None
    meta = service.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta["name"])
    where = f"Service {namespace}/{name}"
    notes = meta.get("annotations") or {}
    address_type = notes.get(ADDRESS_TYPE, "internet")
    if address_type not in ("internet", "intranet"):
        raise ValidationError(where, f"metadata.annotations[{ADDRESS_TYPE}]",
                              f"{address_type!r} is not internet or intranet")
    scheduler = notes.get(SCHEDULER, "rr")
    if scheduler not in SCHEDULERS:
        raise ValidationError(where, f"metadata.annotations[{SCHEDULER}]",
                              f"{scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    persistence = str(notes.get(PERSISTENCE, "0"))
    if not persistence.isdigit() or int(persistence) > 3600:
        raise ValidationError(where, f"metadata.annotations[{PERSISTENCE}]", f"{persistence!r} is not 0-3600")
    backend_type = str(notes.get(BACKEND_TYPE, "ecs"))
    if backend_type not in BACKEND_TYPES:
        raise ValidationError(where, _field(BACKEND_TYPE), f"{backend_type!r} is not ecs or eni")
    eni = backend_type == "eni"
    protocols = _protocol_ports(where, str(notes.get(PROTOCOL_PORT, "")))
    listeners = _listeners(where, list(spec.get("ports") or []), protocols, eni)
    if int(persistence) and any(lst.protocol == "http" for lst in listeners):
        raise ValidationError(where, f"metadata.annotations[{PERSISTENCE}]", "is for tcp and udp listeners only")
    proxy = _on_off(where, notes, PROXY_PROTOCOL) == "on"
    if proxy and any(lst.protocol == "udp" for lst in listeners):
        raise ValidationError(where, _field(PROXY_PROTOCOL), "on: a PROXY header is not built for udp listeners "
                              "(acklab's tcp listeners with it run on HAProxy, which has no udp)")
    ranges = tuple(str(r).strip() for r in spec.get("loadBalancerSourceRanges") or () if str(r).strip())
    acl = _acl(where, notes)
    if acl and ranges:
        raise ValidationError(where, f"metadata.annotations[{ACL_ID}]", "and spec.loadBalancerSourceRanges both "
                              "set the listeners' ACL: use one")
    local = spec.get("externalTrafficPolicy") == "Local"
    lb = LbSpec(namespace, name, address_type, scheduler, str(notes.get(SPEC, "slb.s1.small")),
                str(notes.get(NAME, f"{namespace}-{name}")), listeners, ranges, int(persistence),
                uid=str(meta.get("uid") or ""), health=_health(where, notes), acl=acl,
                vswitch_id=notes.get(VSWITCH) or None, backend_label=_labels(where, notes.get(BACKEND_LABEL, "")),
                drain_timeout=_drain(where, notes),
                health_check_node_port=int(spec.get("healthCheckNodePort") or 0) if local and not eni else 0,
                proxy_protocol=proxy, backend_type=backend_type)
    check_listeners(lb)
    return lb


def _field(key: str) -> str:
    return f"metadata.annotations[{key}]"


def _int_note(where: str, notes: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    if key not in notes:
        return None
    text = str(notes[key]).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValidationError(where, _field(key), f"{notes[key]!r} is not a whole number {low}-{high}")
    return int(text)


def _on_off(where: str, notes: Mapping[str, Any], key: str) -> str | None:
    value = notes.get(key)
    if value is not None and value not in ("on", "off"):
        raise ValidationError(where, _field(key), f"{value!r} is not on or off")
    return value


def _health(where: str, notes: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """ACK's health-check annotations as slb.Listener arguments (only those given: the SLB's defaults stay)."""
    args: dict[str, Any] = {}
    flag = _on_off(where, notes, HEALTH_FLAG)
    if flag is not None:
        args["health_check"] = flag
    kind = notes.get(HEALTH_TYPE)
    if kind is not None:
        if kind not in ("tcp", "http"):
            raise ValidationError(where, _field(HEALTH_TYPE), f"{kind!r} is not tcp or http")
        args["health_check_type"] = kind
    for key, arg in ((HEALTH_URI, "health_check_uri"), (HEALTH_DOMAIN, "health_check_domain"),
                     (HEALTH_CODE, "health_check_http_code")):
        if key in notes:
            args[arg] = str(notes[key])
    for key, (arg, low, high) in _HEALTH_INTS.items():
        value = _int_note(where, notes, key, low, high)
        if value is not None:
            args[arg] = value
    # ACK names the check's timeout per type; the SLB has one
    timeout = _int_note(where, notes, HEALTH_TIMEOUT, 1, 300)
    connect = _int_note(where, notes, HEALTH_CONNECT_TIMEOUT, 1, 300)
    if timeout is not None or connect is not None:
        args["health_check_timeout"] = timeout if kind == "http" and timeout is not None else connect or timeout
    return tuple(sorted(args.items()))


def _acl(where: str, notes: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    status = _on_off(where, notes, ACL_STATUS)
    if status != "on":
        return ()
    acl_id, acl_type = notes.get(ACL_ID), notes.get(ACL_TYPE, "white")
    if not acl_id:
        raise ValidationError(where, _field(ACL_ID), "is required when acl-status is on")
    if acl_type not in ("white", "black"):
        raise ValidationError(where, _field(ACL_TYPE), f"{acl_type!r} is not white or black")
    return (("acl_id", str(acl_id)), ("acl_status", "on"), ("acl_type", str(acl_type)))


def _labels(where: str, text: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in filter(None, (part.strip() for part in str(text).split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValidationError(where, _field(BACKEND_LABEL), f"{item!r} is not key=value")
        out.append((key.strip(), value.strip()))
    return tuple(sorted(out))


def _drain(where: str, notes: Mapping[str, Any]) -> int:
    if _on_off(where, notes, DRAIN) != "on":
        return 0
    timeout = _int_note(where, notes, DRAIN_TIMEOUT, 10, 900)
    if timeout is None:
        raise ValidationError(where, _field(DRAIN_TIMEOUT), "is required when connection-drain is on")
    return timeout


def load_balancers(services: Iterable[Mapping[str, Any]]) -> list[LbSpec]:
    """Every LoadBalancer Service's SLB, validated before anything is created."""
    return [lb for lb in (load_balancer_spec(s) for s in services) if lb is not None]


# --- the controller on the API: Nodes → backends, listener arguments, steps from what exists to what is wanted ---

PLACEHOLDER_LB = "lb-00000000"  # validation of listener arguments before the SLB exists
HEALTHZ = "/healthz"  # kube-proxy's per-Service health check path on healthCheckNodePort


def node_instance_id(node: Mapping[str, Any], ecs_by_ip: Mapping[str, str]) -> str | None:
    """The ECS instance behind a Node: ``spec.providerID`` ``<region>.<instance id>`` (ACK's form), else the
    Node's InternalIP looked up among the lab's ECS primary addresses; None when neither names an instance."""
    provider = str((node.get("spec") or {}).get("providerID") or "")
    instance = provider.rpartition(".")[2]
    if instance.startswith("i-"):
        return instance
    for address in (node.get("status") or {}).get("addresses") or ():
        if address.get("type") == "InternalIP" and address.get("address") in ecs_by_ip:
            return ecs_by_ip[address["address"]]
    return None


def backend_servers(lb: LbSpec, nodes: Iterable[Mapping[str, Any]], ecs_by_ip: Mapping[str, str]) -> tuple[str, ...]:
    """The ECS ids of the Nodes the SLB forwards to: every Node with an instance, but those excluded by label
    (upstream's and ACK's) and, with ``...-backend-label``, those without the labels asked for."""
    found = set()
    for node in nodes:
        labels = (node.get("metadata") or {}).get("labels") or {}
        if any(key in labels for key in EXCLUDE_LABELS):
            continue
        if any(labels.get(key) != value for key, value in lb.backend_label):
            continue
        instance = node_instance_id(node, ecs_by_ip)
        if instance is not None:
            found.add(instance)
    return tuple(sorted(found))


def wanted_routes(nodes: Iterable[Mapping[str, Any]], ecs_by_ip: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """The route controller's table (Flannel's VPC-route mode): Node name → (its ``spec.podCIDR``, its ECS
    instance), for every Node that has both; the VPC then delivers each block to its node."""
    found = {}
    for node in nodes:
        cidr = (node.get("spec") or {}).get("podCIDR")
        instance = node_instance_id(node, ecs_by_ip)
        if cidr and instance:
            found[node["metadata"]["name"]] = (cidr, instance)
    return found


def route_changes(wanted: Mapping[str, tuple[str, str]], made: Mapping[str, tuple[str, str]],
                  present: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """(Nodes whose route goes, Nodes whose route is made): a route made for a Node gone or changed goes first;
    a wanted one is made when it was not, or is missing from the VPC (``present``: by Node name)."""
    delete = sorted(n for n, route in made.items() if wanted.get(n) != route)
    create = sorted(n for n, route in wanted.items() if made.get(n) != route or not present(n))
    return delete, create


def acl_of(lb_id: str) -> str:
    """The id of the ACL the controller makes for an SLB's source ranges: derived from the SLB's, so a restarted
    controller finds it."""
    return "acl-" + lb_id.partition("-")[2]


def listener_args(lb: LbSpec, listener: LbListener, acl_id: str | None = None,
                  backend_port: int | None = None) -> dict[str, Any]:
    """``slb.Listener`` arguments (netns/model/slb.py's names) of one Service port. ``acl_id``: the SLB's own
    ACL for ``loadBalancerSourceRanges``; ``backend_port``: the pods' port (ENI backends), else the NodePort."""
    args: dict[str, Any] = {"frontend_port": listener.port, "protocol": listener.protocol,
                            "backend_port": backend_port or listener.node_port, "scheduler": lb.scheduler}
    if lb.persistence_timeout:
        args["persistence_timeout"] = lb.persistence_timeout
    layer4 = listener.protocol in ("tcp", "udp")
    if lb.drain_timeout and layer4:  # ACK: for tcp and udp listeners only
        args.update(connection_drain="on", connection_drain_timeout=lb.drain_timeout)
    if lb.proxy_protocol and listener.protocol == "tcp":  # http listeners carry the client in X-Forwarded-For
        args["proxy_protocol_v2_enabled"] = True
    if lb.health_check_node_port and listener.protocol != "udp":
        # ETP Local: kube-proxy answers 200 on this port only where the Service has a ready local endpoint,
        # so the SLB takes the other nodes out; annotations still win. (A udp listener checks over udp only.)
        args.update(health_check="on", health_check_type="http", health_check_uri=HEALTHZ,
                    health_check_connect_port=lb.health_check_node_port)
    health = dict(lb.health)
    if listener.protocol == "udp":  # its check is udp: the annotations' http settings are not its
        health = {k: v for k, v in health.items() if k not in ("health_check_type", "health_check_uri",
                                                                "health_check_domain", "health_check_http_code")}
    args.update(health)
    if lb.source_ranges and acl_id:
        args.update(acl_status="on", acl_type="white", acl_id=acl_id)
    args.update(dict(lb.acl))
    return args


def check_listeners(lb: LbSpec) -> None:
    """The SLB's own validation of every listener, before anything is created (a bad annotation → no SLB)."""
    from netns.model import slb as model

    for listener in lb.listeners:
        port = listener.target_port or 1 if lb.backend_type == "eni" else None  # (a named one: known later)
        model.parse_listener(f"Service {lb.key}", PLACEHOLDER_LB,
                             listener_args(lb, listener, acl_of(PLACEHOLDER_LB), port))


@dataclass(frozen=True)
class ActualLb:
    """What exists of one Service's SLB (read from the realizations)."""

    lb_id: str
    name: str
    address: str
    address_type: str
    vswitch_id: str | None
    listeners: Mapping[tuple[str, int], Mapping[str, Any]]  # (protocol, port) → stored arguments
    backends: tuple[str, ...] | None  # server ids of the default server group; None: never set
    acl_entries: tuple[str, ...] | None  # the entries of the SLB's own ACL; None: no such ACL


@dataclass(frozen=True)
class Step:
    """One change through the realizations: ``op`` is create, delete, rename, acl, drop_acl, backends,
    put_listener or delete_listener; ``value`` its argument (a name, entries, server ids, listener arguments,
    or (protocol, port))."""

    op: str
    value: Any = None


def decide(lb: LbSpec | None, servers: tuple[str, ...], actual: ActualLb | None,
           vswitch_id: str | None = None, backend_ports: Mapping[int, int] | None = None) -> list[Step]:
    """The steps from ``actual`` to ``lb`` with ``servers`` as backends (``lb`` None: the Service wants no SLB).
    An SLB whose address type or vSwitch must change is made anew (its address is its namespace's leg).
    ``backend_ports``: ENI backends' port per Service port; a listener whose port is not known yet (a named target
    port, no endpoint) is left as it is."""
    if lb is None:
        return [] if actual is None else [Step("delete")]
    steps: list[Step] = []
    if actual is not None and (actual.address_type != lb.address_type
                               or (lb.address_type == "intranet" and vswitch_id and actual.vswitch_id != vswitch_id)):
        steps.append(Step("delete"))
        actual = None
    if actual is None:
        steps.append(Step("create"))
        actual = ActualLb("", lb.lb_name, "", lb.address_type, vswitch_id, {}, None, None)
    elif actual.name != lb.lb_name:
        steps.append(Step("rename", lb.lb_name))
    entries = tuple(sorted(lb.source_ranges))
    if entries and actual.acl_entries != entries:
        steps.append(Step("acl", entries))
    if actual.backends != servers:
        steps.append(Step("backends", servers))
    eni = lb.backend_type == "eni"
    ports = backend_ports or {}
    wanted = {(x.protocol, x.port): listener_args(lb, x, acl_of(actual.lb_id or PLACEHOLDER_LB) if entries else None,
                                                  ports.get(x.port))
              for x in lb.listeners if not eni or x.port in ports}
    for x in lb.listeners:  # an ENI listener whose port is not known yet: kept as it is, not deleted
        if eni and x.port not in ports and (x.protocol, x.port) in actual.listeners:
            wanted[(x.protocol, x.port)] = dict(actual.listeners[(x.protocol, x.port)])
    # the ones going first: a port may move from tcp to http
    steps += [Step("delete_listener", key) for key in sorted(actual.listeners) if key not in wanted]
    steps += [Step("put_listener", args) for key, args in sorted(wanted.items()) if actual.listeners.get(key) != args]
    if not entries and actual.acl_entries is not None:
        steps.append(Step("drop_acl"))  # after the listeners stopped using it
    return steps


# --- ENI backends (service.beta.kubernetes.io/backend-type: eni) ---------------------------------------------------

def eni_server(eni_id: str, ip: str) -> str:
    """An ENI backend as ``decide`` compares them: the ENI and the address on it (``ServerIp``)."""
    return f"{eni_id}/{ip}"


def parse_server(server: str) -> tuple[str, str | None]:
    """(server id, address or None) of a ``decide`` backend: an ECS or control plane id, or an ENI backend."""
    server_id, _, ip = server.partition("/")
    return server_id, ip or None


def eni_backends(lb: LbSpec, slices: Iterable[Mapping[str, Any]], eni_of: Mapping[str, str]
                 ) -> tuple[tuple[str, ...], dict[int, int]]:
    """The Service's ENI backends and each Service port's backend port, from its EndpointSlices: every ready
    endpoint address held by an ENI (``eni_of``: address → ENI id; others, e.g. pods on a Flannel bridge, are left
    out), and per listener the port its slices give for the Service port's name (else a numeric targetPort)."""
    servers: set[str] = set()
    ports: dict[int, int] = {x.port: x.target_port for x in lb.listeners if x.target_port}
    by_name = {x.port_name: x.port for x in lb.listeners}
    for piece in slices:
        for endpoint in piece.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            servers.update(eni_server(eni_of[a], a) for a in endpoint.get("addresses") or () if a in eni_of)
        for port in piece.get("ports") or ():
            name = str(port.get("name") or "")
            if name in by_name and port.get("port"):
                ports[by_name[name]] = int(port["port"])
    return tuple(sorted(servers)), ports
