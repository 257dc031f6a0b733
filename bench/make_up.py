"""Benchmark: `make up` of the default lab after set-up, as a user runs it, and again when nothing changed.

Issue 18's targets are wall times a user sees, so they are absolute (there is no older way of doing the same to
measure beside it): the first `make up` of a new lab (set-up already done: `make setup` is a no-op then) ≤ 60 s —
`pulumi up` of the program, `cluster.yml` (control plane, node agents), `kubectl apply` of labs/default/k8s, the
waits until every pod is Ready and both SLBs and the Ingress answer from the lab's internet — and a second
`make up` with nothing to change ≤ 15 s (Pulumi, the playbook and kubectl each report no change). `make down` is
timed too (no target). The lab is new (a unique name, a private Pulumi backend: the user's stacks are untouched)
and removed in ``finally`` (make down, then whatever is left). The report goes to
``reports/bench/make_up.{json,md}``; the exit status is 1 if a target is missed or a step failed.

    python -m bench.make_up [--rounds R]
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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ecs_scale import REPORT_DIR, git_commit, new_lab, remove_lab

PROJECT = Path(__file__).resolve().parents[1]
VENV = PROJECT / ".venv"
TARGET_FIRST_S = 60.0
TARGET_AGAIN_S = 15.0


def progress(message: str) -> None:
    print(f"[make_up] {message}", flush=True)


def make(target: str, lab: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    result = subprocess.run(["make", target, f"LAB={lab}"], cwd=PROJECT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=900, check=False)
    return round(time.monotonic() - start, 1), result


def nothing_changed(output: str) -> bool:
    """Pulumi's summary says only "unchanged", every play recap ``changed=0``, every kubectl line "unchanged"."""
    summary = output.split("Resources:", 1)[-1].split("Duration:", 1)[0].split()
    recaps = re.findall(r"changed=(\d+)", output)
    applied = re.findall(r"^\S+/\S+ (created|configured|unchanged)$", output, re.MULTILINE)
    return summary[1:] == ["unchanged"] and bool(recaps) and set(recaps) == {"0"} and set(applied) == {"unchanged"}


def one_round(backend: Path) -> dict[str, Any]:
    """A new lab: make up, make up again, make down; their wall times."""
    lab = new_lab()
    backend.mkdir(parents=True)
    env = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}", "MAKEFLAGS": "",
           "PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_HOME": str(backend / "home"),
           "PULUMI_CONFIG_PASSPHRASE": "", "PULUMI_SKIP_UPDATE_CHECK": "true",
           "ACKLAB_MANIFESTS": str(PROJECT / "labs" / "default" / "k8s")}
    result: dict[str, Any] = {"lab": lab}
    downed = False
    try:
        for key, target in (("first_up_s", "up"), ("again_up_s", "up"), ("down_s", "down")):
            progress(f"lab {lab}: make {target} ...")
            seconds, run = make(target, lab, env)
            if run.returncode != 0:
                raise RuntimeError(f"make {target} exited {run.returncode}: {run.stdout[-1500:]}")
            result[key] = seconds
            downed = target == "down"
            progress(f"lab {lab}: make {target} {seconds} s")
            if key == "again_up_s" and not nothing_changed(run.stdout):
                result["again_changed"] = True  # not a "nothing changed" run: reported, and the target fails
    finally:
        if not downed:
            make("down", lab, env)
        remove_lab(lab)
        (PROJECT / f"Pulumi.{lab}.yaml").unlink(missing_ok=True)
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = ["# `make up` of the default lab (issue 18)", "",
             f"{r['started']} · commit {r['commit']} · {r['cpus']} CPUs · kernel {r['kernel']}. A new lab per round "
             "(private Pulumi backend), set-up already done. A shared machine: figures are noisy.", "",
             "| round | first `make up` | again, nothing changed | `make down` |", "|---:|---:|---:|---:|"]
    for i, row in enumerate(r["rounds"], 1):
        lines.append(f"| {i} | {row.get('first_up_s', '-')} s | {row.get('again_up_s', '-')} s "
                     f"| {row.get('down_s', '-')} s |")
    if r.get("median"):
        m = r["median"]
        lines += ["", f"- median first `make up`: **{m['first_up_s']} s** (target ≤ {TARGET_FIRST_S:g} s)",
                  f"- median `make up` with nothing to change: **{m['again_up_s']} s** (target ≤ {TARGET_AGAIN_S:g} s)",
                  f"- median `make down`: {m['down_s']} s"]
    if r["errors"]:
        lines += ["", "## Errors", "", *(f"- {e}" for e in r["errors"])]
    lines += ["", f"Targets: {'all met' if r['met'] else 'NOT all met'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.make_up", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="new labs, one after the other (median reported)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    report: dict[str, Any] = {"started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                              "commit": git_commit(), "cpus": os.cpu_count(), "kernel": platform.release(),
                              "rounds": [], "errors": []}
    with tempfile.TemporaryDirectory(prefix="acklab-bench-make-up-") as folder:
        for n in range(args.rounds):
            try:
                report["rounds"].append(one_round(Path(folder) / f"backend-{n}"))
            except Exception as exc:  # the round's lab is removed; the report names the failure
                report["errors"].append(f"round {n + 1}: {type(exc).__name__}: {exc}")
    complete = [r for r in report["rounds"] if "down_s" in r]
    if complete:
        report["median"] = {k: round(statistics.median(r[k] for r in complete), 1)
                            for k in ("first_up_s", "again_up_s", "down_s")}
    median = report.get("median") or {}
    report["met"] = (not report["errors"] and bool(median) and median["first_up_s"] <= TARGET_FIRST_S
                     and median["again_up_s"] <= TARGET_AGAIN_S
                     and not any(r.get("again_changed") for r in report["rounds"]))
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "make_up.json").write_text(json.dumps(report, indent=2) + "\n")
    (REPORT_DIR / "make_up.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
