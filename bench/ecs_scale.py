"""Benchmark: create and destroy N ECS through acklab's kernel layer, against raw ``ip -batch``.

For each N (10, 50, 100 by default) and in the same run, the same topology is built two ways:

- acklab: ``VpcRouter.create`` + ``VSwitch.create`` (untimed), then N x ``EcsInstance.create`` (timed), then
  N x ``EcsInstance.delete`` (timed), then ``VpcRouter.delete`` (untimed);
- raw: the router namespace, bridge and gateway address (untimed), then per ECS ``netns add``, a veth pair
  created inside the router namespace with its peer placed into the ECS namespace, master bridge, alias, up,
  address and default route (timed), then the veths and namespaces deleted (timed). iproute2 has no per-line
  namespace switch in batch mode, so the raw path runs one ``ip -batch -`` for the ``netns add`` lines, one
  ``ip -n ROUTER -batch -`` for the router side and one ``ip -n ECS -batch -`` per ECS.

The acklab path is whatever ``netns.realize`` does today: besides the links, it binds each ENI's address in
the VPC's source check (nftables) and, on delete, clears the port's facts and removes the namespace (the veth
goes with it, as after ``ip netns del``); the source check's deferred removals are carried out inside the
timed delete phase. The raw path has no source check.

Each measurement is repeated (3 times by default, acklab-first and raw-first alternately) and the median
is reported. The target is acklab <= 1.5x raw per ECS (create + delete). (`pulumi up` / `destroy` of the
default program: ``bench/default_lab_up.py``, against the dynamic providers it replaced.)

Every namespace is made under labs of this run only (``acklab-<lab>-...``) and removed in ``finally``;
nothing is created in the root namespace. The report goes to ``reports/bench/`` (JSON and Markdown); the
exit status is non-zero if the target is missed for any N (or a measurement failed), after the report.

    python -m bench.ecs_scale [N ...] [--repeats 3] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import io
import ipaddress
import json
import os
import platform
import pstats
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netns.kernel.namespace import list_namespaces
from netns.model import addressing
from netns.model.names import check_lab, mark, netns_name
from netns.realize import LOCK_DIR, source_check
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch

PROJECT = Path(__file__).resolve().parents[1]
REPORT_DIR = PROJECT / "reports" / "bench"
DEFAULT_NS = (10, 50, 100)
TARGET = 1.5
VPC_CIDR = ipaddress.IPv4Network("10.0.0.0/16")
VSW_CIDR = ipaddress.IPv4Network("10.0.0.0/20")
VPC_ID = "vpc-0000be01"
VSW_ID = "vsw-0000be01"


def new_lab() -> str:
    """A lab (and stack) name of this run only: 'b' and 8 hex digits."""
    return check_lab("b" + secrets.token_hex(4))


def instance_id(n: int) -> str:
    return f"i-{n:08x}"


def eni_id(n: int) -> str:
    return f"eni-{n:08x}"


def remove_lab(lab: str) -> list[str]:
    """Remove every namespace of ``lab`` and its files under /run/acklab; return the namespaces removed."""
    removed = []
    for namespace in list_namespaces(mark(lab)):
        with contextlib.suppress(Exception):
            namespace.remove()
        removed.append(namespace.name)
    state = Path(LOCK_DIR) / check_lab(lab)  # lock and rulesets of this run's lab only
    shutil.rmtree(state, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(f"{state}.lock")  # older layout: /run/acklab/<lab>.lock
    return removed


def assert_lab(lab: str, expected: int, path: str) -> None:
    """The lab holds exactly ``expected`` namespaces (checked outside the timed sections)."""
    found = len(list_namespaces(mark(lab)))
    if found != expected:
        raise RuntimeError(f"{path} path: lab {lab} has {found} namespaces, expected {expected}")


# --- acklab path -------------------------------------------------------------------------------------------

def acklab_run(lab: str, n: int) -> tuple[float, float]:
    """Create and delete ``n`` ECS through netns.realize; return (create seconds, delete seconds)."""
    router = VpcRouter(lab, VPC_ID)
    try:
        router.create(VPC_CIDR)
        vswitch = VSwitch(router, VSW_ID)
        vswitch.create(VSW_CIDR, "zone-a", "bench")
        instances = [EcsInstance(lab, instance_id(i), eni_id(i)) for i in range(1, n + 1)]

        start = time.perf_counter()
        for i, instance in enumerate(instances, start=1):
            instance.create(vswitch, None, "bench", f"ecs-{i}")
        created = time.perf_counter() - start

        assert_lab(lab, n + 1, "acklab")
        if set(vswitch.used_addresses()) != set(expected_addresses(n)):
            raise RuntimeError("acklab path: ECS addresses differ from the expected lowest-free allocation")

        start = time.perf_counter()
        for instance in instances:
            instance.delete()
        # the source check's deferred removals are part of the cost: carry them out inside the timing
        source_check.flush(router.namespace, router.pending_unbind)
        deleted = time.perf_counter() - start
        if source_check.bound(router.namespace):
            raise RuntimeError("acklab path: the source check still holds entries after every ECS is gone")

        assert_lab(lab, 1, "acklab")
        router.delete()
    finally:
        remove_lab(lab)  # whatever a failure left behind
    return created, deleted


# --- raw path ----------------------------------------------------------------------------------------------

def expected_addresses(n: int) -> list[ipaddress.IPv4Address]:
    """The addresses acklab hands out when none is asked for: the lowest free, in order."""
    hosts = VSW_CIDR.hosts()  # skips the network address, which Alibaba reserves too
    return [next(hosts) for _ in range(n)]


def ip_batch(lines: list[str], netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    result = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if result.returncode != 0:
        where = f" in {netns}" if netns else ""
        raise RuntimeError(f"ip -batch{where} failed: {result.stderr.strip()}")


def raw_run(lab: str, n: int) -> tuple[float, float]:
    """The same topology with iproute2 only; return (create seconds, delete seconds)."""
    router = netns_name(lab, VPC_ID)
    gateway = addressing.gateway(VSW_CIDR)
    ecs = [(netns_name(lab, instance_id(i)), eni_id(i), instance_id(i), addr, f"ecs-{i}")
           for i, addr in enumerate(expected_addresses(n), start=1)]
    try:
        ip_batch([f"netns add {router}"])
        ip_batch([
            "link set lo up",
            f"route add unreachable {VPC_CIDR}",
            f"link add name {VSW_ID} type bridge",
            f'link set {VSW_ID} alias "zone=zone-a cidr={VSW_CIDR}" up',
            f"addr add {gateway}/{VSW_CIDR.prefixlen} dev {VSW_ID}",
        ], router)
        # forwarding on in the router namespace only (net.* sysctls are per namespace), as VpcRouter does
        subprocess.run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)

        start = time.perf_counter()
        ip_batch([f"netns add {name}" for name, *_ in ecs])
        router_side = []
        for name, eni, inst, addr, label in ecs:
            router_side += [
                f"link add {eni} type veth peer name eth0 netns {name}",
                f'link set {eni} master {VSW_ID} alias "ip={addr} instance={inst} device=0 name={label}" up',
            ]
        ip_batch(router_side, router)
        for name, _eni, _inst, addr, _label in ecs:
            ip_batch([
                "link set lo up",
                "link set eth0 up",
                f"addr add {addr}/{VSW_CIDR.prefixlen} dev eth0",
                f"route add default via {gateway}",
            ], name)
        created = time.perf_counter() - start

        assert_lab(lab, n + 1, "raw")

        start = time.perf_counter()
        ip_batch([f"link del {eni}" for _name, eni, *_ in ecs], router)
        ip_batch([f"netns del {name}" for name, *_ in ecs])
        deleted = time.perf_counter() - start

        assert_lab(lab, 1, "raw")
    finally:
        remove_lab(lab)
    return created, deleted


# --- measurement -------------------------------------------------------------------------------------------

@dataclass
class Sample:
    path: str
    repeat: int
    order: int  # 0: ran first in its repeat, 1: ran second
    create_s: float
    delete_s: float


@dataclass
class Row:
    n: int
    acklab_create_s: float
    acklab_delete_s: float
    raw_create_s: float
    raw_delete_s: float
    acklab_per_ecs_ms: float
    raw_per_ecs_ms: float
    ratio: float
    passed: bool
    samples: list[Sample] = field(default_factory=list)


def measure(n: int, repeats: int, labs: dict[str, str]) -> Row:
    """``repeats`` rounds, acklab first and raw first alternately; medians of each figure."""
    runners: dict[str, Callable[[str, int], tuple[float, float]]] = {"acklab": acklab_run, "raw": raw_run}
    samples = []
    for repeat in range(repeats):
        order = ["acklab", "raw"] if repeat % 2 == 0 else ["raw", "acklab"]
        for position, path in enumerate(order):
            created, deleted = runners[path](labs[path], n)
            samples.append(Sample(path, repeat, position, created, deleted))
            print(f"  N={n:<4} repeat {repeat + 1}/{repeats} {path:<6} create {created:8.3f} s  "
                  f"delete {deleted:8.3f} s", flush=True)

    def median(path: str, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in samples if s.path == path)

    ack_c, ack_d = median("acklab", "create_s"), median("acklab", "delete_s")
    raw_c, raw_d = median("raw", "create_s"), median("raw", "delete_s")
    ratio = (ack_c + ack_d) / (raw_c + raw_d)
    return Row(n, ack_c, ack_d, raw_c, raw_d, 1000 * (ack_c + ack_d) / n, 1000 * (raw_c + raw_d) / n,
               ratio, ratio <= TARGET, samples)


def profile_acklab(lab: str, n: int, out: Path) -> str:
    """cProfile of one acklab create+delete of ``n`` ECS; the top of the report, by cumulative and own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        acklab_run(lab, n)
    finally:
        profiler.disable()
    text = io.StringIO()
    for key in ("cumulative", "tottime"):
        text.write(f"=== acklab create+delete of {n} ECS, sorted by {key} ===\n")
        pstats.Stats(profiler, stream=text).sort_stats(key).print_stats(40)
    out.write_text(text.getvalue())
    profiler.dump_stats(out.with_suffix(".prof"))
    return str(out)


# --- report ------------------------------------------------------------------------------------------------

def git_commit() -> str:
    """HEAD, marked when netns/ (the code measured) differs from it in the working tree."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{commit} (netns/ modified in the working tree)" if git("status", "--porcelain", "--", "netns") else commit


def iproute2_version() -> str:
    return subprocess.run(["ip", "-V"], capture_output=True, text=True).stdout.strip()


def markdown(report: dict) -> str:
    lines = [
        "# ECS scale benchmark: acklab kernel layer vs raw `ip -batch`",
        "",
        f"{report['started']} · commit {report['commit']} · {report['cpus']} CPUs · kernel {report['kernel']} · "
        f"{report['iproute2']} · median of {report['repeats']} (acklab-first and raw-first alternately)",
        "",
        f"Target: acklab create+delete per ECS <= {TARGET}x raw.",
        "",
        "| N | acklab create s | acklab delete s | raw create s | raw delete s | acklab ms/ECS | raw ms/ECS "
        "| acklab create ms/ECS | acklab delete ms/ECS | raw create ms/ECS | raw delete ms/ECS | ratio | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in report["results"]:
        n = row["n"]
        lines.append(
            f"| {n} | {row['acklab_create_s']:.3f} | {row['acklab_delete_s']:.3f} | {row['raw_create_s']:.3f} | "
            f"{row['raw_delete_s']:.3f} | {row['acklab_per_ecs_ms']:.2f} | {row['raw_per_ecs_ms']:.2f} | "
            f"{1000 * row['acklab_create_s'] / n:.2f} | {1000 * row['acklab_delete_s'] / n:.2f} | "
            f"{1000 * row['raw_create_s'] / n:.2f} | {1000 * row['raw_delete_s'] / n:.2f} | "
            f"{row['ratio']:.2f}x | {'PASS' if row['passed'] else 'FAIL'} |")
    if report.get("errors"):
        lines += ["", "Errors:", "", *(f"- {e}" for e in report["errors"])]
    if report.get("profile"):
        lines += ["", f"Profile of the acklab path: `{report['profile']}`"]
    lines.append("")
    return "\n".join(lines)


def write_report(report: dict) -> tuple[Path, Path]:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    json_path, md_path = REPORT_DIR / "ecs_scale.json", REPORT_DIR / "ecs_scale.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks, which remove the namespaces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ecs_scale", description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=list(DEFAULT_NS), metavar="N",
                        help="numbers of ECS (default: 10 50 100)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per N; the median is reported (default 3)")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one acklab round at the largest N (reports/bench/profile-N.txt)")
    args = parser.parse_args(argv)
    if any(n < 1 or n > 1000 for n in args.sizes) or args.repeats < 1:
        parser.error("N must be 1..1000 and --repeats at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")

    signal.signal(signal.SIGTERM, _terminate)
    labs = {"acklab": new_lab(), "raw": new_lab()}
    report: dict = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(), "cpus": os.cpu_count(), "kernel": platform.release(),
        "iproute2": iproute2_version(), "python": platform.python_version(), "repeats": args.repeats,
        "target_ratio": TARGET, "labs": labs, "results": [], "errors": [],
    }
    print(f"labs: {labs}", flush=True)
    try:
        for n in args.sizes:
            try:
                report["results"].append(asdict(measure(n, args.repeats, labs)))
            except Exception as exc:
                report["errors"].append(f"N={n}: {type(exc).__name__}: {exc}")
                print(f"  N={n} failed: {exc}", file=sys.stderr, flush=True)
        if args.profile:
            out = REPORT_DIR / f"profile-{max(args.sizes)}.txt"
            REPORT_DIR.mkdir(parents=True, exist_ok=True)
            report["profile"] = profile_acklab(labs["acklab"], max(args.sizes), out)
    except BaseException as exc:  # SIGTERM, Ctrl-C: the report says the run is incomplete
        report["errors"].append(f"interrupted: {type(exc).__name__} {exc}")
        raise
    finally:
        for lab in labs.values():
            left = remove_lab(lab)
            if left:
                report.setdefault("removed_leftovers", []).extend(left)
        report["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        json_path, md_path = write_report(report)
    print(markdown(report))
    print(f"report: {json_path} {md_path}")
    missed = [r["n"] for r in report["results"] if not r["passed"]]
    if missed:
        print(f"FAIL: acklab is above {TARGET}x raw for N = {', '.join(map(str, missed))}", file=sys.stderr)
    return 1 if missed or report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
