"""NetworkPolicy truth tables on the kernel: namespaces x, y, z with pods a, b, c (labels pod=a..c, ns=x..z),
each serving TCP and UDP on 80 and 81 with named ports (``serve-80-tcp`` ...), like the upstream netpol e2e.

A matrix probes every (source pod, destination pod) pair at once (threads, short timeouts) and is compared with
the reference evaluator's matrix and, for key cases, with hand-written expectations.
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import yaml

from acklab.k8s import netpol_kernel
from acklab.k8s.model import parse_documents
from acklab.k8s.network_policy import Endpoint, allowed, parse_policies
from acklab.k8s.pods import load_records
from netns.kernel.namespace import Namespace
from tests import k8stools as k

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
NODE_OF = {"a": "node-1", "b": "node-2", "c": "node-1"}  # same-node and cross-node pairs in every matrix
PAIRS = [(f"{s}/{p}", f"{t}/{q}") for s in NAMESPACES for p in PODS for t in NAMESPACES for q in PODS]


def base_manifests(namespace_labels: dict[str, dict[str, str]] | None = None,
                   pod_labels: dict[str, dict[str, str]] | None = None) -> str:
    """The x/y/z namespaces and their pods; ``pod_labels`` ("x/b" → labels) replaces some pods' labels."""
    docs = []
    for ns in NAMESPACES:
        labels = {"ns": ns, **(namespace_labels or {}).get(ns, {})}
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        for pod in PODS:
            ports = [{"name": f"serve-{n}-{proto.lower()}", "containerPort": n, "protocol": proto}
                     for n in (80, 81) for proto in ("TCP", "UDP")]
            docs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": pod, "namespace": ns,
                                      "labels": (pod_labels or {}).get(f"{ns}/{pod}", {"pod": pod})},
                         "spec": {"nodeName": NODE_OF[pod],
                                  "containers": [{"name": "agnhost", "image": "agnhost", "ports": ports}]}})
    return yaml.safe_dump_all(docs)


def policy(text: str) -> str:
    return "---\n" + textwrap.dedent(text).strip() + "\n"


def probe(netns: str, address: str, protocol: str, port: int, timeout: float = 0.6) -> bool:
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
    lab: str
    network: k.Network
    namespace_labels: dict[str, dict[str, str]] | None = None
    pod_labels: dict[str, dict[str, str]] | None = None
    records: dict = field(default_factory=dict)  # the pods' records, read once they are made

    def setup_pods(self) -> list[str]:
        changes = k.converge(self.network, base_manifests(pod_labels=self.pod_labels))
        self.records = dict(load_records(self.lab))
        return changes

    def cluster(self, policies: str):
        docs = yaml.load_all(base_manifests(self.namespace_labels, self.pod_labels) + policies,
                             Loader=yaml.CSafeLoader)
        return parse_documents([(d, "test.yaml") for d in docs])

    def apply(self, policies: str) -> list[str]:
        nodes = [(n.name, n.netns) for n in self.network.nodes]
        return netpol_kernel.converge(self.lab, self.cluster(policies), nodes, self.network.datapath)

    def endpoints(self, cluster) -> dict[str, Endpoint]:
        eps = netpol_kernel.endpoints_from_records(self.records.values(), cluster.namespace_labels)
        return {e.key: e for e in eps}

    def expected(self, policies: str, protocol: str, port: int) -> dict[tuple[str, str], bool]:
        cluster = self.cluster(policies)
        parsed = parse_policies(cluster.network_policies)
        eps = self.endpoints(cluster)
        return {(s, d): s == d or allowed(parsed, eps[s], eps[d], protocol, port) for s, d in PAIRS}

    def matrix(self, protocol: str, port: int) -> dict[tuple[str, str], bool]:
        records = self.records
        with ThreadPoolExecutor(max_workers=len(PAIRS)) as pool:
            futures = {(s, d): pool.submit(probe, records[s].netns, records[d].ip, protocol, port)
                       for s, d in PAIRS}
            return {pair: f.result() for pair, f in futures.items()}


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
