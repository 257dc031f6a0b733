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


def base_manifests(namespace_labels: dict[str, dict[str, str]] | None = None) -> str:
    docs = []
    for ns in NAMESPACES:
        labels = {"ns": ns, **(namespace_labels or {}).get(ns, {})}
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        for pod in PODS:
            ports = [{"name": f"serve-{n}-{proto.lower()}", "containerPort": n, "protocol": proto}
                     for n in (80, 81) for proto in ("TCP", "UDP")]
            docs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": pod, "namespace": ns, "labels": {"pod": pod}},
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
    records: dict = field(default_factory=dict)  # the pods' records, read once they are made

    def setup_pods(self) -> None:
        k.converge(self.network, base_manifests())
        self.records = dict(load_records(self.lab))

    def cluster(self, policies: str):
        docs = yaml.load_all(base_manifests(self.namespace_labels) + policies, Loader=yaml.CSafeLoader)
        return parse_documents([(d, "test.yaml") for d in docs])

    def apply(self, policies: str) -> list[str]:
        nodes = [(n.name, n.netns) for n in self.network.nodes]
        return netpol_kernel.converge(self.lab, self.cluster(policies), nodes, self.network.datapath)

    def endpoints(self, cluster) -> dict[str, Endpoint]:
        eps = netpol_kernel.endpoints_from_records(self.records.values(), cluster.namespace_labels)
        return {e.key: e for e in eps}

    def expected(self, policies: str, protocol: str, port: int) -> dict[tuple[str, str], bool]:
        cluster = self.cluster(policies)
        parsed = parse_policies(cluster.network_policies, cluster.namespace_labels)
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
