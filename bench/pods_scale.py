"""Benchmark: bring up and remove N pods through acklab's pod network, against raw ``ip -batch``; RSS per pod.

Both paths use the same two-node cluster (a VPC, one vSwitch, two ECS nodes with a ``cni0`` bridge each; built
untimed through ``netns.realize``) and, in the same run:

- acklab: ``converge_node`` for both nodes with a Deployment of N replicas (timed): per pod a namespace, a veth
  from the node with its peer moved in as eth0, bridge port, address, default route, the pod's record, and the
  node's agent listening on the pod's two declared ports (TCP 8080, UDP 8081); then converge to 0 replicas
  (timed). The datapath is ``vpc-route`` (bridge + host-local IPAM; no VPC route needed for this count).
- raw: the same namespaces, veths, bridge ports, addresses and routes with iproute2: one ``ip -batch`` for the
  ``netns add`` lines, one ``ip -n NODE -batch`` per node for the node side and one ``ip -n POD -batch`` per pod
  (iproute2 has no per-line namespace switch), then ``link del`` per node batch and ``netns del``. The raw path
  opens no sockets and writes no records.

RSS per pod: the agents' resident memory (``VmRSS``) summed over both nodes, divided by N, after bring-up.
Targets: acklab <= 2x raw (create + delete) and <= 5 MiB per pod. Median of ``--repeats`` rounds (acklab-first
and raw-first alternately). Everything lives in labs of this run (``acklab-b<hex>-``) and is removed in
``finally``. Reports: ``reports/bench/pods_scale.{json,md}``.

    python -m bench.pods_scale [N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import platform
import statistics
import time

from acklab.k8s.model import ipam
from acklab.k8s.model.objects import parse_documents
from acklab.k8s.model.pod_network import Network, Node, plan
from acklab.k8s.realize.pod_agent import AgentHandle
from acklab.k8s.realize.pod_network import converge_node, current_placements, host_ifname, k8s_lock
from bench.ecs_scale import REPORT_DIR, assert_lab, git_commit, ip_batch, iproute2_version, new_lab, remove_lab
from netns.model.names import pod_netns_name
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch

TARGET_RATIO = 2.0
TARGET_RSS_MIB = 5.0
CLUSTER = "10.244.0.0/16"


def manifest(replicas: int) -> list[tuple[dict, str]]:
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "netexec", "ports": [
                                     {"containerPort": 8080}, {"containerPort": 8081, "protocol": "UDP"}]}]}}}}
    return [(doc, "bench")]


def build_nodes(lab: str) -> Network:
    router = VpcRouter(lab, "vpc-0000be02")
    router.create(ipaddress.IPv4Network("192.168.0.0/16"))
    vswitch = VSwitch(router, "vsw-0000be02")
    vswitch.create(ipaddress.IPv4Network("192.168.1.0/24"), "zone-a", "bench")
    cidrs = ipam.node_pod_cidrs(CLUSTER, ["node-1", "node-2"], 23)
    nodes = []
    for n in (1, 2):
        instance = EcsInstance(lab, f"i-0000be0{n}", f"eni-0000be0{n}")
        ip = instance.create(vswitch, None, "bench", f"node-{n}")
        nodes.append(Node(f"node-{n}", instance.namespace.name, ip, str(cidrs[f"node-{n}"])))
    return Network(lab, "vpc-route", tuple(nodes), CLUSTER)


def converge(network: Network, replicas: int) -> None:
    cluster = parse_documents(manifest(replicas))
    for node in network.nodes:
        with k8s_lock(network.lab):
            converge_node(network, node.name, plan(network, cluster, current_placements(network.lab)))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def acklab_run(lab: str, n: int) -> dict[str, float]:
    try:
        network = build_nodes(lab)
        converge(network, 0)  # bridges and agents (a node's fixed cost), untimed
        start = time.perf_counter()
        converge(network, n)
        created = time.perf_counter() - start
        assert_lab(lab, n + 3, "acklab")
        agents = [AgentHandle(lab, node.name, node.netns).pid() for node in network.nodes]
        rss = sum(rss_kib(pid) for pid in agents if pid) / 1024
        start = time.perf_counter()
        converge(network, 0)
        deleted = time.perf_counter() - start
        assert_lab(lab, 3, "acklab")
    finally:
        remove_lab(lab)
    return {"create_s": created, "delete_s": deleted, "agents_rss_mib": rss, "rss_per_pod_mib": rss / n}


def raw_run(lab: str, n: int) -> dict[str, float]:
    try:
        network = build_nodes(lab)
        for node in network.nodes:
            block = ipaddress.IPv4Network(node.pod_cidr)
            ip_batch(["link add name cni0 type bridge", f"addr add {ipam.bridge_gateway(block)}/{block.prefixlen} "
                      "dev cni0", "link set cni0 up"], node.netns)
        pods = []
        for i in range(n):
            node = network.nodes[i % 2]
            block = ipaddress.IPv4Network(node.pod_cidr)
            pods.append((node, pod_netns_name(lab, "default", f"raw-{i}"), host_ifname("default", f"raw-{i}"),
                         ipam.host_local_pool(block)[i // 2], ipam.bridge_gateway(block), block.prefixlen))
        start = time.perf_counter()
        ip_batch([f"netns add {name}" for _, name, *_ in pods])
        for node in network.nodes:
            lines = []
            for owner, name, host, *_ in pods:
                if owner is node:
                    lines += [f"link add {host} type veth peer name eth0 netns {name}",
                              f"link set {host} master cni0 up"]
            ip_batch(lines, node.netns)
        for _, name, _, ip, gateway, prefixlen in pods:
            ip_batch(["link set lo up", "link set eth0 up", f"addr add {ip}/{prefixlen} dev eth0",
                      f"route add default via {gateway}"], name)
        created = time.perf_counter() - start
        assert_lab(lab, n + 3, "raw")
        start = time.perf_counter()
        for node in network.nodes:
            ip_batch([f"link del {host}" for owner, _, host, *_ in pods if owner is node], node.netns)
        ip_batch([f"netns del {name}" for _, name, *_ in pods])
        deleted = time.perf_counter() - start
        assert_lab(lab, 3, "raw")
    finally:
        remove_lab(lab)
    return {"create_s": created, "delete_s": deleted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    samples: dict[str, list[dict[str, float]]] = {"acklab": [], "raw": []}
    runners = {"acklab": acklab_run, "raw": raw_run}
    for repeat in range(args.repeats):
        for path in (["acklab", "raw"] if repeat % 2 == 0 else ["raw", "acklab"]):
            sample = runners[path](new_lab(), args.n)
            samples[path].append(sample)
            print(f"repeat {repeat + 1}/{args.repeats} {path:<6} " +
                  "  ".join(f"{k} {v:.3f}" for k, v in sample.items()), flush=True)

    def med(path: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[path])

    ack = med("acklab", "create_s") + med("acklab", "delete_s")
    raw = med("raw", "create_s") + med("raw", "delete_s")
    rss = med("acklab", "rss_per_pod_mib")
    result = {
        "started": started, "commit": git_commit(), "kernel": platform.release(), "iproute2": iproute2_version(),
        "n": args.n, "repeats": args.repeats, "samples": samples,
        "acklab_create_s": med("acklab", "create_s"), "acklab_delete_s": med("acklab", "delete_s"),
        "raw_create_s": med("raw", "create_s"), "raw_delete_s": med("raw", "delete_s"),
        "acklab_ms_per_pod": 1000 * ack / args.n, "raw_ms_per_pod": 1000 * raw / args.n, "ratio": ack / raw,
        "rss_per_pod_mib": rss, "ratio_passed": ack / raw <= TARGET_RATIO, "rss_passed": rss <= TARGET_RSS_MIB,
    }
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "pods_scale.json").write_text(json.dumps(result, indent=1))
    md = [f"# Pods scale benchmark: {args.n} pods, acklab vs raw `ip -batch`", "",
          f"{started} · commit {result['commit']} · kernel {result['kernel']} · {result['iproute2']} · "
          f"median of {args.repeats}", "",
          "| path | create s | delete s | ms/pod (create+delete) |", "|---|---:|---:|---:|",
          f"| acklab | {result['acklab_create_s']:.3f} | {result['acklab_delete_s']:.3f} | "
          f"{result['acklab_ms_per_pod']:.2f} |",
          f"| raw ip -batch | {result['raw_create_s']:.3f} | {result['raw_delete_s']:.3f} | "
          f"{result['raw_ms_per_pod']:.2f} |", "",
          f"Ratio {result['ratio']:.2f}x (target <= {TARGET_RATIO}x): {'PASS' if result['ratio_passed'] else 'FAIL'}.",
          f"Agent RSS per pod {rss:.3f} MiB (target <= {TARGET_RSS_MIB} MiB): "
          f"{'PASS' if result['rss_passed'] else 'FAIL'}.", ""]
    (REPORT_DIR / "pods_scale.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0 if result["ratio_passed"] and result["rss_passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
