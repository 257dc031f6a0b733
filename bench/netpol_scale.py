"""Benchmark: NetworkPolicy apply time and per-new-connection latency, 100 policies over 200 pods vs no policy.

One two-node cluster (``vpc-route`` datapath: a /23 per node, so 200 pods fit; built untimed, pods through
``converge_node``): 10 namespaces of 20 pods, labels ``app=app-<k>`` (one per pod of a namespace) and
``tier=front|back``, each pod serving TCP 8080 (named ``http``) and UDP 8081. 100 Kubernetes NetworkPolicies,
10 per namespace: each selects two apps and allows ingress from ``tier=front`` pods of every namespace, from the
namespace's own pods and from an ipBlock, on the named port and UDP 8081; every fifth one also restricts egress
(to any pod of the cluster).

Per round, alternately starting with and without policies:

- no policy: the nodes carry no rule of ours (the state with no policy engine); N TCP connections
  (connect() time, one fresh socket each) from a client to a server on the same node and on the other node.
- 100 policies: the apply from nothing (both nodes: compile, ipset restore, iptables-restore, conntrack sweep),
  a second apply with the same input (no-op: compare with what is applied), an apply with one policy changed
  (incremental), then the same N connections (the server is selected by a policy, the client allowed by it,
  through from-workload and to-workload chains).

Median over ``--repeats`` rounds. Everything lives in a lab of this run (``acklab-b<hex>-``) removed in
``finally``. Reports: ``reports/bench/netpol_scale.{json,md}``.

    python -m bench.netpol_scale [--pods 200] [--policies 100] [--connections 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import platform
import socket
import statistics
import time

from acklab.k8s.model import ipam
from acklab.k8s.model.objects import parse_documents
from acklab.k8s.model.pod_network import Network, Node, plan
from acklab.k8s.realize import network_policy
from acklab.k8s.realize.pod_network import converge_node, current_placements, k8s_lock, load_records
from bench.ecs_scale import REPORT_DIR, git_commit, new_lab, remove_lab
from bench.pods_scale import CLUSTER
from netns.kernel.namespace import Namespace
from netns.realize.instance import EcsInstance
from netns.realize.route_entry import RouteEntry
from netns.realize.vpc import VpcRouter, VSwitch

NAMESPACES = 10


def build_nodes(lab: str) -> Network:
    """Two nodes on one vSwitch, a /23 pod block each, and the VPC route entries that carry pods across."""
    router = VpcRouter(lab, "vpc-0000be03")
    router.create(ipaddress.IPv4Network("192.168.0.0/16"))
    vswitch = VSwitch(router, "vsw-0000be03")
    vswitch.create(ipaddress.IPv4Network("192.168.1.0/24"), "zone-a", "bench")
    cidrs = ipam.node_pod_cidrs(CLUSTER, ["node-1", "node-2"], 23)
    nodes = []
    for n in (1, 2):
        instance = EcsInstance(lab, f"i-0000be1{n}", f"eni-0000be1{n}")
        ip = instance.create(vswitch, None, "bench", f"node-{n}")
        RouteEntry(router, ipaddress.IPv4Network(cidrs[f"node-{n}"]), instance.instance_id).create(f"node-{n}")
        nodes.append(Node(f"node-{n}", instance.namespace.name, ip, str(cidrs[f"node-{n}"])))
    return Network(lab, "vpc-route", tuple(nodes), CLUSTER)


def pod_docs(pods: int) -> list[dict]:
    per_ns = pods // NAMESPACES
    docs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{n}",
                                                                                "labels": {"team": f"t{n % 3}"}}}
                        for n in range(NAMESPACES)]
    for i in range(pods):
        labels = {"app": f"app-{i % per_ns}", "tier": "front" if i % 4 == 0 else "back"}
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"p-{i}", "namespace": f"ns-{i // per_ns}", "labels": labels},
                     "spec": {"nodeName": f"node-{1 + (i // 4) % 2}", "containers": [{"name": "c", "ports": [
                         {"name": "http", "containerPort": 8080}, {"containerPort": 8081, "protocol": "UDP"}]}]}})
    return docs


def policy_docs(policies: int, pods: int, variant: int = 0) -> list[dict]:
    per_ns = pods // NAMESPACES
    docs = []
    for j in range(policies):
        ns, k = j % NAMESPACES, j // NAMESPACES
        apps = [f"app-{(2 * k) % per_ns}", f"app-{(2 * k + 1) % per_ns}"]
        spec: dict = {
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": apps}]},
            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "front"}}},
                                  {"podSelector": {}},
                                  {"ipBlock": {"cidr": "192.168.0.0/16", "except": [f"192.168.{1 + j % 2}.0/24"]}}],
                         "ports": [{"port": "http"}, {"port": 8081 + (variant if j == 0 else 0), "protocol": "UDP"}]}],
        }
        if j % 5 == 0:
            spec["policyTypes"] = ["Ingress", "Egress"]
            spec["egress"] = [{"to": [{"namespaceSelector": {}}]}]
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"pol-{j}", "namespace": f"ns-{ns}"}, "spec": spec})
    return docs


def converge_pods(network: Network, docs: list[dict]) -> None:
    cluster = parse_documents([(d, "bench") for d in docs])
    for node in network.nodes:
        with k8s_lock(network.lab):
            converge_node(network, node.name, plan(network, cluster, current_placements(network.lab)))


def apply(network: Network, docs: list[dict]) -> tuple[float, list[str]]:
    cluster = parse_documents([(d, "bench") for d in docs])
    nodes = [(n.name, n.netns) for n in network.nodes]
    started = time.perf_counter()
    changes = network_policy.converge(network.lab, cluster, nodes, network.datapath)
    return time.perf_counter() - started, changes


def connect_times(netns: str, address: str, port: int, count: int) -> list[float]:
    """connect() time of ``count`` new TCP connections (ms), each on a fresh socket."""
    times = []
    for _ in range(count):
        s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            started = time.perf_counter()
            s.connect((address, port))
            times.append(1000 * (time.perf_counter() - started))
        finally:
            s.close()
    return times


def pick_pairs(lab: str) -> dict[str, tuple[str, str]]:
    """(client netns, server ip) for a same-node and a cross-node pair; client tier=front, server app-1."""
    records = {r.pod.key: r for r in load_records(lab).values()}
    server = records["ns-0/p-1"]
    clients = [r for r in records.values() if r.pod.labels.get("tier") == "front" and r.pod.namespace != "ns-0"]
    same = next(r for r in clients if r.node == server.node)
    other = next(r for r in clients if r.node != server.node)
    return {"same-node": (same.netns, server.ip), "cross-node": (other.netns, server.ip)}


def latency(pairs: dict[str, tuple[str, str]], count: int) -> dict[str, list[float]]:
    return {name: connect_times(netns, ip, 8080, count) for name, (netns, ip) in pairs.items()}


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    lab = new_lab()
    applies: dict[str, list[float]] = {"cold_s": [], "noop_s": [], "incremental_s": [], "remove_s": []}
    conns: dict[str, dict[str, list[float]]] = {"none": {}, "policies": {}}
    chains = sets = 0
    try:
        network = build_nodes(lab)
        pods = pod_docs(args.pods)
        converge_pods(network, pods)
        pairs = pick_pairs(lab)
        policies = policy_docs(args.policies, args.pods)
        changed = policy_docs(args.policies, args.pods, variant=1)
        for repeat in range(args.repeats):
            for mode in (["none", "policies"] if repeat % 2 == 0 else ["policies", "none"]):
                if mode == "none":
                    elapsed, removed = apply(network, pods)
                    if removed:
                        applies["remove_s"].append(elapsed)
                else:
                    cold, _ = apply(network, pods + policies)
                    noop, nothing = apply(network, pods + policies)
                    assert nothing == [], nothing
                    incremental, _ = apply(network, pods + changed)
                    apply(network, pods + policies)
                    applies["cold_s"].append(cold)
                    applies["noop_s"].append(noop)
                    applies["incremental_s"].append(incremental)
                    applied = network_policy.read_applied(Namespace(network.nodes[0].netns))
                    chains, sets = len(applied.chains), len(applied.sets)
                for name, values in latency(pairs, args.connections).items():
                    conns[mode].setdefault(name, []).extend(values)
                print(f"repeat {repeat + 1}/{args.repeats} {mode:<8} " + "  ".join(
                    f"{name} p50 {statistics.median(v[-args.connections:]):.3f} ms"
                    for name, v in conns[mode].items()), flush=True)
    finally:
        remove_lab(lab)
    result = {
        "started": started, "commit": git_commit(), "kernel": platform.release(), "datapath": "vpc-route",
        "pods": args.pods, "policies": args.policies, "connections_per_round": args.connections,
        "repeats": args.repeats, "node1_chains": chains, "node1_ipsets": sets,
        "apply": {k: statistics.median(v) for k, v in applies.items() if v},
        "apply_samples": applies,
        "connect_ms": {mode: {pair: {"p50": statistics.median(v), "p90": p(v, 0.9), "p99": p(v, 0.99)}
                              for pair, v in by_pair.items()} for mode, by_pair in conns.items()},
    }
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "netpol_scale.json").write_text(json.dumps(result, indent=1))
    a, c = result["apply"], result["connect_ms"]
    md = [f"# NetworkPolicy benchmark: {args.policies} policies over {args.pods} pods vs no policy", "",
          f"{started} · commit {result['commit']} · kernel {result['kernel']} · datapath vpc-route · two nodes · "
          f"median of {args.repeats} rounds · node-1 carries {chains} chains and {sets} ipsets", "",
          "| apply (both nodes) | seconds |", "|---|---:|",
          f"| {args.policies} policies from nothing | {a['cold_s']:.3f} |",
          f"| same input again (no-op) | {a['noop_s']:.3f} |",
          f"| one policy changed | {a['incremental_s']:.3f} |"]
    if "remove_s" in a:
        md.append(f"| all policies removed | {a['remove_s']:.3f} |")
    md += ["", "| new TCP connection, connect() ms | no policy p50 / p90 / p99 | "
           f"{args.policies} policies p50 / p90 / p99 |",
           "|---|---:|---:|"]
    for pair in ("same-node", "cross-node"):
        n, w = c["none"][pair], c["policies"][pair]
        md.append(f"| {pair} | {n['p50']:.3f} / {n['p90']:.3f} / {n['p99']:.3f} | "
                  f"{w['p50']:.3f} / {w['p90']:.3f} / {w['p99']:.3f} |")
    md.append("")
    (REPORT_DIR / "netpol_scale.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
