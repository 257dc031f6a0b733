"""NetworkPolicy truth tables on the kernel: namespaces x, y, z with pods a, b, c (labels pod=a..c, ns=x..z),
each serving TCP and UDP on 80 and 81 with named ports (``serve-80-tcp`` ...), like the upstream netpol e2e.

The kernel tests drive a lab's API server (``tests.apilab``) with kubectl only: the pods and the policies go in
with ``kubectl apply``, the nodes' NetworkPolicy agents enforce them. A matrix probes every (source pod,
destination pod) pair at once (threads, short timeouts) and is compared with the reference evaluator's matrix,
over the pods and Namespaces as the API shows them, and, for key cases, with hand-written expectations.
"""

from __future__ import annotations

import json
import socket
import textwrap
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import yaml

from acklab.k8s.model.network_policy import Endpoint, Policy, allowed, compile_node, parse_policies
from acklab.k8s.model.network_policy_api import endpoint_from_pod
from acklab.k8s.realize import network_policy
from netns.kernel.namespace import Namespace
from tests.apilab import ApiLab, until

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
NODE_OF = {"a": "node-1", "b": "node-2", "c": "node-1"}  # same-node and cross-node pairs in every matrix
NODES = ("node-1", "node-2")
PAIRS = [(f"{s}/{p}", f"{t}/{q}") for s in NAMESPACES for p in PODS for t in NAMESPACES for q in PODS]
KEYS = [f"{n}/{p}" for n in NAMESPACES for p in PODS]
TCP_TIMEOUT, UDP_TIMEOUT = 0.4, 0.6  # a matrix waits this long for its blocked pairs; a slow allowed one: probed again


def base_objects() -> list[dict[str, Any]]:
    """The x/y/z Namespaces and their pods, pinned to their nodes (``NODE_OF``); the pod agent answers on every
    declared containerPort (TCP: connect and HTTP, UDP: ``hostname``)."""
    docs: list[dict[str, Any]] = []
    for ns in NAMESPACES:
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}})
        for pod in PODS:
            ports = [{"name": f"serve-{n}-{proto.lower()}", "containerPort": n, "protocol": proto}
                     for n in (80, 81) for proto in ("TCP", "UDP")]
            docs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": pod, "namespace": ns, "labels": {"pod": pod}},
                         "spec": {"nodeName": NODE_OF[pod],
                                  "containers": [{"name": "agnhost", "image": "agnhost", "ports": ports}]}})
    return docs


def json_stream(docs: Iterable[dict[str, Any]]) -> str:
    """Manifests for ``kubectl apply -f -`` as JSON documents: kubectl's YAML 1.1 would read ``y`` (the
    namespace, a label value) as true, where PyYAML, which parsed them, reads the string."""
    return "".join(f"---\n{json.dumps(d)}\n" for d in docs)


def manifests(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def ident(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]


def policy(text: str) -> str:
    return "---\n" + textwrap.dedent(text).strip() + "\n"


def probe(netns: str, address: str, protocol: str, port: int, timeout: float = 0.6) -> bool:
    """Whether a new connection (TCP) or a request (UDP: the pod agent answers ``hostname``) gets through. A
    blocked probe takes the whole timeout; an allowed one on the lab's veths takes milliseconds."""
    kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
    s = Namespace(netns).socket(socket.AF_INET, kind)
    s.settimeout(timeout)
    try:
        if protocol == "TCP":
            s.connect((address, port))
            return True
        s.sendto(b"hostname", (address, port))
        return bool(s.recvfrom(2048)[0])
    except OSError:
        return False
    finally:
        s.close()


@dataclass
class Harness:
    """The truth-table pods in a lab driven by its API server. Pods and policies go in with kubectl only; the
    nodes' NetworkPolicy agents enforce them. To know when both agents have caught up, the nodes' rules are
    compared (read only) with what the compiler makes of the same policies over the pods as the API shows them;
    then the matrix is probed."""

    api: ApiLab
    netns: dict[str, str] = field(default_factory=dict)  # pod key → its network namespace (the node agent's record)
    ips: dict[str, str] = field(default_factory=dict)  # pod key → its address, as the API shows it
    held: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)  # the policies applied
    _endpoints: list[Endpoint] | None = None  # the pods as the API showed them last (read again after a change)

    @property
    def datapath(self) -> str:
        return self.api.datapath

    def setup_pods(self, timeout: float = 180.0) -> None:
        """``kubectl apply`` of the Namespaces and pods; returns when all 27 are Running with their network."""
        self.api.apply(json_stream(base_objects()))
        running: dict[str, dict] = {}

        def up() -> bool:
            nonlocal running
            running = self.api.running()
            return set(KEYS) <= set(running)

        until(up, "the 27 pods of x, y, z Running", timeout, interval=0.5)
        records = self.api.records()
        self.ips = {key: running[key]["status"]["podIP"] for key in KEYS}
        self.netns = {key: records[key].netns for key in KEYS}

    def endpoints(self, fresh: bool = False) -> list[Endpoint]:
        """Every pod of the cluster as policies see it (its Namespace's labels included), from one
        ``kubectl get``; kept until a label changes."""
        if fresh or self._endpoints is None:
            items = self.api.get_json("namespaces,pods", "-A")["items"]
            labels = {o["metadata"]["name"]: o["metadata"].get("labels") or {} for o in items
                      if o["kind"] == "Namespace"}
            found = (endpoint_from_pod(o, labels) for o in items if o["kind"] == "Pod")
            self._endpoints = sorted((e for e in found if e is not None), key=lambda e: e.key)
        return self._endpoints

    def set_policies(self, text: str) -> list[dict[str, Any]]:
        """The cluster holds exactly the policies of ``text`` (YAML): those applied before and not in it deleted,
        these applied (created, or updated in place); the two kubectl at once (they touch different objects).
        Returns the manifests applied."""
        wanted = manifests(text)
        stale = [d for key, d in self.held.items() if key not in {ident(w) for w in wanted}]
        self.held = {ident(d): d for d in wanted} | {ident(d): d for d in stale}  # until deleted
        with ThreadPoolExecutor(max_workers=2) as pool:
            calls = []
            if stale:
                calls.append(pool.submit(self.api.delete, json_stream(
                    {"apiVersion": d["apiVersion"], "kind": d["kind"],
                     "metadata": {k: v for k, v in d["metadata"].items() if k in ("name", "namespace")}}
                    for d in stale)))
            if wanted:
                calls.append(pool.submit(self.api.apply, json_stream(wanted)))
            for call in calls:
                call.result()
        self.held = {ident(d): d for d in wanted}
        return wanted

    def label(self, *args: str) -> None:
        """``kubectl label --overwrite``: a Namespace's or a pod's labels, as a user changes them."""
        self.api.kubectl("label", "--overwrite", *args)
        self._endpoints = None

    def lagging(self, policies: list[Policy], endpoints: list[Endpoint]) -> list[str]:
        """The nodes whose kernel does not yet carry what the compiler makes of ``policies`` over ``endpoints``
        (chains with their rule counts, and their texts as the agent recorded them; sets; the jump). The agent
        records after the conntrack sweep: a node that is not lagging has finished its apply."""
        late = []
        for node in NODES:
            ruleset = compile_node(policies, endpoints, node, self.datapath == "terway-eniip")
            applied = network_policy.read_applied(Namespace(self.api.netns[node]))
            if network_policy.plan_update(ruleset, applied, network_policy._recorded(self.api.lab, node)):
                late.append(node)
        return late

    def matrix(self, protocol: str, port: int) -> dict[tuple[str, str], bool]:
        timeout = TCP_TIMEOUT if protocol == "TCP" else UDP_TIMEOUT
        with ThreadPoolExecutor(max_workers=len(PAIRS)) as pool:
            futures = {(s, d): pool.submit(probe, self.netns[s], self.ips[d], protocol, port, timeout)
                       for s, d in PAIRS}
            return {pair: f.result() for pair, f in futures.items()}

    def settle(self, docs: list[dict[str, Any]], protocol: str, port: int, timeout: float = 30.0
               ) -> dict[tuple[str, str], bool]:
        """Poll until both nodes enforce ``docs`` (the policies applied) and the probed matrix equals the
        evaluator's over the pods as the API shows them; returns that matrix."""
        policies = parse_policies(docs)
        endpoints = self.endpoints()
        begin = read = time.monotonic()
        while True:
            late = self.lagging(policies, endpoints)
            if late:
                why = f"{', '.join(late)} not enforcing the policies applied"
            else:
                eps = {e.key: e for e in endpoints}
                expected = {(s, d): s == d or allowed(policies, eps[s], eps[d], protocol, port) for s, d in PAIRS}
                got = self.matrix(protocol, port)
                if got == expected:
                    return expected
                why = f"{protocol}/{port} probed:\n{show(got)}\nevaluator:\n{show(expected)}"
            now = time.monotonic()
            if now - begin > timeout:
                raise AssertionError(f"not settled after {timeout:.0f} s: {why}")
            if now - read > 3.0:  # behind for long: have the pods changed (a pod of another namespace)?
                endpoints, read = self.endpoints(fresh=True), now
            time.sleep(0.05)


def show(matrix: dict[tuple[str, str], bool]) -> str:
    """The matrix as the upstream suite prints it: rows are sources, columns destinations, X = blocked."""
    keys = [f"{n}/{p}" for n in NAMESPACES for p in PODS]
    lines = ["     " + " ".join(f"{k:>3}" for k in keys)]
    for s in keys:
        lines.append(f"{s:>4} " + " ".join(f"{'.' if matrix[(s, d)] else 'X':>3}" for d in keys))
    return "\n".join(lines)


def hand(rule: Callable[[str, str], bool]) -> dict[tuple[str, str], bool]:
    """A hand-written expectation: ``rule(src, dst)`` for pairs of different pods; a pod always reaches itself."""
    return {(s, d): s == d or rule(s, d) for s, d in PAIRS}


# --- the truth-table cases (shared by the kernel tests and the evaluator's unit tests) -----------------------

Rule = Callable[[str, str], bool]


def ns(key: str) -> str:
    return key.split("/")[0]


@dataclass
class Case:
    name: str
    policies: str
    probes: list[tuple[str, int, Rule | None]] = field(default_factory=list)  # protocol, port, hand rule


def k8s(name: str, namespace: str, spec: str) -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return policy(f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                    f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}")


def calico(kind: str, name: str, spec: str, namespace: str | None = None) -> str:
    meta = f"{{name: {name}, namespace: {namespace}}}" if namespace else f"{{name: {name}}}"
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return policy(f"apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {meta}\nspec:\n{body}")


DENY_ALL_X = k8s("deny-all", "x", "podSelector: {}\npolicyTypes: [Ingress]")
NOT_X = "{matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]}"
TCP80 = ("TCP", 80)

CASES = [
    Case("no-policy", "", [(*TCP80, lambda s, d: True), ("UDP", 81, lambda s, d: True)]),
    Case("deny-all-ingress", DENY_ALL_X, [(*TCP80, lambda s, d: ns(d) != "x")]),
    Case("default-deny-all", k8s("deny-all", "x", "podSelector: {}\npolicyTypes: [Ingress, Egress]"),
         [(*TCP80, lambda s, d: ns(s) != "x" and ns(d) != "x")]),
    Case("allow-from-pod-in-namespace", k8s("x-a-allows-x-b", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]"""), [(*TCP80, lambda s, d: d != "x/a" or s == "x/b")]),
    Case("allow-all-to-a-additive", DENY_ALL_X + k8s("allow-all-to-a", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{podSelector: {}, namespaceSelector: {}}]}]"""), [(*TCP80, lambda s, d: ns(d) != "x" or d == "x/a")]),
    Case("namespace-selector-default-label", k8s("allow-y", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]}]"""),
         [(*TCP80, lambda s, d: d != "x/a" or ns(s) == "y")]),
    Case("pod-or-namespace-selector", k8s("or", "x", f"""
podSelector: {{matchLabels: {{pod: a}}}}
ingress: [{{from: [{{namespaceSelector: {NOT_X}}}, {{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]"""),
         [(*TCP80, lambda s, d: d != "x/a" or ns(s) != "x" or s == "x/b")]),
    Case("pod-and-namespace-selector", k8s("and", "x", f"""
podSelector: {{matchLabels: {{pod: a}}}}
ingress: [{{from: [{{namespaceSelector: {NOT_X}, podSelector: {{matchLabels: {{pod: b}}}}}}]}}]"""),
         [(*TCP80, lambda s, d: d != "x/a" or s in ("y/b", "z/b"))]),
    Case("multiple-pod-and-namespace-expressions", k8s("multi", "x", f"""
podSelector: {{matchLabels: {{pod: a}}}}
ingress:
- from:
  - namespaceSelector: {NOT_X}
    podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [b, c]}}]}}"""),
         [(*TCP80, lambda s, d: d != "x/a" or (ns(s) != "x" and s[-1] in "bc"))]),
    Case("numbered-port", k8s("port-81", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{ports: [{port: 81}]}]"""), [(*TCP80, lambda s, d: d != "x/a"), ("TCP", 81, lambda s, d: True)]),
    Case("named-port", k8s("named", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{namespaceSelector: {}}], ports: [{port: serve-81-tcp}, {port: serve-80-udp, protocol: UDP}]}]"""),
         [(*TCP80, lambda s, d: d != "x/a"), ("TCP", 81, lambda s, d: True), ("UDP", 80, lambda s, d: True),
          ("UDP", 81, lambda s, d: d != "x/a")]),
    Case("end-port", k8s("range", "x", """
podSelector: {}
ingress: [{ports: [{port: 79, endPort: 80}]}]"""),
         [(*TCP80, lambda s, d: True), ("TCP", 81, lambda s, d: ns(d) != "x")]),
    Case("protocol-only-port", k8s("udp-only", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{ports: [{protocol: UDP}]}]"""), [(*TCP80, lambda s, d: d != "x/a"), ("UDP", 81, lambda s, d: True)]),
    Case("deny-egress-from-pod", k8s("deny-egress", "x", "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]"),
         [(*TCP80, lambda s, d: s != "x/a")]),
    Case("egress-to-pod-and-namespace", k8s("egress-y-a", "x", """
podSelector: {matchLabels: {pod: a}}
egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}]}]"""),
         # egress rules and no policyTypes: Ingress and Egress, so x/a is isolated for ingress too
         [(*TCP80, lambda s, d: (s != "x/a" or d == "y/a") and d != "x/a")]),
    Case("egress-ip-block", k8s("egress-cidr", "x", """
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress: [{to: [{ipBlock: {cidr: "@x/b@/32"}}]}]"""), [(*TCP80, lambda s, d: s != "x/a" or d == "x/b")]),
    Case("egress-ip-block-except", k8s("egress-except", "x", """
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress: [{to: [{ipBlock: {cidr: "@cidr@", except: ["@x/b@/32", "@z/c@/32"]}}]}]"""),
         [(*TCP80, lambda s, d: s != "x/a" or d not in ("x/b", "z/c"))]),
    Case("ingress-ip-block-except", k8s("ingress-except", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{ipBlock: {cidr: "0.0.0.0/0", except: ["@y/b@/32"]}}]}]"""),
         [(*TCP80, lambda s, d: d != "x/a" or s != "y/b")]),
    Case("ingress-and-egress-together", k8s("both", "x", """
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress, Egress]
ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
egress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}]}]"""),
         [(*TCP80, lambda s, d: (d != "x/a" or ns(s) == "y") and (s != "x/a" or ns(d) == "z"))]),
    Case("client-side-egress-denial-wins", k8s("allow-all-in", "x", "podSelector: {}\ningress: [{}]")
         + k8s("deny-out", "y", "podSelector: {matchLabels: {pod: b}}\npolicyTypes: [Egress]"),
         [(*TCP80, lambda s, d: s != "y/b")]),
    # Calico: order, Deny, Pass, Log, nets/notNets, namespaced and global policies beside Kubernetes ones
    Case("calico-deny-before-k8s-allow", k8s("allow-all-in", "x", "podSelector: {}\ningress: [{}]") + calico(
        "GlobalNetworkPolicy", "deny-z-to-x", """
order: 10
selector: projectcalico.org/namespace == 'x'
ingress: [{action: Deny, source: {namespaceSelector: ns == 'z'}}]"""),
         [(*TCP80, lambda s, d: ns(d) != "x" or ns(s) != "z")]),
    Case("calico-pass-skips-k8s-deny", DENY_ALL_X + calico("NetworkPolicy", "pass-b", """
order: 100
selector: all()
ingress: [{action: Pass, source: {selector: pod == 'b', namespaceSelector: all()}}]""", "x"),
         [(*TCP80, lambda s, d: ns(d) != "x" or s.endswith("/b"))]),
    Case("calico-allow-port-before-k8s-deny", DENY_ALL_X + calico("GlobalNetworkPolicy", "allow-y-80", """
order: 500
selector: projectcalico.org/namespace == 'x'
ingress: [{action: Allow, protocol: TCP, source: {namespaceSelector: ns == 'y'}, destination: {ports: [80]}}]"""),
         [(*TCP80, lambda s, d: ns(d) != "x" or ns(s) == "y"), ("TCP", 81, lambda s, d: ns(d) != "x")]),
    Case("calico-order-decides", calico("GlobalNetworkPolicy", "allow-a", """
order: 1
selector: projectcalico.org/namespace == 'x'
ingress: [{action: Allow, source: {selector: pod == 'a'}}]""") + calico("GlobalNetworkPolicy", "deny-rest", """
order: 2
selector: projectcalico.org/namespace == 'x'
ingress: [{action: Deny}]"""), [(*TCP80, lambda s, d: ns(d) != "x" or s.endswith("/a"))]),
    Case("calico-order-reversed", calico("GlobalNetworkPolicy", "allow-a", """
order: 3
selector: projectcalico.org/namespace == 'x'
ingress: [{action: Allow, source: {selector: pod == 'a'}}]""") + calico("GlobalNetworkPolicy", "deny-rest", """
order: 2
selector: projectcalico.org/namespace == 'x'
ingress: [{action: Deny}]"""), [(*TCP80, lambda s, d: ns(d) != "x")]),
    Case("calico-log-notnets-egress", calico("GlobalNetworkPolicy", "c-only-to-x-a", """
selector: pod == 'c'
egress:
- {action: Log}
- {action: Deny, destination: {notNets: ["@x/a@/32"]}}
- {action: Allow}"""), [(*TCP80, lambda s, d: not s.endswith("/c") or d == "x/a")]),
    Case("calico-unordered-after-k8s", k8s("x-a-allows-b", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]""") + calico("NetworkPolicy", "deny-all", """
selector: all()
ingress: [{action: Deny}]""", "x"), [(*TCP80, lambda s, d: ns(d) != "x" or (d == "x/a" and s == "x/b"))]),
]
