"""Benchmark: N ECS through the real engine and acklab's ``alicloud`` plugin, against raw ``ip -batch``.

For each N (10, 50, 100 by default) and in the same run:

- plugin: an unmodified pulumi-alicloud program (``import pulumi_alicloud as alicloud``: one VPC 10.0.0.0/16,
  one vSwitch 10.0.0.0/20, a security group with one rule, N ``alicloud.ecs.Instance`` in that group, as the
  SDK's examples write them) on a stack of its own (a new lab), with an empty ``PULUMI_HOME``, a local file
  backend in a temporary folder, an empty passphrase and ``ACKLAB_PROVIDER_TIMINGS`` set: the plugin
  (``acklab/provider/server.py``) then appends one JSON line per Create/Update/Delete with the seconds spent
  inside it. Two rounds of ``pulumi up --yes --skip-preview`` then ``pulumi destroy --yes --skip-preview``:
  the timed one with ``--parallel 1`` (``--parallel P``), so that each handler's time is its own work and not
  its wait on the lab's lock or on the CPU its sibling calls hold; then one with the engine's default
  parallelism, which gives the wall times users see (whole program: language host, the SDK's import, VPC,
  vSwitch, group, the engine's own overhead of about 2 s: none of it is the plugin's work per ECS) and the
  handlers' busy time under parallel calls. The plugin's work per ECS is the time during which an
  ``ecs.Instance`` Create (resp. Delete) handler was running (the union of their intervals), over N.
- kernel: the same N ECS through ``netns.realize`` directly (``bench.ecs_scale.acklab_run``, no security
  group): how much of the plugin's time is the kernel layer;
- raw: the same namespaces, veths, addresses and routes with ``ip -batch`` (``bench.ecs_scale.raw_run``).

Each N is measured ``--repeats`` times (plugin, raw and kernel in a rotating order) and the median of each
figure is reported; ``--large-repeats`` sets the count for N >= 100 (default: the same). The target is the
plugin's ecs.Instance Create + Delete <= 1.5x raw per ECS, for every N; flat in N is shown by the ms/ECS columns
(growth: the largest N's plugin ms/ECS over the smallest N's). The report goes to
``reports/bench/provider_scale.{json,md}``; the exit status is non-zero if a ratio is above the target or a
measurement failed (after the report). Every lab is this run's own and is cleaned in ``finally``; nothing is made
in the root namespace. A progress line is printed before and after each measurement.

    python -m bench.provider_scale [N ...] [--repeats 3] [--large-repeats R] [--no-kernel] [--parallel P]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from bench import ecs_scale
from bench.ecs_scale import DEFAULT_NS, PROJECT, REPORT_DIR, TARGET, VPC_CIDR, VSW_CIDR, new_lab, remove_lab
from netns.kernel.namespace import list_namespaces
from netns.model.names import mark

VENV = PROJECT / ".venv"
INSTANCE = "alicloud:ecs/instance:Instance"
PULUMI_TIMEOUT = 1800

PROGRAM = """\
import pulumi_alicloud as alicloud

zones = alicloud.get_zones(available_resource_creation="VSwitch")
vpc = alicloud.vpc.Network("vpc", vpc_name="bench", cidr_block="{vpc}")
vswitch = alicloud.vpc.Switch("vswitch", vpc_id=vpc.id, cidr_block="{vsw}", zone_id=zones.zones[0].id,
                              vswitch_name="bench")
group = alicloud.ecs.SecurityGroup("group", security_group_name="bench", vpc_id=vpc.id)
alicloud.ecs.SecurityGroupRule("ssh", type="ingress", ip_protocol="tcp", nic_type="intranet", policy="accept",
                               port_range="22/22", priority=1, security_group_id=group.id, cidr_ip="{vpc}")
for i in range(1, {n} + 1):
    alicloud.ecs.Instance(f"ecs-{{i}}",
        availability_zone=zones.zones[0].id,
        security_groups=[group.id],
        instance_type="ecs.g7.large",
        image_id="ubuntu_22_04_x64_20G_alibase_20240101.vhd",
        system_disk_category="cloud_essd",
        instance_name=f"ecs-{{i}}",
        vswitch_id=vswitch.id)
"""


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``(start, seconds)`` intervals: the time at least one of them was running."""
    total, end = 0.0, float("-inf")
    for start, seconds in sorted(intervals):
        stop = start + seconds
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def handler_times(timings: Path, method: str) -> tuple[int, float, float]:
    """(calls, busy seconds, summed seconds) of the successful ecs.Instance ``method`` calls in the timings file."""
    lines = [json.loads(line) for line in timings.read_text().splitlines()] if timings.exists() else []
    calls = [t for t in lines if t["type"] == INSTANCE and t["method"] == method and t["ok"]]
    return len(calls), busy_seconds([(t["start"], t["seconds"]) for t in calls]), sum(t["seconds"] for t in calls)


def plugin_run(lab: str, n: int, parallel: int = 1) -> dict[str, float]:
    """Two rounds of ``pulumi up`` then ``pulumi destroy`` of the N-ECS program on stack ``lab``: one with
    ``--parallel`` (1 by default: the plugin's own work, handler after handler), one with the engine's default
    parallelism (the wall time users see); the plugin's ecs.Instance handler times of both."""
    tmp = Path(tempfile.mkdtemp(prefix="acklab-bench-provider-"))
    project, home = tmp / "project", tmp / "home"
    project.mkdir()
    home.mkdir()
    (tmp / "state").mkdir()
    (project / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
        name: acklab-provider-bench
        runtime:
          name: python
          options:
            virtualenv: {VENV}
        """))
    (project / "__main__.py").write_text(PROGRAM.format(n=n, vpc=VPC_CIDR, vsw=VSW_CIDR))
    env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}", "PULUMI_HOME": str(home),
           "PULUMI_CONFIG_PASSPHRASE": "", "PULUMI_SKIP_UPDATE_CHECK": "true",
           "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true", "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"}

    def pulumi(*args: str, check: bool = True) -> float:
        start = time.perf_counter()
        proc = subprocess.run(["pulumi", *args, "--non-interactive"], cwd=project, env=env, capture_output=True,
                              text=True, timeout=PULUMI_TIMEOUT)
        elapsed = time.perf_counter() - start
        if check and proc.returncode != 0:
            raise RuntimeError(f"pulumi {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return elapsed

    def namespaces(expected: int, after: str) -> None:
        found = len(list_namespaces(mark(lab)))
        if found != expected:
            raise RuntimeError(f"plugin path: lab {lab} has {found} namespaces after {after}, expected {expected}")

    result: dict[str, float] = {}
    initialized = up = False
    try:
        pulumi("stack", "init", lab)
        initialized = True
        # prefix "": the timed round (--parallel P); "engine_": the engine's default parallelism
        for prefix, limit in (("", ("--parallel", str(parallel))), ("engine_", ())):
            timings = tmp / f"timings-{prefix or 'timed'}.jsonl"
            env["ACKLAB_PROVIDER_TIMINGS"] = str(timings)
            up = True
            result[f"{prefix}up_s"] = pulumi("up", "--yes", "--skip-preview", *limit, "--stack", lab)
            namespaces(n + 1, "up")
            result[f"{prefix}destroy_s"] = pulumi("destroy", "--yes", "--skip-preview", *limit, "--stack", lab)
            up = False
            namespaces(0, "destroy")
            for method, key in (("Create", "create"), ("Delete", "delete")):
                calls, busy, summed = handler_times(timings, method)
                if calls != n:
                    raise RuntimeError(f"plugin path: {calls} timed ecs.Instance {method} calls, expected {n}")
                result[f"{prefix}{key}_s"], result[f"{prefix}{key}_sum_s"] = busy, summed
    finally:
        if initialized:
            if up:
                with contextlib.suppress(Exception):
                    pulumi("destroy", "--yes", "--skip-preview", "--stack", lab, check=False)
            with contextlib.suppress(Exception):
                pulumi("stack", "rm", "--yes", "--force", "--stack", lab, check=False)
        clean(lab)
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def clean(lab: str) -> list[str]:
    """Whatever a run left of ``lab`` (namespaces, /run/acklab/<lab>)."""
    from netns.realize import cleanup

    removed: list[str] = []
    with contextlib.suppress(Exception):
        removed += cleanup.clean_lab(lab)
    return removed + remove_lab(lab)


# --- measurement -------------------------------------------------------------------------------------------

def measure(n: int, repeats: int, labs: dict[str, str], kernel: bool, parallel: int = 1) -> dict:
    """``repeats`` rounds in a rotating order; the median of each figure."""
    def plugin(lab: str, n: int) -> dict[str, float]:
        return plugin_run(lab, n, parallel)

    def kernel_layer(lab: str, n: int) -> dict[str, float]:
        created, deleted = ecs_scale.acklab_run(lab, n)
        return {"create_s": created, "delete_s": deleted}

    def raw(lab: str, n: int) -> dict[str, float]:
        created, deleted = ecs_scale.raw_run(lab, n)
        return {"create_s": created, "delete_s": deleted}

    runners: dict[str, Callable[[str, int], dict[str, float]]] = {"plugin": plugin, "raw": raw}
    if kernel:
        runners["kernel"] = kernel_layer
    paths = list(runners)
    samples: list[dict] = []
    for repeat in range(repeats):
        order = paths[repeat % len(paths):] + paths[:repeat % len(paths)]
        for path in order:
            progress(f"N={n:<4} repeat {repeat + 1}/{repeats} {path:<6} ...")
            figures = runners[path](labs[path], n)
            samples.append({"path": path, "repeat": repeat, **figures})
            extra = (f"  (pulumi up {figures['up_s']:.1f} s, destroy {figures['destroy_s']:.1f} s; engine's "
                     f"parallelism: handlers {figures['engine_create_s']:.3f} / {figures['engine_delete_s']:.3f} s, "
                     f"pulumi up {figures['engine_up_s']:.1f} s, destroy {figures['engine_destroy_s']:.1f} s)"
                     if path == "plugin" else "")
            progress(f"N={n:<4} repeat {repeat + 1}/{repeats} {path:<6} create {figures['create_s']:7.3f} s  "
                     f"delete {figures['delete_s']:7.3f} s{extra}")

    def median(path: str, key: str) -> float:
        return statistics.median(s[key] for s in samples if s["path"] == path)

    def per_ecs(seconds: float) -> float:
        return 1000 * seconds / n

    row: dict = {"n": n, "repeats": repeats}
    for path in paths:
        create, delete = median(path, "create_s"), median(path, "delete_s")
        row[path] = {"create_s": create, "delete_s": delete, "create_ms": per_ecs(create),
                     "delete_ms": per_ecs(delete), "total_ms": per_ecs(create + delete)}
    row["plugin"].update(
        create_sum_ms=per_ecs(median("plugin", "create_sum_s")),
        delete_sum_ms=per_ecs(median("plugin", "delete_sum_s")),
        up_s=median("plugin", "up_s"), destroy_s=median("plugin", "destroy_s"),
        engine_total_ms=per_ecs(median("plugin", "engine_create_s") + median("plugin", "engine_delete_s")),
        engine_total_sum_ms=per_ecs(median("plugin", "engine_create_sum_s") + median("plugin", "engine_delete_sum_s")),
        engine_up_s=median("plugin", "engine_up_s"), engine_destroy_s=median("plugin", "engine_destroy_s"))
    row["ratio"] = row["plugin"]["total_ms"] / row["raw"]["total_ms"]
    if kernel:
        row["kernel_ratio"] = row["kernel"]["total_ms"] / row["raw"]["total_ms"]
    row["passed"] = row["ratio"] <= TARGET
    row["samples"] = samples
    return row


# --- report ------------------------------------------------------------------------------------------------

def markdown(report: dict) -> str:
    lines = [
        "# Provider scale benchmark: ecs.Instance through the `alicloud` plugin vs raw `ip -batch`",
        "",
        f"{report['started']} · commit {report['commit']} · {report['cpus']} CPUs · kernel {report['kernel']} · "
        f"{report['iproute2']} · median of {report['repeats']} per N ({report['large_repeats']} for N >= 100)",
        "",
        f"Target: the plugin's ecs.Instance Create + Delete handlers (timed inside the plugin) <= {TARGET}x raw "
        f"`ip -batch` of the same kernel objects, per ECS. Plugin: `pulumi up/destroy --parallel "
        f"{report['parallel']}`, the time at least one handler ran, over N. Kernel: `netns.realize` alone (no "
        "security group). Engine's parallelism: a second up/destroy of the same program with the engine's default "
        "`--parallel`: the plugin's handlers (busy time; the sum of handler times, which counts the waits on the "
        "lab's lock, in brackets) and the engine's wall time (`--skip-preview`, whole program: language host, "
        "SDK import, VPC, vSwitch, group, engine overhead).",
        "",
        "| N | plugin create ms/ECS | plugin delete ms/ECS | plugin ms/ECS | kernel ms/ECS | raw create ms/ECS "
        "| raw delete ms/ECS | raw ms/ECS | ratio | kernel ratio | engine's parallelism: plugin ms/ECS "
        "| `pulumi up` s | `pulumi destroy` s | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in report["results"]:
        p, r, k = row["plugin"], row["raw"], row.get("kernel")
        lines.append(
            f"| {row['n']} | {p['create_ms']:.2f} | {p['delete_ms']:.2f} | {p['total_ms']:.2f} | "
            f"{k['total_ms'] if k else float('nan'):.2f} | {r['create_ms']:.2f} | {r['delete_ms']:.2f} | "
            f"{r['total_ms']:.2f} | {row['ratio']:.2f}x | {row.get('kernel_ratio', float('nan')):.2f}x | "
            f"{p['engine_total_ms']:.2f} ({p['engine_total_sum_ms']:.1f}) | {p['engine_up_s']:.1f} | "
            f"{p['engine_destroy_s']:.1f} | {'PASS' if row['passed'] else 'FAIL'} |")
    if report.get("growth"):
        lines += ["", f"Growth of plugin ms/ECS from N={report['growth']['from']} to N={report['growth']['to']}: "
                      f"{report['growth']['plugin']:.2f}x (raw {report['growth']['raw']:.2f}x)."]
    if report.get("errors"):
        lines += ["", "Errors:", "", *(f"- {e}" for e in report["errors"])]
    lines.append("")
    return "\n".join(lines)


def write_report(report: dict) -> tuple[Path, Path]:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    json_path, md_path = REPORT_DIR / "provider_scale.json", REPORT_DIR / "provider_scale.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.provider_scale", description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=list(DEFAULT_NS), metavar="N",
                        help="numbers of ECS (default: 10 50 100)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per N; the median is reported (default 3)")
    parser.add_argument("--large-repeats", type=int, default=None,
                        help="rounds for N >= 100 (default: --repeats)")
    parser.add_argument("--no-kernel", action="store_true", help="do not measure netns.realize alone")
    parser.add_argument("--parallel", type=int, default=1,
                        help="--parallel of the timed pulumi up/destroy (default 1: handler after handler)")
    args = parser.parse_args(argv)
    large = args.large_repeats or args.repeats
    if any(n < 1 or n > 1000 for n in args.sizes) or args.repeats < 1 or large < 1:
        parser.error("N must be 1..1000 and the repeats at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    if not (VENV / "bin" / "pulumi-resource-alicloud").exists():
        parser.error(f"{VENV}/bin/pulumi-resource-alicloud is missing: run make setup")

    signal.signal(signal.SIGTERM, ecs_scale._terminate)
    labs = {"plugin": new_lab(), "kernel": new_lab(), "raw": new_lab()}
    report: dict = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": ecs_scale.git_commit(), "cpus": os.cpu_count(), "kernel": platform.release(),
        "iproute2": ecs_scale.iproute2_version(), "python": platform.python_version(), "repeats": args.repeats,
        "large_repeats": large, "parallel": args.parallel, "target_ratio": TARGET, "labs": labs, "results": [],
        "errors": [],
    }
    progress(f"labs: {labs}")
    try:
        for n in args.sizes:
            try:
                report["results"].append(measure(n, large if n >= 100 else args.repeats, labs, not args.no_kernel,
                                                  args.parallel))
            except Exception as exc:
                report["errors"].append(f"N={n}: {type(exc).__name__}: {exc}")
                progress(f"N={n} failed: {exc}")
        results = sorted(report["results"], key=lambda r: r["n"])
        if len(results) > 1:
            first, last = results[0], results[-1]
            report["growth"] = {"from": first["n"], "to": last["n"],
                                "plugin": last["plugin"]["total_ms"] / first["plugin"]["total_ms"],
                                "raw": last["raw"]["total_ms"] / first["raw"]["total_ms"]}
    except BaseException as exc:  # SIGTERM, Ctrl-C: the report says the run is incomplete
        report["errors"].append(f"interrupted: {type(exc).__name__} {exc}")
        raise
    finally:
        for lab in labs.values():
            left = clean(lab)
            if left:
                report.setdefault("removed_leftovers", []).extend(left)
        report["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        json_path, md_path = write_report(report)
    print(markdown(report))
    print(f"report: {json_path} {md_path}")
    missed = [r["n"] for r in report["results"] if not r["passed"]]
    if missed:
        print(f"FAIL: the plugin is above {TARGET}x raw for N = {', '.join(map(str, missed))}", file=sys.stderr)
    return 1 if missed or report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
