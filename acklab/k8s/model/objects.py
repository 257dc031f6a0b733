"""Kubernetes objects from standard manifests, validated, expanded into pods and scheduled onto nodes. Pure.

Understood kinds: Namespace, Pod, Deployment (realized now); Service, Ingress, NetworkPolicy (parsed, kept in the
cluster for the issues that realize them). Errors name the object, the file and the field
(``Deployment 'default/web' (web.yaml): spec.replicas: must be an integer >= 0``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from netns.model.errors import ValidationError

# RFC 1123 label (namespaces) and subdomain (pod, deployment names), as Kubernetes validates them.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")  # IANA_SVC_NAME, 15 chars max
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
PROTOCOLS = ("TCP", "UDP", "SCTP")
REALIZED_KINDS = {"v1": ("Namespace", "Pod"), "apps/v1": ("Deployment",)}
LATER_KINDS = {"v1": ("Service",), "networking.k8s.io/v1": ("Ingress", "NetworkPolicy")}
LATER_KINDS["projectcalico.org/v3"] = ("NetworkPolicy", "GlobalNetworkPolicy")  # kept in network_policies
# Read by the ingress controller (acklab.k8s.model.ingress): TLS Secrets and (cluster-scoped) IngressClasses.
INGRESS_KINDS = {"v1": ("Secret",), "networking.k8s.io/v1": ("IngressClass",)}


@dataclass(frozen=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: str = ""


@dataclass(frozen=True)
class Probe:
    """A container's readiness or liveness probe, as the node agent runs it (``acklab.k8s.model.kubelet``)."""

    container: str
    kind: str  # "readiness" | "liveness"
    action: str  # "httpGet" | "tcpSocket" | "exec"
    port: int = 0  # httpGet, tcpSocket (a named port is resolved when the pod is read)
    path: str = "/"  # httpGet
    command: tuple[str, ...] = ()  # exec
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "command": list(self.command)}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Probe:
        return Probe(**{**data, "command": tuple(data.get("command", ()))})


@dataclass(frozen=True)
class Container:
    name: str
    image: str = ""


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[ContainerPort, ...] = ()
    node_name: str | None = None
    owner: str = ""  # "Deployment/web" for pods a Deployment made
    # Read from the API server by the node agent (empty for pods from manifest files):
    uid: str = ""
    containers: tuple[Container, ...] = ()
    probes: tuple[Probe, ...] = ()
    grace_seconds: int = 30  # spec.terminationGracePeriodSeconds
    shutdown_delay: int = 0  # agnhost netexec --delay-shutdown: how long it serves on after SIGTERM

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "namespace": self.namespace, "name": self.name, "labels": dict(self.labels),
            "ports": [{"port": p.port, "protocol": p.protocol, "name": p.name} for p in self.ports],
            "node_name": self.node_name, "owner": self.owner}
        if self.uid:  # only pods from the API server carry these (records of pods from a pod plan stay as they were)
            data.update(uid=self.uid, containers=[[c.name, c.image] for c in self.containers],
                        probes=[p.to_dict() for p in self.probes], grace_seconds=self.grace_seconds,
                        shutdown_delay=self.shutdown_delay)
        return data

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Pod:
        return Pod(data["namespace"], data["name"], dict(data.get("labels") or {}),
                   tuple(ContainerPort(p["port"], p["protocol"], p.get("name", "")) for p in data.get("ports", ())),
                   data.get("node_name"), data.get("owner", ""), data.get("uid", ""),
                   tuple(Container(*c) for c in data.get("containers", ())),
                   tuple(Probe.from_dict(p) for p in data.get("probes", ())),
                   int(data.get("grace_seconds", 30)), int(data.get("shutdown_delay", 0)))


@dataclass(frozen=True)
class Deployment:
    namespace: str
    name: str
    replicas: int
    selector: Mapping[str, str]
    template: Pod  # namespace/name of the template are the Deployment's

    def pods(self) -> list[Pod]:
        """The Deployment's pods: ``<name>-<template hash>-<index hash>``, stable across runs.

        Like Kubernetes' pod-template-hash, a changed template gives every pod a new name (a rollout);
        a changed replica count keeps the names of the pods that stay.
        """
        spec = json.dumps({"labels": dict(self.template.labels), "node": self.template.node_name,
                           "ports": [(p.port, p.protocol, p.name) for p in self.template.ports]}, sort_keys=True)
        template_hash = _hash(spec, 10)
        return [Pod(self.namespace, f"{self.name}-{template_hash}-{_hash(f'{self.name}/{i}', 5)}",
                    self.template.labels, self.template.ports, self.template.node_name, f"Deployment/{self.name}")
                for i in range(self.replicas)]


@dataclass(frozen=True)
class Cluster:
    """Desired Kubernetes state of a lab."""

    namespaces: tuple[str, ...] = ("default",)
    pods: tuple[Pod, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    services: tuple[Mapping[str, Any], ...] = ()
    ingresses: tuple[Mapping[str, Any], ...] = ()
    network_policies: tuple[Mapping[str, Any], ...] = ()
    secrets: tuple[Mapping[str, Any], ...] = ()
    ingress_classes: tuple[Mapping[str, Any], ...] = ()
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # name → metadata.labels

    def all_pods(self) -> list[Pod]:
        """Bare pods and the Deployments' pods, sorted by namespace/name."""
        pods = list(self.pods) + [p for d in self.deployments for p in d.pods()]
        return sorted(pods, key=lambda p: p.key)


def _hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class _Obj:
    """Field access into one manifest object, raising errors that name the object and the field path."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, path: str, reason: str) -> ValidationError:
        return ValidationError(self.what, path, reason)

    def mapping(self, value: Any, path: str, required: bool = False) -> Mapping[str, Any]:
        if value is None and not required:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, "is required (a mapping)" if value is None else "must be a mapping")
        return value

    def seq(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, "must be a list")
        return value

    def labels(self, value: Any, path: str) -> dict[str, str]:
        result = {}
        for key, val in self.mapping(value, path).items():
            name = str(key).rsplit("/", 1)[-1]
            if not _LABEL_NAME.match(name):
                raise self.fail(f"{path}.{key}", "is not a valid label key")
            if not isinstance(val, str) or not _LABEL_VALUE.match(val):
                raise self.fail(f"{path}.{key}", f"{val!r} is not a valid label value (a string of up to 63 "
                                                 "letters, digits, '-', '_', '.')")
            result[str(key)] = val
        return result


def _name(obj: _Obj, value: Any, path: str, pattern: re.Pattern[str], limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise obj.fail(path, "is required")
    if len(value) > limit or not pattern.match(value):
        raise obj.fail(path, f"{value!r} must be a lower-case RFC 1123 name of at most {limit} characters")
    return value


def _ports(obj: _Obj, containers: list[Any], path: str) -> tuple[ContainerPort, ...]:
    ports: list[ContainerPort] = []
    seen: set[tuple[int, str]] = set()
    names: set[str] = set()
    for ci, container in enumerate(containers):
        container = obj.mapping(container, f"{path}[{ci}]", required=True)
        for pi, raw in enumerate(obj.seq(container.get("ports"), f"{path}[{ci}].ports")):
            where = f"{path}[{ci}].ports[{pi}]"
            raw = obj.mapping(raw, where, required=True)
            number = raw.get("containerPort")
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
                raise obj.fail(f"{where}.containerPort", f"{number!r} must be an integer 1-65535")
            protocol = raw.get("protocol", "TCP")
            if protocol not in PROTOCOLS:
                raise obj.fail(f"{where}.protocol", f"{protocol!r} must be one of {', '.join(PROTOCOLS)}")
            name = raw.get("name", "")
            if name:
                if not isinstance(name, str) or not _PORT_NAME.match(name):
                    raise obj.fail(f"{where}.name", f"{name!r} must be a lower-case IANA service name "
                                                    "(at most 15 characters, at least one letter)")
                if name in names:
                    raise obj.fail(f"{where}.name", f"{name!r} is declared twice")
                names.add(name)
            if (number, protocol) in seen:
                raise obj.fail(f"{where}.containerPort", f"{number}/{protocol} is declared twice")
            seen.add((number, protocol))
            ports.append(ContainerPort(number, protocol, name))
    return tuple(ports)


def _pod_spec(obj: _Obj, spec: Any, path: str) -> tuple[tuple[ContainerPort, ...], str | None]:
    spec = obj.mapping(spec, path, required=True)
    containers = obj.seq(spec.get("containers"), f"{path}.containers")
    if not containers:
        raise obj.fail(f"{path}.containers", "at least one container is required")
    node = spec.get("nodeName")
    if node is not None and (not isinstance(node, str) or not node):
        raise obj.fail(f"{path}.nodeName", "must be a node name")
    return _ports(obj, containers, f"{path}.containers"), node


def _metadata(obj: _Obj, doc: Mapping[str, Any], namespaced: bool) -> tuple[str, str, dict[str, str]]:
    meta = obj.mapping(doc.get("metadata"), "metadata", required=True)
    name = _name(obj, meta.get("name"), "metadata.name", _DNS_SUBDOMAIN if namespaced else _DNS_LABEL,
                 253 if namespaced else 63)
    namespace = meta.get("namespace", "default") if namespaced else ""
    if namespaced:
        _name(obj, namespace, "metadata.namespace", _DNS_LABEL, 63)
    return namespace, name, obj.labels(meta.get("labels"), "metadata.labels")


def _describe(doc: Mapping[str, Any], source: str) -> str:
    kind = doc.get("kind", "object")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    name = meta.get("name", "?")
    if kind != "Namespace":
        name = f"{meta.get('namespace', 'default')}/{name}"
    return f"{kind} {name!r} ({source})"


def _pod(doc: Mapping[str, Any], source: str) -> Pod:
    obj = _Obj(_describe(doc, source))
    namespace, name, labels = _metadata(obj, doc, True)
    if len(name) > 63:  # a pod's name becomes its hostname
        raise obj.fail("metadata.name", f"{name!r} is longer than 63 characters")
    ports, node = _pod_spec(obj, doc.get("spec"), "spec")
    return Pod(namespace, name, labels, ports, node)


def _deployment(doc: Mapping[str, Any], source: str) -> Deployment:
    obj = _Obj(_describe(doc, source))
    namespace, name, _labels = _metadata(obj, doc, True)
    if len(name) > 46:  # leaves room for "-<template hash>-<index hash>" within 63
        raise obj.fail("metadata.name", f"{name!r} is longer than 46 characters (pod names must fit in 63)")
    spec = obj.mapping(doc.get("spec"), "spec", required=True)
    replicas = spec.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise obj.fail("spec.replicas", f"{replicas!r} must be an integer >= 0")
    selector = obj.mapping(spec.get("selector"), "spec.selector", required=True)
    if set(selector) - {"matchLabels"}:
        raise obj.fail("spec.selector", "only matchLabels is supported")
    match = obj.labels(selector.get("matchLabels"), "spec.selector.matchLabels")
    if not match:
        raise obj.fail("spec.selector.matchLabels", "is required (an empty selector would select every pod)")
    template = obj.mapping(spec.get("template"), "spec.template", required=True)
    tmeta = obj.mapping(template.get("metadata"), "spec.template.metadata")
    labels = obj.labels(tmeta.get("labels"), "spec.template.metadata.labels")
    missing = {k: v for k, v in match.items() if labels.get(k) != v}
    if missing:
        raise obj.fail("spec.template.metadata.labels", f"must carry the selector's labels {missing}")
    ports, node = _pod_spec(obj, template.get("spec"), "spec.template.spec")
    return Deployment(namespace, name, replicas, match, Pod(namespace, name, labels, ports, node))


# What every API server has from its start (kube-apiserver's system namespaces): manifests use them undeclared.
BUILT_IN_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def parse_documents(docs: Iterable[tuple[Any, str]]) -> Cluster:
    """Build a cluster from (document, source) pairs; raise the first ValidationError met."""
    namespaces = dict.fromkeys(BUILT_IN_NAMESPACES, "built in")
    namespace_labels: dict[str, dict[str, str]] = {}
    pods: dict[str, Pod] = {}
    deployments: dict[str, Deployment] = {}
    later: dict[str, list[Mapping[str, Any]]] = {"Service": [], "Ingress": [], "NetworkPolicy": [],
                                                 "Secret": [], "IngressClass": []}
    for doc, source in docs:
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise ValidationError(f"document ({source})", "", "must be a mapping with apiVersion and kind")
        what = _describe(doc, source)
        api, kind = doc.get("apiVersion"), doc.get("kind")
        if kind == "List":
            nested = _Obj(what).seq(doc.get("items"), "items")
            sub = parse_documents((item, source) for item in nested)
            namespaces.update({n: source for n in sub.namespaces})
            namespace_labels.update({n: dict(v) for n, v in sub.namespace_labels.items()})
            pods.update({p.key: p for p in sub.pods})
            deployments.update({f"{d.namespace}/{d.name}": d for d in sub.deployments})
            later["Service"] += sub.services
            later["Ingress"] += sub.ingresses
            later["NetworkPolicy"] += sub.network_policies
            later["Secret"] += sub.secrets
            later["IngressClass"] += sub.ingress_classes
            continue
        if kind in REALIZED_KINDS.get(api, ()):
            if kind == "Namespace":
                _, name, ns_labels = _metadata(_Obj(what), doc, False)
                namespaces[name] = source
                namespace_labels[name] = ns_labels
            elif kind == "Pod":
                pod = _pod(doc, source)
                if pod.key in pods:
                    raise ValidationError(what, "metadata.name", f"pod {pod.key} is defined twice")
                pods[pod.key] = pod
            else:
                deploy = _deployment(doc, source)
                key = f"{deploy.namespace}/{deploy.name}"
                if key in deployments:
                    raise ValidationError(what, "metadata.name", f"deployment {key} is defined twice")
                deployments[key] = deploy
        elif kind in LATER_KINDS.get(api, ()):
            _metadata(_Obj(what), doc, True)
            later["NetworkPolicy" if kind == "GlobalNetworkPolicy" else kind].append(doc)
        elif kind in INGRESS_KINDS.get(api, ()):
            later[kind].append(_ingress_kind(doc, source, kind))
        else:
            raise ValidationError(what, "apiVersion/kind", f"{api}/{kind} is not supported (known: v1 Namespace, Pod, "
                                  "Service, Secret; apps/v1 Deployment; networking.k8s.io/v1 Ingress, IngressClass, "
                                  "NetworkPolicy; projectcalico.org/v3 NetworkPolicy, GlobalNetworkPolicy)")
    cluster = Cluster(tuple(sorted(namespaces)), tuple(pods.values()), tuple(deployments.values()),
                      tuple(later["Service"]), tuple(later["Ingress"]), tuple(later["NetworkPolicy"]),
                      tuple(later["Secret"]), tuple(later["IngressClass"]), namespace_labels)
    _check_cluster(cluster)
    return cluster


def _ingress_kind(doc: Mapping[str, Any], source: str, kind: str) -> Mapping[str, Any]:
    """A Secret (data base64, stringData plain; kubernetes.io/tls needs tls.crt and tls.key) or an IngressClass
    (cluster-scoped, spec.controller required), validated as the API server would, kept as the manifest."""
    import base64
    import binascii

    obj = _Obj(_describe(doc, source) if kind == "Secret" else f"IngressClass {_meta_name(doc)!r} ({source})")
    if kind == "IngressClass":
        _metadata(obj, doc, False)
        spec = obj.mapping(doc.get("spec"), "spec", required=True)
        if not isinstance(spec.get("controller"), str) or not spec["controller"]:
            raise obj.fail("spec.controller", "is required (e.g. k8s.io/ingress-nginx)")
        return doc
    _metadata(obj, doc, True)
    keys = set()
    for fld in ("data", "stringData"):
        for key, value in obj.mapping(doc.get(fld), fld).items():
            if not isinstance(value, str):
                raise obj.fail(f"{fld}.{key}", "must be a string")
            if fld == "data":
                try:
                    base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise obj.fail(f"data.{key}", "is not valid base64") from None
            keys.add(key)
    if doc.get("type") == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in keys:
                raise obj.fail(f"data.{key}", "is required for type kubernetes.io/tls")
    return doc


def _meta_name(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata")
    return str(meta.get("name", "?")) if isinstance(meta, Mapping) else "?"


def _check_cluster(cluster: Cluster) -> None:
    known = set(cluster.namespaces)
    seen: dict[str, str] = {}
    for pod in cluster.all_pods():
        what = f"Pod {pod.key!r}" if not pod.owner else f"{pod.owner.split('/')[0]} " \
            f"'{pod.namespace}/{pod.owner.split('/', 1)[1]}'"
        if pod.namespace not in known:
            raise ValidationError(what, "metadata.namespace", f"namespace {pod.namespace!r} is not defined "
                                  "(add a Namespace manifest)")
        if pod.key in seen:
            raise ValidationError(f"Pod {pod.key!r}", "metadata.name", f"clashes with a pod of {seen[pod.key]}")
        seen[pod.key] = pod.owner or "a Pod manifest"
    for doc in (*cluster.services, *cluster.ingresses, *cluster.network_policies, *cluster.secrets):
        namespace = doc["metadata"].get("namespace", "default")
        if namespace not in known:
            raise ValidationError(_describe(doc, "manifests"), "metadata.namespace",
                                  f"namespace {namespace!r} is not defined (add a Namespace manifest)")


def load_manifests(folder: str | Path) -> Cluster:
    """Every ``*.yaml`` / ``*.yml`` file of ``folder`` (sorted), each possibly holding several documents."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValidationError(f"manifests {folder}", "path", "is not a directory")
    docs: list[tuple[Any, str]] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            docs += [(doc, path.name) for doc in yaml.safe_load_all(path.read_text())]
        except yaml.YAMLError as exc:
            raise ValidationError(f"manifest {path.name}", "yaml", str(exc).replace("\n", " ")) from None
    return parse_documents(docs)


def schedule(pods: Iterable[Pod], nodes: Iterable[str], current: Mapping[str, str] | None = None) -> dict[str, str]:
    """Pod key → node. ``nodeName`` wins; a running pod stays where it is (Kubernetes never moves pods);
    the rest go, in name order, to the node with the fewest pods (ties: node name order). Deterministic.
    """
    nodes = sorted(set(nodes))
    current = current or {}
    placed: dict[str, str] = {}
    load = dict.fromkeys(nodes, 0)
    pods = sorted(pods, key=lambda p: p.key)
    for pod in pods:
        if pod.node_name is not None:
            if pod.node_name not in load:
                raise ValidationError(f"Pod {pod.key!r}", "spec.nodeName",
                                      f"node {pod.node_name!r} is not a node of the cluster ({', '.join(nodes)})")
            placed[pod.key] = pod.node_name
        elif current.get(pod.key) in load:
            placed[pod.key] = current[pod.key]
        else:
            continue
        load[placed[pod.key]] += 1
    for pod in pods:
        if pod.key in placed:
            continue
        if not nodes:
            raise ValidationError(f"Pod {pod.key!r}", "spec.nodeName", "the cluster has no node to run it on")
        node = min(nodes, key=lambda n: (load[n], n))
        placed[pod.key] = node
        load[node] += 1
    return placed
