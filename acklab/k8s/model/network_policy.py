"""NetworkPolicy: Kubernetes (networking.k8s.io/v1) and Calico (projectcalico.org/v3) policies → a model, a
reference evaluator, and per-node iptables + ipset rules in Felix's layout. Pure.

One model serves both APIs, the way Calico itself sees them: a Kubernetes NetworkPolicy is a Calico policy of
``order`` 1000 in the default tier whose rules all ``Allow``. For one endpoint and one direction, the policies
that select it (and list that direction in their types) are evaluated in (order, name) order; the first rule
that matches decides: Allow → allowed, Deny → dropped, Pass → skip the rest of the tier (→ the namespace
profile, which allows), Log → log and go on. If policies applied but none decided, the packet is dropped (the
end-of-tier drop that gives Kubernetes' "selected pods are isolated"). An endpoint no policy selects is allowed
(profile). A connection needs the source's egress and the destination's ingress; replies pass (conntrack).

The compiler writes, for one node: ``cali-FORWARD`` → ``cali-from-wl-dispatch`` / ``cali-to-wl-dispatch`` →
``cali-fw-<iface>`` / ``cali-tw-<iface>`` per local pod → ``cali-po-<hash>`` / ``cali-pi-<hash>`` per policy,
with ipsets ``cali40s:`` (pods a selector picks), ``cali40n:`` (CIDRs, ``except`` as ``nomatch`` entries) and
``cali40p:`` (pods' named ports, ip,proto:port). Marks: 0x10000 = accepted by a policy, 0x20000 = passed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from acklab.k8s.model.calico import SelectorError, parse_selector
from acklab.k8s.model.objects import PROTOCOLS, ContainerPort
from netns.model.errors import ValidationError

K8S_API = "networking.k8s.io/v1"
CALICO_API = "projectcalico.org/v3"
K8S_ORDER = 1000.0  # Calico gives every Kubernetes NetworkPolicy this order
NO_ORDER = float("inf")  # a Calico policy without order comes last
ACTIONS = ("Allow", "Deny", "Pass", "Log")
CALICO_PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMP")
ACCEPT_MARK, PASS_MARK = 0x10000, 0x20000
CHAIN_PREFIX = "cali-"
SET_PREFIX = "cali40"
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")
_PORT_RANGE = re.compile(r"^(\d+):(\d+)$")
Net = ipaddress.IPv4Network


# --- endpoints ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """A pod as policies see it."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    ip: str
    node: str = ""
    ports: tuple[ContainerPort, ...] = ()
    ifname: str = ""  # its host-side veth
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def calico_labels(self) -> dict[str, str]:
        return {**self.labels, "projectcalico.org/namespace": self.namespace,
                "projectcalico.org/orchestrator": "k8s"}

    def named_port(self, name: str, protocol: str) -> int | None:
        for port in self.ports:
            if port.name == name and port.protocol == protocol:
                return port.port
        return None


def namespace_view(name: str, labels: Mapping[str, str] | None) -> dict[str, str]:
    """A namespace's labels with the ones Kubernetes and Calico add."""
    return {**(labels or {}), "kubernetes.io/metadata.name": name, "projectcalico.org/name": name}


# --- the model ---------------------------------------------------------------------------------------------------

EndpointFn = Callable[[Endpoint], bool]


@dataclass(frozen=True)
class Peer:
    """The remote side of a rule: pods a selector picks (``key`` names the selection) and/or addresses."""

    key: str = ""  # "" = no pod constraint
    select: EndpointFn | None = None
    nets: tuple[Net, ...] = ()  # any of these (empty: any address)
    excepts: tuple[Net, ...] = ()
    not_nets: tuple[Net, ...] = ()

    def matches(self, ip: str, endpoint: Endpoint | None) -> bool:
        if self.select is not None and (endpoint is None or not self.select(endpoint)):
            return False
        address = ipaddress.IPv4Address(ip)
        if self.nets and not any(address in n for n in self.nets):
            return False
        if any(address in n for n in self.excepts):
            return False
        return not any(address in n for n in self.not_nets)


@dataclass(frozen=True)
class PortMatch:
    protocol: str | None  # None: any protocol
    ranges: tuple[tuple[int, int], ...] = ()  # any of these (empty: any port)
    named: str = ""

    def matches(self, protocol: str, port: int, target: Endpoint | None) -> bool:
        if self.protocol is not None and self.protocol != protocol:
            return False
        if self.named:
            return target is not None and target.named_port(self.named, protocol) == port
        return not self.ranges or any(lo <= port <= hi for lo, hi in self.ranges)


@dataclass(frozen=True)
class Rule:
    action: str
    peers: tuple[Peer, ...] = ()  # any of these (empty: anything)
    ports: tuple[PortMatch, ...] = ()  # any of these (empty: any protocol and port)

    def matches(self, remote_ip: str, remote: Endpoint | None, protocol: str, port: int,
                port_owner: Endpoint | None) -> bool:
        if self.peers and not any(p.matches(remote_ip, remote) for p in self.peers):
            return False
        return not self.ports or any(p.matches(protocol, port, port_owner) for p in self.ports)


@dataclass(frozen=True)
class Policy:
    api: str  # K8S_API or CALICO_API
    kind: str  # NetworkPolicy, GlobalNetworkPolicy
    namespace: str  # "" for a GlobalNetworkPolicy
    name: str
    order: float
    select: EndpointFn
    types: frozenset[str]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def ident(self) -> str:
        prefix = "knp.default." if self.api == K8S_API else "default."
        return f"{self.namespace}/{prefix}{self.name}" if self.namespace else f"{prefix}{self.name}"

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.order, self.ident)

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.ingress if direction == "Ingress" else self.egress

    def applies(self, endpoint: Endpoint, direction: str) -> bool:
        return direction in self.types and self.select(endpoint)


# --- parsing -----------------------------------------------------------------------------------------------------

class _Doc:
    def __init__(self, doc: Mapping[str, Any]) -> None:
        meta = doc.get("metadata") or {}
        self.kind = doc.get("kind", "?")
        self.namespace = "" if self.kind == "GlobalNetworkPolicy" else meta.get("namespace", "default")
        self.name = meta.get("name", "?")
        self.what = f"{self.kind} {self.name!r}" if not self.namespace else \
            f"{self.kind} '{self.namespace}/{self.name}'"
        if doc.get("apiVersion") == CALICO_API:
            self.what = f"projectcalico.org/v3 {self.what}"

    def fail(self, path: str, reason: str) -> ValidationError:
        return ValidationError(self.what, path, reason)

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, "must be a mapping")
        return value

    def seq(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, "must be a list")
        return value

    def only(self, value: Mapping[str, Any], path: str, known: Iterable[str]) -> None:
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise self.fail(f"{path}.{unknown[0]}" if path else unknown[0],
                            f"is not a known or supported field (known: {', '.join(sorted(known))})")


def _label_selector(doc: _Doc, value: Any, path: str) -> tuple[str, Callable[[Mapping[str, str]], bool]]:
    """A Kubernetes LabelSelector (matchLabels + matchExpressions) → (canonical text, predicate)."""
    sel = doc.mapping(value, path)
    doc.only(sel, path, ("matchLabels", "matchExpressions"))
    match = doc.mapping(sel.get("matchLabels"), f"{path}.matchLabels")
    for key, val in match.items():
        if not isinstance(val, str):
            raise doc.fail(f"{path}.matchLabels.{key}", "must be a string")
    tests: list[tuple[str, str, frozenset[str]]] = [(str(k), "In", frozenset([v])) for k, v in match.items()]
    for i, expr in enumerate(doc.seq(sel.get("matchExpressions"), f"{path}.matchExpressions")):
        where = f"{path}.matchExpressions[{i}]"
        expr = doc.mapping(expr, where)
        doc.only(expr, where, ("key", "operator", "values"))
        key, op = expr.get("key"), expr.get("operator")
        values = doc.seq(expr.get("values"), f"{where}.values")
        if not isinstance(key, str) or not key:
            raise doc.fail(f"{where}.key", "is required")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise doc.fail(f"{where}.operator", f"{op!r} must be In, NotIn, Exists or DoesNotExist")
        if op in ("In", "NotIn") and not values:
            raise doc.fail(f"{where}.values", f"must not be empty for {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise doc.fail(f"{where}.values", f"must be empty for {op}")
        if not all(isinstance(v, str) for v in values):
            raise doc.fail(f"{where}.values", "must be strings")
        tests.append((key, op, frozenset(values)))
    tests.sort(key=lambda t: (t[0], t[1], sorted(t[2])))

    def predicate(labels: Mapping[str, str]) -> bool:
        for key, op, values in tests:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True

    canonical = ";".join(f"{k} {op} {','.join(sorted(v))}" for k, op, v in tests) or "all"
    return canonical, predicate


def _cidr(doc: _Doc, value: Any, path: str) -> Net:
    if not isinstance(value, str):
        raise doc.fail(path, "must be a CIDR string")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise doc.fail(path, f"{value!r} is not a valid CIDR") from None
    if net.version != 4:
        raise doc.fail(path, f"{value!r}: only IPv4 is supported (the lab is IPv4)")
    return net  # type: ignore[return-value]


def _port_number(doc: _Doc, value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise doc.fail(path, f"{value!r} must be an integer 1-65535 or a port name")
    return value


def _k8s_ports(doc: _Doc, value: Any, path: str) -> tuple[PortMatch, ...]:
    result = []
    for i, raw in enumerate(doc.seq(value, path)):
        where = f"{path}[{i}]"
        raw = doc.mapping(raw, where)
        doc.only(raw, where, ("protocol", "port", "endPort"))
        protocol = raw.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            raise doc.fail(f"{where}.protocol", f"{protocol!r} must be one of {', '.join(PROTOCOLS)}")
        port, end = raw.get("port"), raw.get("endPort")
        if port is None:
            if end is not None:
                raise doc.fail(f"{where}.endPort", "needs a numeric port")
            result.append(PortMatch(protocol))
        elif isinstance(port, str) and not port.isdigit():
            if not _PORT_NAME.match(port):
                raise doc.fail(f"{where}.port", f"{port!r} is not a valid port name (IANA service name)")
            if end is not None:
                raise doc.fail(f"{where}.endPort", "may not be set when port is a name")
            result.append(PortMatch(protocol, (), port))
        else:
            number = _port_number(doc, int(port) if isinstance(port, str) else port, f"{where}.port")
            last = number if end is None else _port_number(doc, end, f"{where}.endPort")
            if last < number:
                raise doc.fail(f"{where}.endPort", f"{last} must be >= port {number}")
            result.append(PortMatch(protocol, ((number, last),)))
    return tuple(result)


def _k8s_peers(doc: _Doc, value: Any, path: str, namespace: str) -> tuple[Peer, ...]:
    peers = []
    for i, raw in enumerate(doc.seq(value, path)):
        where = f"{path}[{i}]"
        raw = doc.mapping(raw, where)
        doc.only(raw, where, ("podSelector", "namespaceSelector", "ipBlock"))
        if not raw:
            raise doc.fail(where, "must set podSelector, namespaceSelector or ipBlock")
        if "ipBlock" in raw:
            if len(raw) > 1:
                raise doc.fail(f"{where}.ipBlock", "may not be combined with podSelector or namespaceSelector")
            block = doc.mapping(raw["ipBlock"], f"{where}.ipBlock")
            doc.only(block, f"{where}.ipBlock", ("cidr", "except"))
            if "cidr" not in block:
                raise doc.fail(f"{where}.ipBlock.cidr", "is required")
            cidr = _cidr(doc, block["cidr"], f"{where}.ipBlock.cidr")
            excepts = []
            for j, item in enumerate(doc.seq(block.get("except"), f"{where}.ipBlock.except")):
                net = _cidr(doc, item, f"{where}.ipBlock.except[{j}]")
                if not net.subnet_of(cidr) or net == cidr:
                    raise doc.fail(f"{where}.ipBlock.except[{j}]", f"{item!r} must be strictly within {cidr}")
                excepts.append(net)
            peers.append(Peer(nets=(cidr,), excepts=tuple(excepts)))
            continue
        pod_text, pod_fn = _label_selector(doc, raw.get("podSelector"), f"{where}.podSelector")
        if "namespaceSelector" in raw:
            ns_text, ns_fn = _label_selector(doc, raw["namespaceSelector"], f"{where}.namespaceSelector")
        else:
            ns_text, ns_fn = f"name={namespace}", (lambda labels, ns=namespace: labels.get(
                "kubernetes.io/metadata.name") == ns)

        def select(ep: Endpoint, ns_fn=ns_fn, pod_fn=pod_fn) -> bool:
            return ns_fn(ep.namespace_labels) and pod_fn(ep.labels)
        peers.append(Peer(key=f"k8s ns[{ns_text}] pods[{pod_text}]", select=select))
    return tuple(peers)


def _k8s_policy(doc: Mapping[str, Any]) -> Policy:
    d = _Doc(doc)
    spec = d.mapping(doc.get("spec"), "spec")
    d.only(spec, "spec", ("podSelector", "policyTypes", "ingress", "egress"))
    _, pod_fn = _label_selector(d, spec.get("podSelector"), "spec.podSelector")
    types = d.seq(spec.get("policyTypes"), "spec.policyTypes")
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            raise d.fail(f"spec.policyTypes[{i}]", f"{t!r} must be Ingress or Egress")
    if len(set(types)) != len(types):
        raise d.fail("spec.policyTypes", "lists a type twice")
    if not types:  # Kubernetes' default: Ingress always, Egress when the policy has egress rules
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    rules: dict[str, list[Rule]] = {"ingress": [], "egress": []}
    for direction, peer_field in (("ingress", "from"), ("egress", "to")):
        for i, raw in enumerate(d.seq(spec.get(direction), f"spec.{direction}")):
            where = f"spec.{direction}[{i}]"
            raw = d.mapping(raw, where)
            d.only(raw, where, (peer_field, "ports"))
            peers = _k8s_peers(d, raw.get(peer_field), f"{where}.{peer_field}", d.namespace)
            ports = _k8s_ports(d, raw.get("ports"), f"{where}.ports")
            rules[direction].append(Rule("Allow", peers, ports))
    namespace = d.namespace
    return Policy(K8S_API, "NetworkPolicy", namespace, d.name, K8S_ORDER,
                  lambda ep: ep.namespace == namespace and pod_fn(ep.labels), frozenset(types),
                  tuple(rules["ingress"]), tuple(rules["egress"]))


def _selector(d: _Doc, value: Any, path: str):
    if not isinstance(value, str):
        raise d.fail(path, "must be a selector expression string")
    try:
        return parse_selector(value)
    except SelectorError as exc:
        raise d.fail(path, f"{value!r}: {exc}") from None


def _calico_ports(d: _Doc, value: Any, path: str, protocol: str | None) -> tuple[PortMatch, ...]:
    raw_ports = d.seq(value, path)
    if not raw_ports:
        return (PortMatch(protocol),) if protocol else ()
    if protocol not in ("TCP", "UDP", "SCTP"):
        raise d.fail(path, "ports need the rule's protocol to be TCP, UDP or SCTP")
    ranges, named = [], []
    for i, port in enumerate(raw_ports):
        where = f"{path}[{i}]"
        if isinstance(port, int) and not isinstance(port, bool):
            number = _port_number(d, port, where)
            ranges.append((number, number))
        elif isinstance(port, str) and _PORT_RANGE.match(port):
            lo, hi = (int(x) for x in _PORT_RANGE.match(port).groups())  # type: ignore[union-attr]
            if not (1 <= lo <= hi <= 65535):
                raise d.fail(where, f"{port!r} must be a range 'a:b' with 1 <= a <= b <= 65535")
            ranges.append((lo, hi))
        elif isinstance(port, str) and port.isdigit():
            number = _port_number(d, int(port), where)
            ranges.append((number, number))
        elif isinstance(port, str) and _PORT_NAME.match(port):
            named.append(port)
        else:
            raise d.fail(where, f"{port!r} must be a port number, a range 'a:b' or a port name")
    result = [PortMatch(protocol, tuple(ranges))] if ranges else []
    return tuple(result + [PortMatch(protocol, (), name) for name in named])


def _calico_entity(d: _Doc, raw: Any, where: str, namespace: str) -> tuple[Peer | None, Any]:
    """A rule's source or destination → (peer or None for 'anything', the raw ports)."""
    ent = d.mapping(raw, where)
    d.only(ent, where, ("selector", "namespaceSelector", "nets", "notNets", "ports"))
    nets = tuple(_cidr(d, n, f"{where}.nets[{i}]") for i, n in enumerate(d.seq(ent.get("nets"), f"{where}.nets")))
    not_nets = tuple(_cidr(d, n, f"{where}.notNets[{i}]")
                     for i, n in enumerate(d.seq(ent.get("notNets"), f"{where}.notNets")))
    key, select = "", None
    if "selector" in ent or "namespaceSelector" in ent:
        pods = _selector(d, ent.get("selector", "all()"), f"{where}.selector")
        if "namespaceSelector" in ent:
            nss = _selector(d, ent["namespaceSelector"], f"{where}.namespaceSelector")
            ns_text, ns_fn = nss.canonical, nss.match
        elif namespace:
            ns_text, ns_fn = f"name={namespace}", (lambda labels, ns=namespace: labels.get(
                "projectcalico.org/name") == ns)
        else:  # a global policy's rule selector picks endpoints of every namespace
            ns_text, ns_fn = "all()", (lambda _labels: True)

        def select(ep: Endpoint, ns_fn=ns_fn, pods=pods) -> bool:
            return ns_fn(ep.namespace_labels) and pods(ep.calico_labels())
        key = f"calico ns[{ns_text}] pods[{pods.canonical}]"
    if not key and not nets and not not_nets:
        return None, ent.get("ports")
    return Peer(key, select, nets, (), not_nets), ent.get("ports")


def _calico_rule(d: _Doc, raw: Any, where: str, direction: str, namespace: str) -> Rule:
    raw = d.mapping(raw, where)
    d.only(raw, where, ("action", "protocol", "source", "destination", "metadata"))
    action = raw.get("action")
    if action not in ACTIONS:
        raise d.fail(f"{where}.action", f"{action!r} must be one of {', '.join(ACTIONS)}")
    protocol = raw.get("protocol")
    if protocol is not None and protocol not in CALICO_PROTOCOLS:
        raise d.fail(f"{where}.protocol", f"{protocol!r} must be one of {', '.join(CALICO_PROTOCOLS)}")
    remote_field, local_field = ("source", "destination") if direction == "ingress" else ("destination", "source")
    peer, remote_ports = _calico_entity(d, raw.get(remote_field), f"{where}.{remote_field}", namespace)
    local, local_ports = _calico_entity(d, raw.get(local_field), f"{where}.{local_field}", namespace)
    if local is not None:
        raise d.fail(f"{where}.{local_field}", "selectors or nets on the policy's own side are not supported")
    ports_path, port_value = ((f"{where}.destination.ports", local_ports) if direction == "ingress"
                              else (f"{where}.destination.ports", remote_ports))
    other = remote_ports if direction == "ingress" else local_ports
    if other:
        raise d.fail(f"{where}.source.ports", "source ports are not supported")
    ports = _calico_ports(d, port_value, ports_path, protocol)
    return Rule(action, (peer,) if peer else (), ports)


def _calico_policy(doc: Mapping[str, Any]) -> Policy:
    d = _Doc(doc)
    spec = d.mapping(doc.get("spec"), "spec")
    is_global = d.kind == "GlobalNetworkPolicy"
    known = ["order", "selector", "types", "ingress", "egress", "tier"] + (["namespaceSelector"] if is_global else [])
    d.only(spec, "spec", known)
    if spec.get("tier", "default") != "default":
        raise d.fail("spec.tier", "only the default tier is supported")
    order = spec.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int | float)):
        raise d.fail("spec.order", f"{order!r} must be a number")
    pods = _selector(d, spec.get("selector", "all()"), "spec.selector")
    nss = _selector(d, spec.get("namespaceSelector", "all()"), "spec.namespaceSelector")
    types = d.seq(spec.get("types"), "spec.types")
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            raise d.fail(f"spec.types[{i}]", f"{t!r} must be Ingress or Egress")
    if not types:  # Calico's default: the directions that have rules; Ingress when neither has
        types = [t for t, key in (("Ingress", "ingress"), ("Egress", "egress")) if spec.get(key)] or ["Ingress"]
    namespace = d.namespace
    rules = {direction: tuple(_calico_rule(d, r, f"spec.{direction}[{i}]", direction, namespace)
                              for i, r in enumerate(d.seq(spec.get(direction), f"spec.{direction}")))
             for direction in ("ingress", "egress")}

    def select(ep: Endpoint) -> bool:
        if namespace and ep.namespace != namespace:
            return False
        return nss(ep.namespace_labels) and pods(ep.calico_labels())
    return Policy(CALICO_API, d.kind, namespace, d.name, NO_ORDER if order is None else float(order), select,
                  frozenset(types), rules["ingress"], rules["egress"])


def parse_policies(docs: Iterable[Mapping[str, Any]]) -> list[Policy]:
    """Kubernetes and Calico policy manifests → policies in evaluation order; the first bad one raises.
    (Namespace labels are not needed here: selectors are evaluated against each Endpoint's namespace view.)"""
    policies = []
    seen: set[str] = set()
    for doc in docs:
        if doc.get("apiVersion") == K8S_API and doc.get("kind") == "NetworkPolicy":
            policy = _k8s_policy(doc)
        elif doc.get("apiVersion") == CALICO_API and doc.get("kind") in ("NetworkPolicy", "GlobalNetworkPolicy"):
            policy = _calico_policy(doc)
        else:
            raise ValidationError(f"{doc.get('kind')} ({doc.get('apiVersion')})", "apiVersion/kind",
                                  "is not a NetworkPolicy or GlobalNetworkPolicy")
        if policy.api + policy.ident in seen:
            raise _Doc(doc).fail("metadata.name", "is defined twice")
        seen.add(policy.api + policy.ident)
        policies.append(policy)
    return sorted(policies, key=lambda p: p.sort_key)


# --- the reference evaluator ---------------------------------------------------------------------------------

def direction_allows(policies: list[Policy], local: Endpoint, direction: str, remote_ip: str,
                     remote: Endpoint | None, protocol: str, port: int) -> bool:
    """Whether ``local``'s policies let the packet in (Ingress) or out (Egress), Calico's way."""
    applying = [p for p in policies if p.applies(local, direction)]
    if not applying:
        return True  # no policy: the namespace profile allows
    port_owner = local if direction == "Ingress" else remote
    for policy in applying:
        for rule in policy.rules(direction):
            if not rule.matches(remote_ip, remote, protocol, port, port_owner):
                continue
            if rule.action == "Allow":
                return True
            if rule.action == "Deny":
                return False
            if rule.action == "Pass":
                return True  # the rest of the tier is skipped; the profile allows
    return False  # end of tier: policies applied and none allowed


def allowed(policies: list[Policy], src: Endpoint, dst: Endpoint, protocol: str, port: int) -> bool:
    """A new connection from pod ``src`` to pod ``dst``: the source's egress and the destination's ingress."""
    return (direction_allows(policies, src, "Egress", dst.ip, dst, protocol, port)
            and direction_allows(policies, dst, "Ingress", src.ip, src, protocol, port))


def flow_allowed(policies: list[Policy], endpoints: Iterable[Endpoint], src_ip: str, dst_ip: str, protocol: str,
                 port: int, node: str | None = None) -> bool:
    """A flow between any two addresses; only the pods of ``node`` (all pods if None) are checked."""
    by_ip = {e.ip: e for e in endpoints}
    src, dst = by_ip.get(src_ip), by_ip.get(dst_ip)
    if (src is not None and (node is None or src.node == node)
            and not direction_allows(policies, src, "Egress", dst_ip, dst, protocol, port)):
        return False
    return not (dst is not None and (node is None or dst.node == node)
                and not direction_allows(policies, dst, "Ingress", src_ip, src, protocol, port))


# --- the compiler ----------------------------------------------------------------------------------------------

def _hash(text: str, length: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass
class IpSet:
    name: str
    type: str  # hash:ip, hash:net, hash:ip,port
    members: list[str]


@dataclass
class Ruleset:
    """One node's filter-table chains (in order, each with its rules) and ipsets."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, IpSet] = field(default_factory=dict)
    pods: dict[str, str] = field(default_factory=dict)  # local pod key → its ip

    def iptables(self, stale: Iterable[str] = (), only: Iterable[str] | None = None) -> str:
        """iptables-restore --noflush input: declares and fills our chains (or ``only`` those), removes ``stale``
        ones."""
        names = list(self.chains) if only is None else [n for n in self.chains if n in set(only)]
        lines = ["*filter"] + [f":{name} - [0:0]" for name in names]
        stale = sorted(set(stale) - set(self.chains))
        lines += [f":{name} - [0:0]" for name in stale]
        lines += [f"-F {name}" for name in names]
        for name in names:
            lines += [f"-A {name} {rule}" for rule in self.chains[name]]
        lines += [f"-F {name}" for name in stale] + [f"-X {name}" for name in stale]
        return "\n".join([*lines, "COMMIT", ""])

    def ipsets(self, only: Iterable[str] | None = None) -> str:
        """ipset restore input: each set (or ``only`` those) filled under a temporary name and swapped in (atomic
        per set)."""
        lines = []
        for s in self.sets.values():
            if only is not None and s.name not in set(only):
                continue
            tmp = _temp_set(s.name)
            extra = " family inet" if s.type != "hash:ip,port" else ""
            lines += [f"create {tmp} {s.type}{extra} -exist", f"flush {tmp}"]
            lines += [f"add {tmp} {m}" for m in s.members]
            lines += [f"create {s.name} {s.type}{extra} -exist", f"swap {tmp} {s.name}", f"destroy {tmp}"]
        return "\n".join([*lines, ""])


def _temp_set(name: str) -> str:
    return name.replace(SET_PREFIX, "cali4t", 1)


class _Compiler:
    def __init__(self, policies: list[Policy], endpoints: list[Endpoint], node: str, interface_dispatch: bool):
        self.policies = policies
        self.endpoints = sorted(endpoints, key=lambda e: e.key)
        self.node = node
        self.interface_dispatch = interface_dispatch
        self.out = Ruleset()

    def peer_set(self, peer: Peer) -> str:
        name = f"{SET_PREFIX}s:{_hash(peer.key)}"
        if name not in self.out.sets:
            members = sorted({e.ip for e in self.endpoints if peer.select and peer.select(e)},
                             key=ipaddress.IPv4Address)
            self.out.sets[name] = IpSet(name, "hash:ip", members)
        return name

    def net_set(self, nets: tuple[Net, ...], excepts: tuple[Net, ...]) -> str:
        wide = [half for n in sorted(set(nets)) for half in (n.subnets(1) if n.prefixlen == 0 else [n])]
        members = [str(n) for n in wide] + [f"{n} nomatch" for n in sorted(set(excepts))]
        name = f"{SET_PREFIX}n:{_hash(' '.join(members))}"
        self.out.sets.setdefault(name, IpSet(name, "hash:net", members))
        return name

    def named_port_set(self, name: str, protocol: str) -> str:
        set_name = f"{SET_PREFIX}p:{_hash(f'{name}/{protocol}')}"
        if set_name not in self.out.sets:
            members = [f"{e.ip},{protocol.lower()}:{port}" for e in self.endpoints
                       if (port := e.named_port(name, protocol)) is not None]
            self.out.sets[set_name] = IpSet(set_name, "hash:ip,port", members)
        return set_name

    def peer_matches(self, peer: Peer, side: str) -> list[str]:
        parts = []
        if peer.select is not None:
            parts.append(f"-m set --match-set {self.peer_set(peer)} {side}")
        if peer.nets or peer.excepts:
            parts.append(f"-m set --match-set {self.net_set(peer.nets or (Net('0.0.0.0/0'),), peer.excepts)} "
                         f"{side}")
        if peer.not_nets:
            parts.append(f"-m set ! --match-set {self.net_set(peer.not_nets, ())} {side}")
        return parts

    def port_matches(self, port: PortMatch) -> list[str]:
        """One or more alternative match strings for one PortMatch (multiport takes at most 15 ports)."""
        if port.protocol is None:
            return [""]
        proto = f"-p {port.protocol.lower()}"
        if port.named:
            return [f"{proto} -m set --match-set {self.named_port_set(port.named, port.protocol)} dst,dst"]
        if not port.ranges:
            return [proto]
        if len(port.ranges) == 1:
            lo, hi = port.ranges[0]
            return [f"{proto} -m {port.protocol.lower()} --dport {lo if lo == hi else f'{lo}:{hi}'}"]
        chunks = [port.ranges[i:i + 7] for i in range(0, len(port.ranges), 7)]
        return [f"{proto} -m multiport --dports " + ",".join(str(lo) if lo == hi else f"{lo}:{hi}"
                                                              for lo, hi in chunk) for chunk in chunks]

    def policy_chain(self, policy: Policy, direction: str) -> str:
        name = f"cali-{'pi' if direction == 'Ingress' else 'po'}-{_hash(policy.api + policy.ident)}"
        if name in self.out.chains:
            return name
        side = "src" if direction == "Ingress" else "dst"
        rules = [f'-m comment --comment "{policy.kind} {policy.ident} ({direction})"']
        for rule in policy.rules(direction):
            peers = [self.peer_matches(p, side) for p in rule.peers] or [[]]
            ports = [m for p in rule.ports for m in self.port_matches(p)] or [""]
            target = {"Allow": f"-j MARK --set-xmark {ACCEPT_MARK:#x}/{ACCEPT_MARK:#x}",
                      "Pass": f"-j MARK --set-xmark {PASS_MARK:#x}/{PASS_MARK:#x}",
                      "Deny": "-j DROP", "Log": '-j LOG --log-prefix "calico-packet: "'}[rule.action]
            for peer in peers:
                for port in ports:
                    rules.append(" ".join(x for x in (port, *peer, target) if x))
            if rule.action in ("Allow", "Pass"):
                mark = ACCEPT_MARK if rule.action == "Allow" else PASS_MARK
                rules.append(f"-m mark --mark {mark:#x}/{mark:#x} -j RETURN")
        self.out.chains[name] = rules
        return name

    def endpoint_chain(self, ep: Endpoint, direction: str) -> str:
        name = f"cali-{'tw' if direction == 'Ingress' else 'fw'}-{ep.ifname}"
        applying = [p for p in self.policies if p.applies(ep, direction)]
        rules: list[str] = []
        if applying:
            both = ACCEPT_MARK | PASS_MARK
            rules.append(f"-j MARK --set-xmark 0x0/{both:#x}")
            for policy in applying:
                chain = self.policy_chain(policy, direction)
                rules.append(f"-m mark --mark 0x0/{PASS_MARK:#x} -j {chain}")
                rules.append(f"-m mark --mark {ACCEPT_MARK:#x}/{ACCEPT_MARK:#x} -j RETURN")
            rules.append(f'-m mark --mark 0x0/{PASS_MARK:#x} -m comment --comment "no policy allowed the packet" '
                         "-j DROP")
        self.out.chains[name] = rules
        return name

    def compile(self) -> Ruleset:
        if not self.policies:  # no policy: no rules at all (everything is allowed)
            return self.out
        local = [e for e in self.endpoints if e.node == self.node]
        self.out.chains["cali-FORWARD"] = [
            "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            "-j cali-from-wl-dispatch", "-j cali-to-wl-dispatch"]
        self.out.chains["cali-from-wl-dispatch"] = []
        self.out.chains["cali-to-wl-dispatch"] = []
        for ep in local:
            self.out.pods[ep.key] = ep.ip
            for direction, dispatch, iface, addr in (("Egress", "cali-from-wl-dispatch", "-i", "-s"),
                                                     ("Ingress", "cali-to-wl-dispatch", "-o", "-d")):
                chain = self.endpoint_chain(ep, direction)
                if not self.out.chains[chain]:
                    del self.out.chains[chain]  # nothing selects the pod in this direction: allowed
                    continue
                match = f"{iface} {ep.ifname}" if self.interface_dispatch else f"{addr} {ep.ip}/32"
                self.out.chains[dispatch].append(f"{match} -g {chain}")
        return self.out


def compile_node(policies: list[Policy], endpoints: Iterable[Endpoint], node: str,
                 interface_dispatch: bool = True) -> Ruleset:
    """The node's chains and sets. ``interface_dispatch``: pods are routed veths (Terway) and are matched by
    interface; on a bridge (vpc-route, vxlan) they are matched by address (a routed packet's bridge port is
    not known in FORWARD)."""
    return _Compiler(policies, list(endpoints), node, interface_dispatch).compile()
