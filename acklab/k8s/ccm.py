"""The cloud controller manager's share of LoadBalancer Services: one SLB per Service, as ACK's CCM makes it.

For every Service of ``type: LoadBalancer`` the CCM creates a CLB (here: ``slb.ApplicationLoadBalancer``),
a listener per Service port whose backend port is the port's NodePort, and adds the cluster's nodes as backend
servers; the SLB's address becomes the Service's ``status.loadBalancer.ingress``. Annotations (ACK's names):

- ``service.beta.kubernetes.io/alibaba-cloud-loadbalancer-address-type``: ``internet`` (default) | ``intranet``
  (on the nodes' vSwitch);
- ``...-scheduler``: ``rr`` (default) | ``wrr`` | ``wlc``;
- ``...-protocol-port``: e.g. ``"http:80"`` — the listener protocol of a port (default ``tcp``);
- ``...-spec``: the instance spec (default ``slb.s1.small``); ``...-name``: the instance name;
- ``...-persistence-timeout``: source-address persistence of TCP listeners (seconds).

``spec.loadBalancerSourceRanges`` becomes a whitelist ACL on the listeners (kube-proxy enforces the same ranges
for traffic that reaches the nodes for the LB address). Left out: ENI backends (pods attached directly, ACK's
Terway option), reusing an existing SLB by id, HTTPS listeners from certificate ids, UDP (HAProxy has none).

:func:`load_balancers` is pure (Services with allocations → what to create); :func:`create` makes the Pulumi
resources in a program.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
SCHEDULERS = ("rr", "wrr", "wlc")
LISTENER_PROTOCOLS = ("tcp", "http")


@dataclass(frozen=True)
class LbListener:
    port: int
    protocol: str  # tcp | http
    node_port: int


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

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def resource_name(self) -> str:
        return f"svc-{self.namespace}-{self.name}"


def _protocol_ports(where: str, text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        protocol, _, port = item.partition(":")
        if protocol not in LISTENER_PROTOCOLS or not port.isdigit():
            raise ValidationError(where, f"metadata.annotations[{PROTOCOL_PORT}]",
                                  f"{item!r} is not protocol:port with protocol {' or '.join(LISTENER_PROTOCOLS)}")
        out[int(port)] = protocol
    return out


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
    protocols = _protocol_ports(where, str(notes.get(PROTOCOL_PORT, "")))
    listeners = []
    for i, port in enumerate(spec.get("ports") or []):
        if port.get("protocol", "TCP") != "TCP":
            raise ValidationError(where, f"spec.ports[{i}].protocol", f"{port.get('protocol')}: acklab's SLB "
                                  "(HAProxy) has TCP listeners only")
        if not port.get("nodePort"):
            raise ValidationError(where, f"spec.ports[{i}].nodePort", "is not allocated (allocateLoadBalancerNodePorts"
                                  " false needs ENI backends, which acklab does not build)")
        listeners.append(LbListener(int(port["port"]), protocols.get(int(port["port"]), "tcp"),
                                    int(port["nodePort"])))
    unknown = set(protocols) - {lst.port for lst in listeners}
    if unknown:
        raise ValidationError(where, f"metadata.annotations[{PROTOCOL_PORT}]",
                              f"port {sorted(unknown)[0]} is not a port of the Service")
    if int(persistence) and any(lst.protocol != "tcp" for lst in listeners):
        raise ValidationError(where, f"metadata.annotations[{PERSISTENCE}]", "is for tcp listeners only")
    ranges = tuple(str(r).strip() for r in spec.get("loadBalancerSourceRanges") or () if str(r).strip())
    return LbSpec(namespace, name, address_type, scheduler, str(notes.get(SPEC, "slb.s1.small")),
                  str(notes.get(NAME, f"{namespace}-{name}")), tuple(listeners), ranges, int(persistence))


def load_balancers(services: Iterable[Mapping[str, Any]]) -> list[LbSpec]:
    """Every LoadBalancer Service's SLB, validated before anything is created."""
    return [lb for lb in (load_balancer_spec(s) for s in services) if lb is not None]


def plan(lab: str, services: list[Mapping[str, Any]]) -> list[LbSpec]:
    """The SLBs of a lab's Services, with NodePorts from the lab's API-server state; validated before the
    allocations are kept."""
    from acklab.k8s import apiserver

    if not services:
        return []

    def check(allocations: Any) -> None:
        load_balancers(apiserver.with_status(services, allocations))

    return load_balancers(apiserver.with_status(services, apiserver.allocate(lab, services, check)))


def create(specs: Iterable[LbSpec], nodes: Mapping[str, Any], vswitch_id: Any) -> dict[str, Any]:
    """Pulumi resources for ``specs`` (call from a program): SLB, ACL for source ranges, the nodes as backends,
    a listener per port. ``nodes`` maps node name → ``ecs.Instance``; ``vswitch_id`` is where intranet SLBs
    take their address. Returns ``namespace/name`` → the SLB's address (an Output)."""
    import pulumi

    from netns import slb

    addresses: dict[str, Any] = {}
    previous = None
    for lb in sorted(specs, key=lambda spec: spec.key):
        intranet = lb.address_type == "intranet"
        # one after the other, in Service order: the allocated addresses are the same on every `pulumi up`
        opts = pulumi.ResourceOptions(depends_on=[previous]) if previous is not None else None
        instance = slb.ApplicationLoadBalancer(lb.resource_name, load_balancer_name=lb.lb_name,
                                               address_type=lb.address_type, load_balancer_spec=lb.spec,
                                               vswitch_id=vswitch_id if intranet else None, opts=opts)
        previous = instance
        slb.BackendServer(f"{lb.resource_name}-nodes", load_balancer_id=instance.id,
                          backend_servers=[{"server_id": node.id, "weight": 100} for _, node in sorted(nodes.items())])
        acl: dict[str, Any] = {}
        if lb.source_ranges:
            whitelist = slb.Acl(f"{lb.resource_name}-acl", name=f"{lb.lb_name}-source-ranges")
            for n, cidr in enumerate(lb.source_ranges):
                slb.AclEntryAttachment(f"{lb.resource_name}-acl-{n}", acl_id=whitelist.id, entry=cidr)
            acl = {"acl_status": "on", "acl_type": "white", "acl_id": whitelist.id}
        for listener in lb.listeners:
            extra = {"persistence_timeout": lb.persistence_timeout} if lb.persistence_timeout else {}
            slb.Listener(f"{lb.resource_name}-{listener.port}", load_balancer_id=instance.id,
                         frontend_port=listener.port, protocol=listener.protocol, backend_port=listener.node_port,
                         scheduler=lb.scheduler, **acl, **extra)
        addresses[lb.key] = instance.address
    return addresses
