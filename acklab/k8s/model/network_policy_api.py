"""NetworkPolicy from the Kubernetes API: API objects → the inputs of the policy compiler (pure).

The NetworkPolicy agent (``acklab.k8s.network_policy_agent``) keeps the objects it lists and watches in a
:class:`ClusterView` — NetworkPolicies (``networking.k8s.io/v1``), Calico NetworkPolicies and
GlobalNetworkPolicies (``projectcalico.org/v3``, custom resources), Namespaces and Pods, as the API returns them
(camelCase dicts) — and asks it for what ``network_policy.compile_node`` takes: the policies in evaluation order
and every pod of the cluster as an :class:`Endpoint` (peers select pods on any node; a node enforces for its own).

Objects of a list response carry no ``apiVersion``/``kind``: the watch an object came from says what it is.
Each policy is parsed on its own (and only again when its resourceVersion changes), so one policy the compiler
refuses is left out and reported, instead of stopping every other policy as a file of manifests would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from acklab.k8s.model.network_policy import CALICO_API, K8S_API, Endpoint, Policy, namespace_view, parse_policies
from acklab.k8s.model.objects import PROTOCOLS, ContainerPort
from acklab.k8s.realize.pod_network import host_ifname
from netns.model.errors import ValidationError

TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PolicyKind:
    """One of the three policy resources the agent watches."""

    api_version: str
    kind: str
    group: str
    plural: str
    namespaced: bool = True


K8S_POLICY = PolicyKind(K8S_API, "NetworkPolicy", "networking.k8s.io", "networkpolicies")
CALICO_POLICY = PolicyKind(CALICO_API, "NetworkPolicy", "projectcalico.org", "networkpolicies")
CALICO_GLOBAL = PolicyKind(CALICO_API, "GlobalNetworkPolicy", "projectcalico.org", "globalnetworkpolicies", False)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def object_key(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta["name"])


def policy_key(kind: PolicyKind, obj: Mapping[str, Any]) -> str:
    """Unique over the three kinds (a Kubernetes and a Calico policy may share a namespace and a name)."""
    return f"{kind.group}/{kind.kind}/{object_key(obj)}"


def policy_manifest(kind: PolicyKind, obj: Mapping[str, Any]) -> dict[str, Any]:
    """An API object as the compiler's manifest: apiVersion/kind from its watch, name, namespace and spec (the
    server's metadata — uid, managedFields, annotations — is not the compiler's business)."""
    meta = _meta(obj)
    metadata = {"name": meta.get("name")}
    if kind.namespaced:
        metadata["namespace"] = meta.get("namespace", "default")
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": metadata, "spec": obj.get("spec") or {}}


def parse_policy(kind: PolicyKind, obj: Mapping[str, Any]) -> Policy:
    """One API object → its Policy; ValidationError (naming the object, field and reason) when refused."""
    (policy,) = parse_policies([policy_manifest(kind, obj)])
    return policy


def container_ports(spec: Mapping[str, Any]) -> tuple[ContainerPort, ...]:
    """A pod's declared ports (named ports resolve against these); ports of other protocols are skipped."""
    ports = []
    for container in spec.get("containers") or ():
        for port in container.get("ports") or ():
            protocol = port.get("protocol", "TCP")
            if "containerPort" in port and protocol in PROTOCOLS:
                ports.append(ContainerPort(int(port["containerPort"]), protocol, port.get("name", "")))
    return tuple(ports)


def endpoint_from_pod(obj: Mapping[str, Any], namespace_labels: Mapping[str, Mapping[str, str]]) -> Endpoint | None:
    """A pod as policies see it, or None while it has no address of its own: not yet given one, finished, or on
    the host's network (Calico makes no workload endpoint for those; policies never select them)."""
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    ip = status.get("podIP")
    if not ip or spec.get("hostNetwork") or status.get("phase") in TERMINAL_PHASES:
        return None
    namespace, name = meta["namespace"], meta["name"]
    return Endpoint(namespace, name, dict(meta.get("labels") or {}), ip, spec.get("nodeName") or "",
                    container_ports(spec), host_ifname(namespace, name),
                    namespace_view(namespace, namespace_labels.get(namespace)))


def endpoint_facts(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a pod policies depend on (status conditions, probes and heartbeats do not): a pod event that
    leaves this alone needs no new computation."""
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    return (meta.get("namespace"), meta.get("name"), tuple(sorted((meta.get("labels") or {}).items())),
            status.get("podIP"), spec.get("nodeName"), bool(spec.get("hostNetwork")),
            status.get("phase") in TERMINAL_PHASES, container_ports(spec))


@dataclass
class Parsed:
    resource_version: str
    policy: Policy | None
    error: ValidationError | None


@dataclass
class ClusterView:
    """What the agent knows of the cluster: raw objects by key, as listed and watched."""

    policies: dict[str, tuple[PolicyKind, dict[str, Any]]] = field(default_factory=dict)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name → labels
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    _parsed: dict[str, Parsed] = field(default_factory=dict)

    # -- updates: each says whether anything policies depend on changed --

    def replace_policies(self, kind: PolicyKind, items: Iterable[Mapping[str, Any]]) -> bool:
        """A (re)list of one kind: its objects become exactly ``items``."""
        before = {k: v for k, v in self.policies.items() if v[0] == kind}
        for key in before:
            del self.policies[key]
        for obj in items:
            self.policies[policy_key(kind, obj)] = (kind, dict(obj))
        after = {k: v for k, v in self.policies.items() if v[0] == kind}
        return _versions(before) != _versions(after)

    def policy_event(self, kind: PolicyKind, event: str, obj: Mapping[str, Any]) -> bool:
        key = policy_key(kind, obj)
        if event == "DELETED":
            return self.policies.pop(key, None) is not None
        old = self.policies.get(key)
        self.policies[key] = (kind, dict(obj))
        return old is None or old[1].get("spec") != obj.get("spec")

    def replace_namespaces(self, items: Iterable[Mapping[str, Any]]) -> bool:
        new = {_meta(o)["name"]: dict(_meta(o).get("labels") or {}) for o in items}
        changed, self.namespaces = new != self.namespaces, new
        return changed

    def namespace_event(self, event: str, obj: Mapping[str, Any]) -> bool:
        name = _meta(obj)["name"]
        if event == "DELETED":
            return self.namespaces.pop(name, None) is not None
        labels = dict(_meta(obj).get("labels") or {})
        changed = self.namespaces.get(name) != labels
        self.namespaces[name] = labels
        return changed

    def replace_pods(self, items: Iterable[Mapping[str, Any]]) -> bool:
        before = {k: endpoint_facts(v) for k, v in self.pods.items()}
        self.pods = {object_key(o): dict(o) for o in items}
        return before != {k: endpoint_facts(v) for k, v in self.pods.items()}

    def pod_event(self, event: str, obj: Mapping[str, Any]) -> bool:
        key = object_key(obj)
        old = self.pods.get(key)
        if event == "DELETED":
            self.pods.pop(key, None)
            return old is not None
        self.pods[key] = dict(obj)
        return old is None or endpoint_facts(old) != endpoint_facts(obj)

    # -- the compiler's inputs --

    def parsed_policies(self) -> tuple[list[Policy], dict[str, ValidationError]]:
        """Every policy the compiler accepts, in evaluation order, and the refused ones (key → why). A policy is
        parsed again only when its resourceVersion changed."""
        policies, refused = [], {}
        for key, (kind, obj) in self.policies.items():
            version = str(_meta(obj).get("resourceVersion", ""))
            parsed = self._parsed.get(key)
            if parsed is None or parsed.resource_version != version or not version:
                try:
                    parsed = Parsed(version, parse_policy(kind, obj), None)
                except ValidationError as exc:
                    parsed = Parsed(version, None, exc)
                self._parsed[key] = parsed
            if parsed.policy is not None:
                policies.append(parsed.policy)
            elif parsed.error is not None:
                refused[key] = parsed.error
        for gone in set(self._parsed) - set(self.policies):
            del self._parsed[gone]
        return sorted(policies, key=lambda p: p.sort_key), refused

    def endpoints(self) -> list[Endpoint]:
        found = (endpoint_from_pod(obj, self.namespaces) for obj in self.pods.values())
        return sorted((e for e in found if e is not None), key=lambda e: e.key)


def _versions(policies: Mapping[str, tuple[PolicyKind, Mapping[str, Any]]]) -> dict[str, Any]:
    return {key: obj.get("spec") for key, (_, obj) in policies.items()}
