"""What a lab consists of, read from the kernel (the lab's namespaces and the facts on their links)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from acklab.k8s import api_view
from netns.kernel.namespace import Namespace
from netns.model import addressing
from netns.model.names import mark
from netns.model.security_group import Rule
from netns.realize import alias_addresses, slb
from netns.realize.control_plane import control_planes, kubeconfig_path
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
class EniView:
    """A secondary ENI; ``owner`` is ``terway`` for the ones the node agent made (in no Pulumi state)."""

    id: str
    vswitch_id: str
    primary_ip: str
    secondary_ips: str  # comma-separated, as the generic status table prints it
    instance: str
    device: str
    owner: str


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
    status: str = ""  # the API's phase (Running, Pending, Terminating); empty in a lab without an API server


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
class NodeView:
    """A Kubernetes Node as the API server has it (labs with a control plane)."""

    name: str
    status: str  # Ready | NotReady | Unknown, with ",SchedulingDisabled" when cordoned (kubectl's words)
    internal_ip: str
    instance_id: str  # from spec.providerID <region>.<instance id>, as ACK sets it
    zone: str
    instance_type: str


@dataclass
class LabView:
    lab: str
    vpcs: list[VpcView] = field(default_factory=list)
    ecs: list[EcsView] = field(default_factory=list)
    enis: list[EniView] = field(default_factory=list)
    security_groups: list[SecurityGroupView] = field(default_factory=list)
    pods: list[PodView] = field(default_factory=list)
    slbs: list[SlbView] = field(default_factory=list)
    services: list[ServiceView] = field(default_factory=list)
    nodes: list[NodeView] = field(default_factory=list)  # from the API server, when the lab has one
    api: str = ""  # the API server's address, or why it did not answer; empty without a control plane

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
                elif "ip" in facts and eni_id.startswith("eni-"):  # not an SLB's, NAT gateway's or cluster's port
                    view.enis.append(EniView(eni_id, vswitch.vswitch_id, facts["ip"], ",".join(alias_addresses(facts)),
                                             facts.get("instance", ""), facts.get("device", ""),
                                             facts.get("owner", "")))
        view.vpcs.append(vpc)
        for group in load_groups(lab, router.vpc_id).values():
            view.security_groups.append(SecurityGroupView(group.sg_id, group.vpc_id, group.group_type,
                                                          group.inner_access_policy,
                                                          [asdict(rule) for rule in sorted(group.rules,
                                                                                           key=Rule.order)]))
    view.ecs.sort(key=lambda e: (e.name, e.id))
    view.enis.sort(key=lambda e: (e.instance, e.device, e.id))
    view.pods = read_pods(lab)
    view.slbs = read_slbs(lab)
    _read_api(lab, view)
    return view


def _read_api(lab: str, view: LabView) -> None:
    """With a control plane, the cluster's Nodes, pods and Services are the API's (pods joined with the kernel's
    namespaces); if it does not answer, the kernel's view stays and ``api`` says why."""
    kubeconfig = kubeconfig_path(lab)
    if not control_planes(lab) or not kubeconfig.exists():
        return
    cluster = api_view.read(str(kubeconfig))
    view.api = f"{cluster.server} (not answering: {cluster.error})" if cluster.error else cluster.server
    if cluster.error:
        return
    kernel = {f"{p.namespace}/{p.name}": p for p in view.pods}
    view.nodes = sorted((node_view(obj) for obj in cluster.nodes), key=lambda n: n.name)
    pods = sorted((pod_view(obj) for obj in cluster.pods), key=lambda p: (p.namespace, p.name))
    for pod in pods:  # where each lives on the kernel; "-": not (yet) on a node (Pending, over the ENI quota)
        on_kernel = kernel.get(f"{pod.namespace}/{pod.name}")
        pod.netns = on_kernel.netns if on_kernel is not None else "-"
    listed = {f"{p.namespace}/{p.name}" for p in pods}
    # pods the kernel has and the API does not (left by a node agent): shown too
    view.pods = pods + [dataclasses.replace(p, status="-") for key, p in sorted(kernel.items()) if key not in listed]
    view.services = sorted((service_view(obj) for obj in cluster.services), key=lambda s: (s.namespace, s.name))


# --- Kubernetes objects (dictionaries, as the API or `kubectl get -o json` has them) → views; pure ----------------

def _condition(obj: Mapping[str, Any], kind: str) -> str | None:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def node_view(obj: Mapping[str, Any]) -> NodeView:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    labels = meta.get("labels") or {}
    ready = {"True": "Ready", "False": "NotReady"}.get(_condition(obj, "Ready") or "", "Unknown")
    if spec.get("unschedulable"):
        ready += ",SchedulingDisabled"
    internal = [a["address"] for a in status.get("addresses") or () if a.get("type") == "InternalIP"]
    provider = str(spec.get("providerID") or "")  # "<region>.<instance id>"
    instance = provider.rsplit(".", 1)[-1] if provider else ""
    return NodeView(meta["name"], ready, internal[0] if internal else "", instance,
                    labels.get("topology.kubernetes.io/zone", ""), labels.get("node.kubernetes.io/instance-type", ""))


def pod_view(obj: Mapping[str, Any]) -> PodView:
    """A pod as the API has it (its namespace on the kernel is not known here: ``-``)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ports = [f"{p['containerPort']}/{p.get('protocol', 'TCP')}"
             for c in spec.get("containers") or () for p in c.get("ports") or ()]
    phase = "Terminating" if meta.get("deletionTimestamp") else str(status.get("phase") or "Pending")
    return PodView(meta["namespace"], meta["name"], dict(meta.get("labels") or {}), str(status.get("podIP") or "-"),
                   "-", str(spec.get("nodeName") or "-"), ports, phase)


def service_view(obj: Mapping[str, Any]) -> ServiceView:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [{}]
    ports = [ServicePortView(str(p.get("name") or ""), int(p["port"]), p.get("protocol", "TCP"),
                             p.get("targetPort", p["port"]), p.get("nodePort"))
             for p in spec.get("ports") or ()]
    return ServiceView(str(meta.get("namespace") or "default"), str(meta["name"]), spec.get("type", "ClusterIP"),
                       str(spec.get("clusterIP") or ""), ports, ingress[0].get("ip"))


def read_pods(lab: str) -> list[PodView]:
    """The lab's pods: recorded by the pod network and still present on the kernel (their namespace)."""
    from acklab.k8s.realize.pod_network import load_records

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
