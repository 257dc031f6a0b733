"""What a lab consists of, read from the kernel (the lab's namespaces and the facts on their links)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from netns.kernel.namespace import Namespace
from netns.model import addressing
from netns.model.names import mark
from netns.model.security_group import Rule
from netns.realize import slb
from netns.realize.security_group import load_groups
from netns.realize.vpc import routers


@dataclass
class EcsView:
    id: str
    name: str
    private_ip: str
    vswitch_id: str
    eni_id: str
    netns: str
    security_groups: list[str] = field(default_factory=list)


@dataclass
class SecurityGroupView:
    id: str
    vpc_id: str
    type: str
    inner_access_policy: str
    rules: list[dict] = field(default_factory=list)


@dataclass
class VSwitchView:
    id: str
    cidr_block: str
    zone_id: str
    gateway_ip: str


@dataclass
class VpcView:
    id: str
    cidr_block: str
    netns: str
    vswitches: list[VSwitchView] = field(default_factory=list)


@dataclass
class PodView:
    namespace: str
    name: str
    labels: dict[str, str]
    ip: str
    netns: str
    node: str
    ports: list[str] = field(default_factory=list)


@dataclass
class SlbListenerView:
    id: str
    frontend_port: int
    protocol: str
    backend_port: int | None
    scheduler: str
    backends: list[dict] = field(default_factory=list)  # server_id, address, port, weight, status (Alibaba's)


@dataclass
class SlbView:
    id: str
    name: str
    address: str
    address_type: str
    vswitch_id: str | None
    vpc_id: str | None
    netns: str
    listeners: list[SlbListenerView] = field(default_factory=list)


@dataclass
class ServicePortView:
    name: str
    port: int
    protocol: str
    target_port: int | str
    node_port: int | None = None


@dataclass
class ServiceView:
    namespace: str
    name: str
    type: str
    cluster_ip: str
    ports: list[ServicePortView] = field(default_factory=list)
    load_balancer: str | None = None  # the SLB's address (status.loadBalancer.ingress[0].ip)


@dataclass
class LabView:
    lab: str
    vpcs: list[VpcView] = field(default_factory=list)
    ecs: list[EcsView] = field(default_factory=list)
    security_groups: list[SecurityGroupView] = field(default_factory=list)
    pods: list[PodView] = field(default_factory=list)
    slbs: list[SlbView] = field(default_factory=list)
    services: list[ServiceView] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def read_lab(lab: str) -> LabView:
    view = LabView(lab)
    for router in routers(lab):
        cidr = router.cidr()
        vpc = VpcView(router.vpc_id, str(cidr) if cidr else "", router.namespace.name)
        for vswitch in router.vswitches():
            net = vswitch.cidr()
            vpc.vswitches.append(VSwitchView(vswitch.vswitch_id, str(net) if net else "", vswitch.zone_id() or "",
                                             str(addressing.gateway(net)) if net else ""))
            for eni_id, facts in vswitch.enis().items():
                if facts.get("device") == "0" and "instance" in facts:
                    groups = [g for g in facts.get("sg", "").split(",") if g]
                    view.ecs.append(EcsView(facts["instance"], facts.get("name", ""), facts.get("ip", ""),
                                            vswitch.vswitch_id, eni_id, mark(lab) + facts["instance"], groups))
        view.vpcs.append(vpc)
        for group in load_groups(lab, router.vpc_id).values():
            view.security_groups.append(SecurityGroupView(group.sg_id, group.vpc_id, group.group_type,
                                                          group.inner_access_policy,
                                                          [asdict(rule) for rule in sorted(group.rules,
                                                                                           key=Rule.order)]))
    view.ecs.sort(key=lambda e: (e.name, e.id))
    view.pods = read_pods(lab)
    view.slbs = read_slbs(lab)
    view.services = read_services(lab)
    return view


def read_services(lab: str) -> list[ServiceView]:
    """The Services as last programmed on the nodes (allocations and SLB address filled in)."""
    from acklab.k8s.apiserver import load_services

    found = []
    for svc in load_services(lab):
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [{}]
        ports = [ServicePortView(str(p.get("name") or ""), int(p["port"]), p.get("protocol", "TCP"),
                                 p.get("targetPort", p["port"]), p.get("nodePort"))
                 for p in spec.get("ports") or []]
        found.append(ServiceView(str(meta.get("namespace") or "default"), str(meta["name"]),
                                 spec.get("type", "ClusterIP"), str(spec.get("clusterIP", "")), ports,
                                 ingress[0].get("ip")))
    return sorted(found, key=lambda s: (s.namespace, s.name))


def read_pods(lab: str) -> list[PodView]:
    """The lab's pods: recorded by the pod network and still present on the kernel (their namespace)."""
    from acklab.k8s.pods import load_records

    return [PodView(r.pod.namespace, r.pod.name, dict(r.pod.labels), r.ip, r.netns, r.node,
                    [f"{p.port}/{p.protocol}" for p in r.pod.ports])
            for r in sorted(load_records(lab).values(), key=lambda r: r.pod.key) if Namespace(r.netns).exists()]


def read_slbs(lab: str) -> list[SlbView]:
    """Each SLB with its listeners and, per listener, each backend's health as HAProxy reports it."""
    found = []
    for instance in slb.slbs(lab):
        state = instance.read()
        if state is None:
            continue
        view = SlbView(instance.lb_id, state.name, state.address, state.address_type, state.vswitch_id,
                       state.vpc_id, instance.namespace.name)
        health = instance.backend_health()
        for listener, _ in slb.load_listeners(lab, instance.lb_id):
            view.listeners.append(SlbListenerView(listener.listener_id, listener.frontend_port, listener.protocol,
                                                  listener.backend_port, listener.scheduler,
                                                  health.get(listener.listener_id, [])))
        found.append(view)
    return found


def resolve_target(lab: str, target: str) -> str:
    """A namespace name from an ECS name, an instance id, ``namespace/pod`` or a namespace name of the lab."""
    if target.startswith(mark(lab)):
        return target
    if "/" in target:
        for pod in read_pods(lab):
            if target == f"{pod.namespace}/{pod.name}":
                return pod.netns
        raise LookupError(f"no pod {target!r} in lab {lab} (see `acklab status --lab {lab}`)")
    view = read_lab(lab)
    for ecs in view.ecs:
        if target in (ecs.id, ecs.name):
            return ecs.netns
    for vpc in view.vpcs:
        if target == vpc.id:
            return vpc.netns
    for lb in view.slbs:
        if target in (lb.id, lb.name):
            return lb.netns
    if target == "internet":
        return slb.InternetSegment(lab).namespace.name
    raise LookupError(f"no ECS, VPC or SLB named {target!r} in lab {lab} (see `acklab status --lab {lab}`)")
