"""Throughput and latency of the pod datapaths, against node → node measured in the same run.

For each datapath (Terway ENI multi-IP, VPC-route, VXLAN) a cluster is built on the kernel the way the kernel
tests build it (`tests/k8stools.build_cluster`: VPC, two nodes and the datapath's cloud side, then the pods through
the same `converge_node` the Ansible role calls; no Pulumi, which would only add set-up time). In it:

- node → node (ECS → ECS on one vSwitch through the VPC's fabric): the baseline;
- pod → pod on the same node, pod → pod on the other node;
- pod → ClusterIP and client → SLB → pod: "n/a" until Services exist (issue 6).

Each pair: one iperf3 TCP stream (`iperf3 -J`, 1 s omitted, then ``--seconds``), repeated ``--repeats`` times with
all clusters built first and the runs interleaved over every datapath and pair, the median reported;
latency: the mean round trip of ``ping`` (50 echoes, 10 ms apart).
A figure is judged against node → node of its own cluster, measured in the same round seconds before, with a 10%
tolerance (as k8s-netperf does): the median of the per-round ratios ``>= 0.9`` passes. MTU and the offloads
(`ethtool -k`) of the interfaces on the path are recorded.

Writes reports/bench/netperf.{json,md,png}. Run as root: `make bench` or `python -m bench.netperf`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

from acklab.k8s.pods import load_records, start_iperf3, stop_iperf3
from bench.ecs_scale import REPORT_DIR, git_commit, new_lab
from netns.kernel.namespace import Namespace
from netns.realize.cleanup import clean_lab
from tests import k8stools as k

DATAPATHS = ("terway-eniip", "vpc-route", "vxlan")
BASELINE = "node→node"
PATHS = (BASELINE, "pod→pod same node", "pod→pod other node")
NOT_YET = {"pod→ClusterIP": "n/a until Services (issue 6)", "client→SLB→pod": "n/a until Services (issue 6)"}
TOLERANCE = 0.10  # k8s-netperf's default: a figure within 10% of the baseline passes
OFFLOADS = ("tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload",
            "tx-checksumming", "rx-checksumming")
MANIFEST = textwrap.dedent("""
    apiVersion: v1
    kind: Namespace
    metadata: {name: demo}
    """) + k.pinned_pod("a", "node-1") + k.pinned_pod("b", "node-1") + k.pinned_pod("c", "node-2")


@dataclass
class Pair:
    client: str  # namespace
    server: str  # namespace
    address: str
    interfaces: dict[str, tuple[str, str]]  # label → (namespace, device) on the path, for MTU and offloads


@dataclass
class Result:
    datapath: str
    path: str
    gbps: list[float] = field(default_factory=list)
    retransmits: list[int] = field(default_factory=list)
    rtt_us: list[float] = field(default_factory=list)
    median_gbps: float = 0.0
    median_rtt_us: float = 0.0
    ratio: float = 0.0  # median over the rounds of (this run / the cluster's node→node run of the same round)
    passed: bool = False


def build(lab: str, datapath: str) -> dict[str, Pair]:
    """The datapath's cluster with pods a, b on node-1 and c on node-2; the pairs to measure."""
    network, nodes, _ = k.build_cluster(lab, datapath)
    if datapath == "vpc-route":  # routed pod blocks are not group members: ACK's rule for the pod CIDR
        k.allow(lab, k.NODE_SG, "sgr-0000000f", "all", -1, "10.244.0.0/16")
    k.converge(network, MANIFEST)
    pods = {r.pod.name: r for r in load_records(lab).values()}
    a, b, c = pods["a"], pods["b"], pods["c"]
    node1, node2 = (n.namespace.name for n in nodes)
    node_dev = {"terway-eniip": "eth1", "vpc-route": "eth0", "vxlan": "flannel.1"}[datapath]
    return {
        BASELINE: Pair(node1, node2, "192.168.1.11", {"node eth0": (node1, "eth0")}),
        "pod→pod same node": Pair(a.netns, b.netns, b.ip, {"pod eth0": (a.netns, "eth0")}),
        "pod→pod other node": Pair(a.netns, c.netns, c.ip, {"pod eth0": (a.netns, "eth0"),
                                                            f"node {node_dev}": (node1, node_dev)}),
    }


def iperf3(pair: Pair, seconds: int) -> tuple[float, int]:
    """One TCP stream client → server: (Gbit/s received, retransmits)."""
    result = Namespace(pair.client).run(["iperf3", "-c", pair.address, "-t", str(seconds), "-O", "1", "-J"],
                                        timeout=seconds + 30)
    end = json.loads(result.stdout)["end"]
    return end["sum_received"]["bits_per_second"] / 1e9, int(end["sum_sent"].get("retransmits", 0))


def ping_rtt_us(pair: Pair, count: int = 50) -> float:
    out = Namespace(pair.client).run(["ping", "-q", "-c", str(count), "-i", "0.01", "-W", "1", pair.address],
                                     timeout=30).stdout
    match = re.search(r"= [\d.]+/([\d.]+)/", out)
    if not match:
        raise RuntimeError(f"no round-trip times from ping {pair.address}: {out}")
    return float(match.group(1)) * 1000


def interface_settings(netns: str, device: str) -> dict[str, str]:
    """MTU and offloads of one interface (``ethtool -k``; "n/a" where ethtool is missing)."""
    ns = Namespace(netns)
    link = json.loads(ns.run(["ip", "-j", "link", "show", "dev", device]).stdout)[0]
    settings = {"mtu": str(link["mtu"])}
    features = ns.run(["ethtool", "-k", device], check=False) if _has_ethtool() else None
    for name in OFFLOADS:
        found = re.search(rf"^{name}: (\w+)", features.stdout, re.M) if features and features.returncode == 0 else None
        settings[name] = found.group(1) if found else "n/a"
    return settings


def _has_ethtool() -> bool:
    return subprocess.run(["sh", "-c", "command -v ethtool"], capture_output=True).returncode == 0


def measure(datapaths: tuple[str, ...], seconds: int, repeats: int) -> tuple[list[Result], dict]:
    """Every datapath's cluster at once; the runs interleaved over all of them, so a burst of load on the shared
    machine hits every datapath and pair alike."""
    labs = {datapath: new_lab() for datapath in datapaths}
    servers: list[tuple[str, str]] = []
    try:
        pairs = {datapath: build(lab, datapath) for datapath, lab in labs.items()}
        for datapath, lab in labs.items():
            for server in {pair.server for pair in pairs[datapath].values()}:
                start_iperf3(lab, server)
                servers.append((lab, server))
        results = {(dp, path): Result(dp, path) for dp in datapaths for path in pairs[dp]}
        for _ in range(repeats):
            for (datapath, path), result in results.items():
                pair = pairs[datapath][path]
                gbps, retransmits = iperf3(pair, seconds)
                result.gbps.append(round(gbps, 3))
                result.retransmits.append(retransmits)
                result.rtt_us.append(round(ping_rtt_us(pair), 1))
        settings = {dp: {f"{path}: {label}": interface_settings(netns, device)
                         for path, pair in pairs[dp].items() for label, (netns, device) in pair.interfaces.items()}
                    for dp in datapaths}
    finally:
        for lab, server in servers:
            stop_iperf3(lab, server)
        for lab in labs.values():
            clean_lab(lab)
    return judge(list(results.values())), settings


def judge(results: list[Result]) -> list[Result]:
    """Medians, and each figure against node→node of its datapath: paired per round (the runs seconds apart),
    then the median of the ratios, so the load of other jobs on the machine, drifting over minutes, mostly
    cancels out. Passes at >= 0.9 (10% tolerance)."""
    baselines = {r.datapath: r.gbps for r in results if r.path == BASELINE}
    for result in results:
        result.median_gbps = round(statistics.median(result.gbps), 3)
        result.median_rtt_us = round(statistics.median(result.rtt_us), 1)
        pairs = zip(result.gbps, baselines[result.datapath], strict=True)
        result.ratio = round(statistics.median(g / b for g, b in pairs), 3)
        result.passed = result.ratio >= 1 - TOLERANCE
    return results


def verdict(results: list[Result]) -> dict[str, object]:
    """The seed's claim: routed pod traffic across nodes reaches >= 0.9x node→node, VXLAN does not."""
    across = {r.datapath: r.ratio for r in results if r.path == "pod→pod other node"}
    routed = {dp: across[dp] for dp in ("terway-eniip", "vpc-route") if dp in across}
    holds = bool(routed) and all(v >= 1 - TOLERANCE for v in routed.values())
    vxlan = across.get("vxlan")
    text = (f"routed pod→pod across nodes: {', '.join(f'{dp} {v:.2f}x' for dp, v in routed.items())} of node→node "
            f"({'holds' if holds else 'does not hold'}: target >= {1 - TOLERANCE:.1f}x)")
    if vxlan is not None:
        text += f"; VXLAN {vxlan:.2f}x ({'below' if vxlan < min(routed.values(), default=0) else 'not below'} " \
                f"the routed datapaths)"
    return {"routed_ratios": routed, "vxlan_ratio": vxlan, "claim_holds": holds, "text": text}


def markdown(report: dict) -> str:
    lines = [
        "# Pod network throughput: iperf3 per datapath against node → node",
        "",
        f"{report['started']} · commit {report['commit']} · {report['cpus']} CPUs · kernel {report['kernel']} · "
        f"load average before {report['loadavg_before']} · one TCP stream, {report['seconds']} s "
        f"(+1 s omitted) x {report['repeats']} rounds, median; ratio = median over the rounds of "
        f"(run / node→node run of the same cluster and round); "
        f"pass: ratio ≥ {1 - TOLERANCE:.1f}",
        "",
        "| datapath | path | Gbit/s (median) | runs | ratio to node→node | ≥ 0.9x | RTT µs (ping) | retransmits |",
        "|---|---|---:|---|---:|:---:|---:|---:|",
    ]
    for r in report["results"]:
        runs = " / ".join(f"{g:.1f}" for g in r["gbps"])
        lines.append(f"| {r['datapath']} | {r['path']} | {r['median_gbps']:.2f} | {runs} | {r['ratio']:.2f} | "
                     f"{'PASS' if r['passed'] else 'FAIL'} | {r['median_rtt_us']:.0f} | {sum(r['retransmits'])} |")
    for path, why in NOT_YET.items():
        lines.append(f"| all | {path} | {why} | | | | | |")
    lines += ["", f"**Verdict**: {report['verdict']['text']}.", "", "## MTU and offloads", "",
              "| datapath | interface | MTU | " + " | ".join(OFFLOADS) + " |",
              "|---|---|---:|" + "---|" * len(OFFLOADS)]
    for datapath, settings in report["settings"].items():
        for where, s in settings.items():
            lines.append(f"| {datapath} | {where} | {s['mtu']} | " + " | ".join(s[o] for o in OFFLOADS) + " |")
    lines.append("")
    return "\n".join(lines)


def chart(report: dict, path: Path) -> None:
    """Gbit/s (median, whiskers min-max), the judged ratio to node→node (line at 0.9) and the ping round trip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    fig, (gbps_axis, ratio_axis, rtt_axis) = plt.subplots(1, 3, figsize=(15, 4.4))
    width = 0.8 / len(DATAPATHS)
    for i, datapath in enumerate(DATAPATHS):
        rows = [next((r for r in results if r["datapath"] == datapath and r["path"] == p), None) for p in PATHS]
        xs = [j + (i - 1) * width for j in range(len(PATHS))]
        gbps = [r["median_gbps"] if r else 0 for r in rows]
        low = [r["median_gbps"] - min(r["gbps"]) if r else 0 for r in rows]
        high = [max(r["gbps"]) - r["median_gbps"] if r else 0 for r in rows]
        gbps_axis.bar(xs, gbps, width, yerr=[low, high], capsize=3, label=datapath)
        ratio_axis.bar(xs, [r["ratio"] if r else 0 for r in rows], width, label=datapath)
        rtt_axis.bar(xs, [r["median_rtt_us"] if r else 0 for r in rows], width, label=datapath)
    ratio_axis.axhline(1 - TOLERANCE, color="black", linestyle="dashed", linewidth=0.8)
    for axis, title in ((gbps_axis, "iperf3, one TCP stream: Gbit/s (median, min-max)"),
                        (ratio_axis, "ratio to node→node of the same round (pass ≥ 0.9)"),
                        (rtt_axis, "ping round trip (µs)")):
        axis.set_xticks(range(len(PATHS)), PATHS, fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=7)
    fig.suptitle(f"acklab pod datapaths: {report['cpus']} CPUs, kernel {report['kernel']}, "
                 f"load average {report['loadavg_before']} before, {report['repeats']} rounds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 duration per run (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per pair (default %(default)s)")
    parser.add_argument("--datapath", action="append", choices=DATAPATHS, help="only these (default: all)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root: builds network namespaces")
    report: dict = {"started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    "commit": git_commit(), "cpus": os.cpu_count(), "kernel": platform.release(),
                    "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()), "seconds": args.seconds,
                    "repeats": args.repeats, "tolerance": TOLERANCE, "results": [], "settings": {},
                    "not_measured": NOT_YET}
    results, report["settings"] = measure(tuple(args.datapath or DATAPATHS), args.seconds, args.repeats)
    report["results"] = [asdict(r) for r in results]
    for r in results:
        print(f"{r.datapath} {r.path}: {r.median_gbps:.2f} Gbit/s ({r.ratio:.2f}x), {r.median_rtt_us:.0f} us",
              flush=True)
    report["verdict"] = verdict([Result(**r) for r in report["results"]])
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "netperf.json").write_text(json.dumps(report, indent=2) + "\n")
    (REPORT_DIR / "netperf.md").write_text(markdown(report))
    chart(report, REPORT_DIR / "netperf.png")
    print(report["verdict"]["text"])
    print(f"wrote {REPORT_DIR / 'netperf.json'}, netperf.md, netperf.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
