"""Benchmark: wrk through the ingress (nginx in an ingress-nginx controller pod → a backend pod) vs nginx serving
directly on loopback, same run; with keep-alive and without (``Connection: close`` on every request).

Topology (one lab of this run, removed in ``finally``): a VPC with one vSwitch; node-1 (an ECS, VPC-route
datapath, its pod CIDR routed to it by a route entry) runs one ingress-nginx controller pod (kube-system,
``app: ingress-nginx``, nginx configured by ``acklab.k8s.realize.ingress.sync`` from an Ingress) and one
backend pod running nginx (``return 200``) on port 8090; a client ECS runs wrk against the
controller pod's IP with ``Host: bench.test``. Baseline: nginx (the same ``return 200``) in the client's namespace,
wrk to 127.0.0.1 — no network hop, no proxy. Every nginx runs ``worker_processes auto`` (ingress-nginx's
default: one worker per CPU).

Measured, alternating ingress-first and loopback-first over ``--repeats`` rounds, medians reported: requests/s
of ``wrk -t2 -c<connections> -d<seconds>s`` for both paths, keep-alive and ``Connection: close``; ratio
ingress / loopback (target >= 0.4). For reference, wrk straight to the backend pod (the network hop without the
proxy) in the same rounds. Not measured here: the SLB → NodePort → kube-proxy hop in front (bench/netperf.py
measures client → SLB → pod).

Writes ``reports/bench/ingress.json`` and ``reports/bench/ingress.md``.

    python -m bench.ingress_wrk [--repeats 3] [--seconds 5] [--connections 50]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from acklab.k8s.model.objects import parse_documents
from acklab.k8s.model.pod_network import Network, Node, plan
from acklab.k8s.realize import ingress as ctl
from acklab.k8s.realize.pod_network import converge_node, current_placements, k8s_lock, load_records
from bench.ecs_scale import REPORT_DIR, new_lab
from netns.kernel.namespace import Namespace
from netns.realize.cleanup import clean_lab
from netns.realize.instance import EcsInstance
from netns.realize.route_entry import RouteEntry
from netns.realize.vpc import VpcRouter, VSwitch

PROJECT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.4
POD_CIDR = "10.244.0.0/24"

BACKEND_CONF = """
worker_processes auto;
daemon on;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000;
    server {{
        listen {listen};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def manifests() -> list[dict]:
    def pod(name: str, ns: str, labels: dict, ports: list[dict]) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": ports}]}}

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
         "spec": {"controller": "k8s.io/ingress-nginx"}},
        pod("ingress-0", "kube-system", {"app": "ingress-nginx"}, [{"name": "http", "containerPort": 80}]),
        pod("web-0", "default", {"app": "web"}, []),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"clusterIP": "172.21.0.10", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8090}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
         "spec": {"ingressClassName": "nginx", "rules": [{"host": "bench.test", "http": {"paths": [
             {"path": "/", "pathType": "Prefix",
              "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}},
    ]


def start_nginx(netns: str, prefix: Path, listen: str) -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(BACKEND_CONF.format(prefix=prefix, listen=listen))
    Namespace(netns).run(["nginx", "-c", str(prefix / "nginx.conf"), "-p", str(prefix), "-e",
                          str(prefix / "error.log")])


def build(lab: str, folder: Path) -> tuple[str, str, str]:
    """The lab; returns (client namespace, the controller pod's IP, the backend pod's IP)."""
    router = VpcRouter(lab, "vpc-0000be03")
    router.create(ipaddress.IPv4Network("192.168.0.0/16"))
    vswitch = VSwitch(router, "vsw-0000be03")
    vswitch.create(ipaddress.IPv4Network("192.168.1.0/24"), "zone-a", "bench")
    node = EcsInstance(lab, "i-0000be31", "eni-0000be31")
    node_ip = node.create(vswitch, "192.168.1.10", "bench node", "node-1")
    client = EcsInstance(lab, "i-0000be39", "eni-0000be39")
    client.create(vswitch, "192.168.1.20", "bench client", "client")
    RouteEntry(router, ipaddress.IPv4Network(POD_CIDR), node.instance_id).create("bench route")
    network = Network(lab, "vpc-route", (Node("node-1", node.namespace.name, node_ip, POD_CIDR),), "10.244.0.0/16")
    docs = manifests()
    cluster = parse_documents([(d, "bench") for d in docs])
    with k8s_lock(lab):
        converge_node(network, "node-1", plan(network, cluster, current_placements(lab)))
    pods = {r.pod.name: r for r in load_records(lab).values()}
    start_nginx(pods["web-0"].netns, folder / "backend", "8090")
    start_nginx(client.namespace.name, folder / "loopback", "127.0.0.1:8088")
    ctl.sync(lab, cluster)
    return client.namespace.name, pods["ingress-0"].ip, pods["web-0"].ip


def wrk(client: str, url: str, seconds: int, connections: int, close: bool, host: str | None = None) -> float:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s"]
    if host:
        args += ["-H", f"Host: {host}"]
    if close:
        args += ["-H", "Connection: close"]
    out = Namespace(client).run([*args, url], timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"wrk saw error responses from {url}:\n{out}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors and (int(errors[1]) or int(errors[3]) or int(errors[4])):  # (read errors: closed connections)
        raise RuntimeError(f"wrk saw socket errors against {url}:\n{out}")
    return float(match[1])


def markdown(report: dict) -> str:
    rows = []
    for mode, label in (("keepalive", "keep-alive"), ("close", "Connection: close")):
        r = report["results"][mode]
        rows += [f"| {label} | client → ingress nginx (pod) → backend pod | {r['ingress_rps']:.0f} | "
                 f"{', '.join(f'{x:.0f}' for x in r['ingress_rounds'])} |",
                 f"| {label} | nginx on loopback | {r['loopback_rps']:.0f} | "
                 f"{', '.join(f'{x:.0f}' for x in r['loopback_rounds'])} |",
                 f"| {label} | client → backend pod directly (no ingress; the network hop alone) | "
                 f"{r['pod_rps']:.0f} | {', '.join(f'{x:.0f}' for x in r['pod_rounds'])} |",
                 f"| {label} | **ratio ingress / loopback** | **{r['ratio']:.2f}** | |"]
    return "\n".join([
        "# Ingress benchmark (wrk through the ingress nginx to a pod vs nginx on loopback)", "",
        f"{report['date']}, commit {report['commit']}, {report['cpus']} CPUs, kernel {report['kernel']}; "
        f"wrk -t2 -c{report['connections']} -d{report['seconds']}s, {report['repeats']} rounds, medians; "
        "every nginx runs one worker per CPU.", "",
        "| connections | path | requests/s (median) | rounds |", "|---|---|---|---|", *rows, "",
        f"Target ratio ≥ {TARGET_RATIO}. The SLB → NodePort → kube-proxy hop in front of the ingress is not part "
        "of this run.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args(argv)
    lab = new_lab()
    paths = ("ingress", "loopback", "pod")
    rounds: dict[str, dict[str, list[float]]] = {m: {p: [] for p in paths} for m in ("keepalive", "close")}
    with tempfile.TemporaryDirectory(prefix="acklab-bench-ingress-") as folder:
        try:
            client, ingress_ip, pod_ip = build(lab, Path(folder))
            urls = {"ingress": f"http://{ingress_ip}/", "loopback": "http://127.0.0.1:8088/",
                    "pod": f"http://{pod_ip}:8090/"}
            for n in range(args.repeats):
                for mode in ("keepalive", "close"):
                    for path in paths if n % 2 == 0 else paths[::-1]:
                        rounds[mode][path].append(wrk(client, urls[path], args.seconds, args.connections,
                                                      mode == "close", "bench.test" if path == "ingress" else None))
                        print(f"  round {n + 1}/{args.repeats} {mode} {path}: {rounds[mode][path][-1]:.0f} req/s",
                              flush=True)
        finally:
            clean_lab(lab)
    results = {}
    for mode, r in rounds.items():
        ingress_rps, loopback_rps = statistics.median(r["ingress"]), statistics.median(r["loopback"])
        results[mode] = {"ingress_rps": ingress_rps, "loopback_rps": loopback_rps,
                         "ratio": round(ingress_rps / loopback_rps, 3),
                         "ingress_rounds": r["ingress"], "loopback_rounds": r["loopback"],
                         "pod_rps": statistics.median(r["pod"]), "pod_rounds": r["pod"]}
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True,
                                 text=True).stdout.strip(),
        "cpus": os.cpu_count(), "kernel": os.uname().release, "repeats": args.repeats, "seconds": args.seconds,
        "connections": args.connections, "target_ratio": TARGET_RATIO, "results": results,
    }
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "ingress.json").write_text(json.dumps(report, indent=2) + "\n")
    (REPORT_DIR / "ingress.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if all(r["ratio"] >= TARGET_RATIO for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
