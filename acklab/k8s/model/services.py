"""Service manifests + pods → kube-proxy's view of one node (pure; no kernel, no API server).

What the API server and the EndpointSlice controller would do, reduced to what kube-proxy consumes:

- ``type``: ClusterIP, NodePort, LoadBalancer get rules; ``clusterIP: None`` (headless) and ExternalName
  get none.
- Endpoints: the pods of the Service's namespace whose labels contain the selector and that have an IP;
  ``ready`` from the pod (``publishNotReadyAddresses`` counts every such pod as ready). ``targetPort`` by
  number, or by name resolved per pod through its container ports of the same protocol (a pod without
  that port name is no endpoint of that port). Omitted ``targetPort`` is ``port``.
- ClusterIPs from the service CIDR (ACK's default 172.21.0.0/20): an explicit ``clusterIP`` must lie in it and
  be free; an address allocated before is kept; new Services take the lowest free address (the first one is
  the ``kubernetes`` Service's, as in every cluster). What kube-apiserver's allocator guarantees: stable, unique.
- NodePorts in 30000-32767: explicit ``nodePort`` honoured; ports allocated before (``previous``) kept;
  new ones take the lowest free port; a clash is a ValidationError naming the Service and field.
  ``healthCheckNodePort`` for LoadBalancer + ``externalTrafficPolicy: Local`` likewise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from acklab.k8s.model.kube_proxy_rules import (
    AFFINITY_CLIENT_IP,
    AFFINITY_NONE,
    DEFAULT_STICKY_SECONDS,
    PROTOCOLS,
    Endpoint,
    ServicePortInfo,
    validate,
)
from acklab.k8s.model.objects import ContainerPort
from netns.model.errors import ValidationError

NODE_PORT_RANGE = (30000, 32767)
SERVICE_CIDR = "172.21.0.0/20"  # ACK's default service CIDR
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")

Manifest = Mapping[str, Any]


@dataclass(frozen=True)
class PodEndpoint:
    """A pod as the endpoint controller lists it in a Service's EndpointSlice: its address, node and readiness
    beside its labels and container ports (the pod itself is ``acklab.k8s.model.objects.Pod``)."""

    name: str
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None
    node: str | None = None
    ready: bool = True
    terminating: bool = False
    ports: tuple[ContainerPort, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels), "ip": self.ip,
                "node": self.node, "ready": self.ready, "terminating": self.terminating,
                "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in self.ports]}

    @classmethod
    def of(cls, pod: Any, ip: str | None, node: str | None) -> PodEndpoint:
        """From a model pod (``acklab.k8s.model.objects.Pod``: namespace, name, labels, ports) and where it runs."""
        return cls(pod.name, pod.namespace, dict(pod.labels), ip, node, ports=tuple(pod.ports))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PodEndpoint:
        """Accept ``{name, namespace, labels, ip, node, ready, terminating, ports: [{name, port, protocol}]}``
        (``containerPort`` is accepted for ``port``)."""
        ports = tuple(
            ContainerPort(
                name=str(p.get("name", "")),
                port=int(p["port"] if "port" in p else p["containerPort"]),
                protocol=str(p.get("protocol", "TCP")),
            )
            for p in d.get("ports", d.get("containerPorts", ()))
        )
        return cls(
            name=str(d["name"]),
            namespace=str(d.get("namespace", "default")),
            labels=dict(d.get("labels") or {}),
            ip=d.get("ip"),
            node=d.get("node"),
            ready=bool(d.get("ready", True)),
            terminating=bool(d.get("terminating", False)),
            ports=ports,
        )


@dataclass(frozen=True)
class Resolved:
    """The service ports for one node, plus every allocation (persist them for the next run)."""

    service_ports: tuple[ServicePortInfo, ...]
    node_ports: dict[str, int]
    cluster_ips: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Manifest access with errors that name the Service and the field.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Svc:
    namespace: str
    name: str
    manifest: Manifest

    @property
    def resource(self) -> str:
        return f"Service {self.namespace}/{self.name}"

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.manifest.get("spec") or {}

    @property
    def type(self) -> str:
        return str(self.spec.get("type", "ClusterIP"))

    @property
    def headless(self) -> bool:
        return self.spec.get("clusterIP") == "None"

    @property
    def proxied(self) -> bool:
        return self.type != "ExternalName" and not self.headless

    @property
    def ports(self) -> list[Mapping[str, Any]]:
        return list(self.spec.get("ports") or [])

    def error(self, fld: str, reason: str) -> ValidationError:
        return ValidationError(self.resource, fld, reason)


def _wrap(services: Iterable[Manifest]) -> list[_Svc]:
    out: dict[tuple[str, str], _Svc] = {}
    for m in services:
        meta = m.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise ValidationError("Service", "metadata.name", "is required")
        svc = _Svc(str(meta.get("namespace") or "default"), str(name), m)
        if (svc.namespace, svc.name) in out:
            raise svc.error("metadata.name", "a Service of this name is given twice")
        out[(svc.namespace, svc.name)] = svc
    return [out[k] for k in sorted(out)]


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _validate(svc: _Svc) -> None:
    if svc.type not in SERVICE_TYPES:
        raise svc.error("spec.type", f"{svc.type!r} is not one of {', '.join(SERVICE_TYPES)}")
    if not svc.proxied:
        return
    cluster_ip = svc.spec.get("clusterIP")
    if cluster_ip is not None and cluster_ip != "":
        try:
            ipaddress.IPv4Address(str(cluster_ip))
        except ValueError:
            raise svc.error("spec.clusterIP", f"{cluster_ip!r} is not an IPv4 address (or 'None')") from None
    ports = svc.ports
    if not ports:
        raise svc.error("spec.ports", "at least one port is required")
    names: set[str] = set()
    for i, p in enumerate(ports):
        where = f"spec.ports[{i}]"
        pname = str(p.get("name") or "")
        if len(ports) > 1 and not pname:
            raise svc.error(f"{where}.name", "is required when a Service has more than one port")
        if pname in names:
            raise svc.error(f"{where}.name", f"{pname!r} is used by another port of this Service")
        names.add(pname)
        if not _is_port(p.get("port")):
            raise svc.error(f"{where}.port", f"{p.get('port')!r} is not a port number (1-65535)")
        proto = p.get("protocol", "TCP")
        if proto not in PROTOCOLS:
            raise svc.error(f"{where}.protocol", f"{proto!r} is not one of {', '.join(PROTOCOLS)}")
        target = p.get("targetPort")
        if target is not None and not (_is_port(target) or (isinstance(target, str) and target)):
            raise svc.error(f"{where}.targetPort", f"{target!r} is neither a port number nor a port name")
        if p.get("nodePort") and svc.type == "ClusterIP":
            raise svc.error(f"{where}.nodePort", "may not be used when type is 'ClusterIP'")
    affinity = svc.spec.get("sessionAffinity", AFFINITY_NONE)
    if affinity not in (AFFINITY_NONE, AFFINITY_CLIENT_IP):
        raise svc.error("spec.sessionAffinity", f"{affinity!r} is not None or ClientIP")
    for fld in ("externalTrafficPolicy", "internalTrafficPolicy"):
        value = svc.spec.get(fld, "Cluster")
        if value not in ("Cluster", "Local"):
            raise svc.error(f"spec.{fld}", f"{value!r} is not Cluster or Local")


# --------------------------------------------------------------------------------------------------
# NodePort allocation.
# --------------------------------------------------------------------------------------------------


def node_port_key(namespace: str, name: str, port_name: str, protocol: str) -> str:
    return f"{namespace}/{name}:{port_name}/{protocol}"


def health_check_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}/healthCheckNodePort"


def _wants_node_ports(svc: _Svc) -> bool:
    if svc.type == "NodePort":
        return True
    return svc.type == "LoadBalancer" and svc.spec.get("allocateLoadBalancerNodePorts", True) is not False


def _needs_health_check(svc: _Svc) -> bool:
    return svc.type == "LoadBalancer" and svc.spec.get("externalTrafficPolicy") == "Local"


@dataclass
class _Request:
    svc: _Svc
    key: str
    fld: str
    explicit: int | None
    protocol: str = "TCP"


def _requests(svcs: list[_Svc]) -> list[_Request]:
    out: list[_Request] = []
    for svc in svcs:
        if not svc.proxied:
            continue
        for i, p in enumerate(svc.ports):
            explicit = p.get("nodePort") or None
            if not (_wants_node_ports(svc) or explicit):
                continue
            key = node_port_key(svc.namespace, svc.name, str(p.get("name") or ""), p.get("protocol", "TCP"))
            out.append(_Request(svc, key, f"spec.ports[{i}].nodePort", explicit, p.get("protocol", "TCP")))
        if _needs_health_check(svc):
            explicit = svc.spec.get("healthCheckNodePort") or None
            out.append(_Request(svc, health_check_key(svc.namespace, svc.name), "spec.healthCheckNodePort", explicit))
    return out


def allocate_node_ports(
    services: Iterable[Manifest],
    previous: Mapping[str, int] | None = None,
    port_range: tuple[int, int] = NODE_PORT_RANGE,
) -> dict[str, int]:
    """Map every NodePort-needing port (see :func:`node_port_key`) to its node port, stably."""
    svcs = _wrap(services)
    for svc in svcs:
        _validate(svc)
    return _allocate(_requests(svcs), dict(previous or {}), port_range)


def _allocate(requests: list[_Request], previous: dict[str, int], port_range: tuple[int, int]) -> dict[str, int]:
    low, high = port_range
    owner: dict[int, _Request] = {}
    result: dict[str, int] = {}

    def take(req: _Request, port: int) -> None:
        holder = owner.get(port)
        # One Service may use one node port for the same port number over two protocols (TCP+UDP).
        if holder is not None and (holder.svc is not req.svc or holder.protocol == req.protocol):
            raise req.svc.error(req.fld, f"node port {port} is already allocated to {holder.svc.resource}")
        owner[port] = req
        result[req.key] = port

    for req in requests:  # explicit ports first: they win over earlier automatic allocations
        if req.explicit is None:
            continue
        if not isinstance(req.explicit, int) or not low <= req.explicit <= high:
            raise req.svc.error(req.fld, f"{req.explicit!r} is outside the node port range {low}-{high}")
        take(req, req.explicit)
    pending: list[_Request] = []
    for req in requests:  # then what was allocated before, if still free
        if req.explicit is not None:
            continue
        port = previous.get(req.key)
        if port is not None and low <= port <= high and port not in owner:
            take(req, port)
        else:
            pending.append(req)
    free = (p for p in range(low, high + 1) if p not in owner)
    for req in pending:
        port = next(free, None)
        if port is None:
            raise req.svc.error(req.fld, f"no free node port left in {low}-{high}")
        take(req, port)
    return result


# --------------------------------------------------------------------------------------------------
# ClusterIP allocation.
# --------------------------------------------------------------------------------------------------


def service_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def allocate_cluster_ips(
    services: Iterable[Manifest],
    previous: Mapping[str, str] | None = None,
    service_cidr: str = SERVICE_CIDR,
) -> dict[str, str]:
    """``namespace/name`` → ClusterIP for every proxied Service, stably (see the module's docstring)."""
    svcs = _wrap(services)
    for svc in svcs:
        _validate(svc)
    return _allocate_ips(svcs, dict(previous or {}), service_cidr)


def _allocate_ips(svcs: list[_Svc], previous: dict[str, str], service_cidr: str) -> dict[str, str]:
    try:
        block = ipaddress.IPv4Network(service_cidr)
    except ValueError:
        raise ValidationError("kube-apiserver", "service-cluster-ip-range", f"{service_cidr!r} is not a CIDR") from None
    reserved = {block.network_address, block.network_address + 1, block.broadcast_address}  # .1: `kubernetes`
    owner: dict[ipaddress.IPv4Address, _Svc] = {}
    result: dict[str, str] = {}
    proxied = [svc for svc in svcs if svc.proxied]

    def take(svc: _Svc, ip: ipaddress.IPv4Address) -> None:
        owner[ip] = svc
        result[service_key(svc.namespace, svc.name)] = str(ip)

    for svc in proxied:  # explicit addresses first
        if not svc.spec.get("clusterIP"):
            continue
        ip = ipaddress.IPv4Address(str(svc.spec["clusterIP"]))
        if ip not in block or ip in reserved:
            raise svc.error("spec.clusterIP", f"{ip} is not an assignable address of the service CIDR {block}")
        if ip in owner:
            raise svc.error("spec.clusterIP", f"{ip} is already allocated to {owner[ip].resource}")
        take(svc, ip)
    pending = []
    for svc in proxied:
        if svc.spec.get("clusterIP"):
            continue
        before = previous.get(service_key(svc.namespace, svc.name))
        ip = ipaddress.IPv4Address(before) if before else None
        if ip is not None and ip in block and ip not in reserved and ip not in owner:
            take(svc, ip)
        else:
            pending.append(svc)
    free = (ip for ip in block.hosts() if ip not in reserved and ip not in owner)
    for svc in pending:
        ip = next(free, None)
        if ip is None:
            raise svc.error("spec.clusterIP", f"no free address left in the service CIDR {block}")
        take(svc, ip)
    return result


@dataclass(frozen=True)
class Allocations:
    """What kube-apiserver's allocators hold: ClusterIP per Service, NodePort per port (see the key functions)."""

    cluster_ips: dict[str, str] = field(default_factory=dict)
    node_ports: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"cluster_ips": dict(sorted(self.cluster_ips.items())),
                "node_ports": dict(sorted(self.node_ports.items()))}

    @staticmethod
    def from_dict(data: Mapping[str, Any] | None) -> Allocations:
        data = data or {}
        return Allocations({str(k): str(v) for k, v in (data.get("cluster_ips") or {}).items()},
                           {str(k): int(v) for k, v in (data.get("node_ports") or {}).items()})


def allocate(services: Iterable[Manifest], previous: Allocations | None = None,
             service_cidr: str = SERVICE_CIDR) -> Allocations:
    """ClusterIPs and NodePorts for these Services, keeping what ``previous`` allocated where possible."""
    svcs = _wrap(services)
    for svc in svcs:
        _validate(svc)
    previous = previous or Allocations()
    return Allocations(_allocate_ips(svcs, dict(previous.cluster_ips), service_cidr),
                       _allocate(_requests(svcs), dict(previous.node_ports), NODE_PORT_RANGE))


# --------------------------------------------------------------------------------------------------
# Endpoints and the service ports.
# --------------------------------------------------------------------------------------------------


def _selected(svc: _Svc, pods: list[PodEndpoint]) -> list[PodEndpoint]:
    selector = svc.spec.get("selector") or {}
    if not selector:  # no selector: endpoints are managed by hand, not by the controller
        return []
    return [
        pod
        for pod in pods
        if pod.namespace == svc.namespace and pod.ip and all(pod.labels.get(k) == v for k, v in selector.items())
    ]


def _target_port(port: Mapping[str, Any], pod: PodEndpoint) -> int | None:
    target = port.get("targetPort", port["port"])
    if isinstance(target, int):
        return target
    protocol = port.get("protocol", "TCP")
    for cp in pod.ports:
        if cp.name == target and cp.protocol == protocol:
            return cp.port
    return None


def _endpoints(svc: _Svc, port: Mapping[str, Any], pods: list[PodEndpoint], node: str) -> tuple[Endpoint, ...]:
    publish_all = bool(svc.spec.get("publishNotReadyAddresses"))
    out = []
    for pod in pods:
        target = _target_port(port, pod)
        if target is None or pod.ip is None:
            continue
        ready = (pod.ready or publish_all) and not pod.terminating
        serving = pod.ready or publish_all
        out.append(Endpoint(pod.ip, target, ready, serving, pod.terminating, pod.node == node))
    return tuple(out)


def _service_ports(svc: _Svc, pods: list[PodEndpoint], node: str, node_ports: Mapping[str, int],
                   cluster_ip: str) -> list[ServicePortInfo]:
    spec = svc.spec
    selected = _selected(svc, pods)
    externally_accessible_type = svc.type in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))
    affinity = spec.get("sessionAffinity", AFFINITY_NONE)
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
        "timeoutSeconds", DEFAULT_STICKY_SECONDS
    )
    lb_ips: tuple[str, ...] = ()
    if svc.type == "LoadBalancer":
        ingress = ((svc.manifest.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb_ips = tuple(i["ip"] for i in ingress if i.get("ip"))
    health = node_ports.get(health_check_key(svc.namespace, svc.name), 0) if _needs_health_check(svc) else 0
    out = []
    for p in svc.ports:
        pname, proto = str(p.get("name") or ""), p.get("protocol", "TCP")
        out.append(
            ServicePortInfo(
                namespace=svc.namespace,
                name=svc.name,
                port_name=pname,
                protocol=proto,
                cluster_ip=cluster_ip,
                port=int(p["port"]),
                node_port=node_ports.get(node_port_key(svc.namespace, svc.name, pname, proto), 0),
                endpoints=_endpoints(svc, p, selected, node),
                session_affinity=affinity,
                sticky_max_age_seconds=int(timeout),
                external_policy_local=externally_accessible_type and spec.get("externalTrafficPolicy") == "Local",
                internal_policy_local=spec.get("internalTrafficPolicy") == "Local",
                external_ips=tuple(spec.get("externalIPs") or ()),
                load_balancer_ips=lb_ips if svc.type == "LoadBalancer" else (),
                load_balancer_source_ranges=tuple(
                    s.strip() for s in spec.get("loadBalancerSourceRanges") or () if s.strip()
                ),
                health_check_node_port=health,
            )
        )
    return out


def resolve(
    services: Iterable[Manifest],
    pods: Iterable[PodEndpoint | Mapping[str, Any]],
    node: str,
    previous_node_ports: Mapping[str, int] | None = None,
    previous_cluster_ips: Mapping[str, str] | None = None,
    service_cidr: str = SERVICE_CIDR,
) -> Resolved:
    """kube-proxy's input on ``node`` for these Services and pods; validates everything first.

    Allocation is deterministic: every node given the same Services and previous allocations computes the
    same ClusterIPs and NodePorts (the lab's stand-in for reading them from the API server).
    """
    svcs = _wrap(services)
    for svc in svcs:
        _validate(svc)
    pod_list = [p if isinstance(p, PodEndpoint) else PodEndpoint.from_dict(p) for p in pods]
    node_ports = _allocate(_requests(svcs), dict(previous_node_ports or {}), NODE_PORT_RANGE)
    cluster_ips = _allocate_ips(svcs, dict(previous_cluster_ips or {}), service_cidr)
    ports: list[ServicePortInfo] = []
    for svc in svcs:
        if svc.proxied:
            ports += _service_ports(svc, pod_list, node, node_ports,
                                    cluster_ips[service_key(svc.namespace, svc.name)])
    for sp in ports:
        validate(sp)  # addresses and the like: fail before anything is compiled or applied
    return Resolved(tuple(ports), node_ports, cluster_ips)
