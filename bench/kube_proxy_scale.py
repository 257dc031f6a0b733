"""Benchmark: kube-proxy's rules for 1k/5k/10k Services x 2 endpoints — acklab's sync vs raw iptables-restore.

One node (``vpc-route`` datapath, built untimed) with two endpoint pods and a client pod, all real namespaces
with the pod agent answering. For each N, in the same run (median of ``--repeats`` rounds, paths alternating):

- acklab: ``NodeProxier.sync`` from a node without kube-proxy rules — reads the node's ruleset
  (``iptables-save``), compiles N service ports (``acklab.k8s.model.kube_proxy_rules``), applies with one
  ``iptables-restore --noflush`` and records the digest (timed as a whole);
- raw: ``iptables-restore --noflush`` of exactly the text acklab applied (computed untimed), from the same
  empty state — the floor any tool must pay;
- no-op: ``sync`` again with nothing changed (reads the ruleset, compiles, compares; applies nothing);
- first-packet latency: TCP connect time from the client pod to the ClusterIP of the LAST Service in
  ``KUBE-SERVICES`` (the longest linear match), vs the first Service and vs the endpoint pod directly (median of
  50 new connections each).

Target: acklab (compile + apply) <= 1.5x raw. Everything lives in a lab of this run (``acklab-b<hex>-``) and is
removed in ``finally``. Reports: ``reports/bench/kube_proxy_scale.{json,md}``.

    python -m bench.kube_proxy_scale [N ...] [--repeats 3]
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

from acklab.k8s.model.kube_proxy_rules import Endpoint, ServicePortInfo
from acklab.k8s.model.objects import parse_documents
from acklab.k8s.model.pod_network import Network, plan
from acklab.k8s.realize.kube_proxy_rules import NodeProxier, Ruleset
from acklab.k8s.realize.pod_network import converge_node, current_placements, k8s_lock, load_records
from bench.ecs_scale import REPORT_DIR, git_commit, new_lab, remove_lab
from bench.pods_scale import build_nodes
from netns.kernel.namespace import Namespace

DEFAULT_NS = (1000, 5000, 10000)
TARGET_RATIO = 1.5
SERVICE_BLOCK = ipaddress.IPv4Network("172.20.0.0/16")  # room for 10k ClusterIPs (the lab's /20 holds 4093)


def pods_manifest() -> list[tuple[dict, str]]:
    def pod(name: str) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}
    return [(pod(n), "bench") for n in ("ep-1", "ep-2", "client")]


def service_ports(n: int, endpoints: list[str]) -> list[ServicePortInfo]:
    hosts = SERVICE_BLOCK.hosts()
    return [ServicePortInfo("bench", f"svc-{i:05d}", "http", "TCP", str(next(hosts)), 80,
                            endpoints=tuple(Endpoint(ip, 8080, is_local=True) for ip in endpoints))
            for i in range(n)]


def flush(namespace: Namespace) -> None:
    """Remove every rule and chain of the node's filter and nat tables (a node without kube-proxy rules)."""
    namespace.run(["iptables-restore"], input="*filter\nCOMMIT\n*nat\nCOMMIT\n")


def connect_ms(netns: str, address: str, port: int, count: int) -> float:
    times = []
    for _ in range(count):
        sock = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5)
        try:
            start = time.perf_counter()
            sock.connect((address, port))
            times.append((time.perf_counter() - start) * 1000)
        finally:
            sock.close()
    return statistics.median(times)


def measure(proxier: NodeProxier, ports: list[ServicePortInfo], first_raw: bool) -> dict[str, float]:
    namespace = proxier.namespace
    flush(namespace)
    text = proxier.text(ports, Ruleset.parse(""))  # what sync applies from an empty node (jumps included)
    out: dict[str, float] = {"lines": float(text.count("\n"))}
    # warm-up, untimed: the first big restore into a namespace pays one-time costs neither path should carry
    namespace.run(["iptables-restore", "--noflush", "--wait"], input=text, timeout=900)

    def raw() -> None:
        flush(namespace)
        start = time.perf_counter()
        namespace.run(["iptables-restore", "--noflush", "--wait"], input=text, timeout=600)
        out["raw_s"] = time.perf_counter() - start

    def acklab() -> None:
        flush(namespace)
        proxier.forget()
        start = time.perf_counter()
        result = proxier.sync(ports)
        out["acklab_s"] = time.perf_counter() - start
        if not result.changed:
            raise RuntimeError("the first sync from an empty node applied nothing")

    for step in ((raw, acklab) if first_raw else (acklab, raw)):
        step()
    if "acklab_s" not in out or proxier.sync(ports).changed:  # acklab's rules must be the ones in place now
        flush(namespace)
        proxier.forget()
        proxier.sync(ports)
    start = time.perf_counter()
    if proxier.sync(ports).changed:
        raise RuntimeError("a sync with nothing changed applied rules")
    out["noop_s"] = time.perf_counter() - start
    return out


def run(sizes: list[int], repeats: int) -> dict:
    lab = new_lab()
    rows = []
    try:
        network = build_nodes(lab)
        network = Network(lab, network.datapath, network.nodes[:1], network.cluster_cidr)
        cluster = parse_documents(pods_manifest())
        with k8s_lock(lab):
            converge_node(network, "node-1", plan(network, cluster, current_placements(lab)))
        pods = {r.pod.name: r for r in load_records(lab).values()}
        endpoints = [pods["ep-1"].ip, pods["ep-2"].ip]
        node = network.nodes[0]
        proxier = NodeProxier(lab, node.name, node.netns)
        direct = connect_ms(pods["client"].netns, endpoints[0], 8080, 50)
        for n in sizes:
            ports = service_ports(n, endpoints)
            samples = [measure(proxier, ports, first_raw=r % 2 == 1) for r in range(repeats)]
            row = {"services": n, "lines": int(samples[0]["lines"])}
            for key in ("acklab_s", "raw_s", "noop_s"):
                row[key] = statistics.median(s[key] for s in samples)
            row["ratio"] = row["acklab_s"] / row["raw_s"]
            row["connect_last_ms"] = connect_ms(pods["client"].netns, ports[-1].cluster_ip, 80, 50)
            row["connect_first_ms"] = connect_ms(pods["client"].netns, ports[0].cluster_ip, 80, 50)
            row["connect_direct_ms"] = direct
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        remove_lab(lab)
    return {"benchmark": "kube_proxy_scale", "started": datetime.datetime.now(datetime.UTC).isoformat(
        timespec="seconds"), "commit": git_commit(), "machine": {"kernel": platform.release(),
                                                                  "cpus": __import__("os").cpu_count()},
            "repeats": repeats, "target_ratio": TARGET_RATIO, "rows": rows,
            "met": all(r["ratio"] <= TARGET_RATIO for r in rows)}


def markdown(report: dict) -> str:
    lines = [f"# kube-proxy rules: acklab sync vs raw iptables-restore (median of {report['repeats']})", "",
             f"Kernel {report['machine']['kernel']}, {report['machine']['cpus']} CPUs, commit {report['commit']}.",
             "", "| Services (2 ep) | restore lines | acklab compile+apply | raw iptables-restore | ratio | "
             "no-op sync | connect last svc | first svc | pod direct |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['services']} | {r['lines']} | {r['acklab_s']:.3f} s | {r['raw_s']:.3f} s | "
                     f"{r['ratio']:.2f}x | {r['noop_s']:.3f} s | {r['connect_last_ms']:.3f} ms | "
                     f"{r['connect_first_ms']:.3f} ms | {r['connect_direct_ms']:.3f} ms |")
    lines += ["", f"Target acklab <= {report['target_ratio']}x raw: {'met' if report['met'] else 'NOT met'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kube_proxy_scale", description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=list(DEFAULT_NS), metavar="N")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    report = run(args.sizes, args.repeats)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "kube_proxy_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    (REPORT_DIR / "kube_proxy_scale.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
