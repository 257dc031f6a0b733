"""Benchmark: `pulumi up` / `pulumi destroy` of the default lab — acklab's `alicloud` plugin against the first wave's
dynamic providers, in the same run.

Issue 17's target: the default lab, now an unmodified pulumi-alicloud program served by the plugin, comes up no
slower than it did as a program of `netns` dynamic-provider resources. That older way is commit ``BASELINE`` (the
last before the default program moved to the SDK): it is checked out in a temporary git worktree beside this
one and run with the same engine and virtualenv (its own modules first on ``PYTHONPATH``, byte-compiled like
this tree's), on the same machine, rounds alternating between the two (which goes first alternates too). Each
round is a new stack on a private file backend: `pulumi up --yes` (preview included, as users run it), then
`pulumi destroy --yes`. The report (``reports/bench/default_lab_up.{json,md}``) gives medians and the ratios;
the exit status is 1 when the plugin's median `pulumi up` is above ``TARGET`` times the baseline's or a round
failed. Everything made is removed in ``finally`` (stacks, namespaces, the worktree).

    python -m bench.default_lab_up [--rounds R]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
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
BASELINE = "f4e9bf4"  # the default program as `netns` dynamic providers (before issue 17)
# "No slower", read with the noise of this shared 2-core machine: the same program's `pulumi up` varies by ±10 %
# from run to run here, so a median within 5 % of the baseline's counts as no slower.
TARGET = 1.05
TIMEOUT = 300


def progress(message: str) -> None:
    print(f"[default_lab_up] {message}", flush=True)


def worktree(path: Path) -> None:
    """The baseline's tree at ``path``, byte-compiled (as the set-up compiles this one)."""
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), BASELINE], cwd=PROJECT,
                   check=True, capture_output=True, text=True)
    (path / ".venv").symlink_to(VENV)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "compileall", "-q", "acklab", "netns", "__main__.py"],
                   cwd=path, check=True, capture_output=True)


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=PROJECT, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=PROJECT, capture_output=True)


class Stack:
    """One stack of one program (``tree``) on a private backend; ``up`` and ``destroy`` return seconds."""

    def __init__(self, tree: Path, backend: Path, baseline: bool) -> None:
        self.tree, self.lab = tree, new_lab()
        self.env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_HOME": str(backend / "home"),
                    "PULUMI_CONFIG_PASSPHRASE": "", "PULUMI_SKIP_UPDATE_CHECK": "true",
                    "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
                    "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"}
        self.env.pop("ACKLAB_PROVIDER_TIMINGS", None)
        if baseline:  # its own netns/ and acklab/ before the editable install's
            self.env["PYTHONPATH"] = str(tree)
        self.settings = tree / f"Pulumi.{self.lab}.yaml"

    def pulumi(self, *args: str) -> float:
        start = time.monotonic()
        proc = subprocess.run(["pulumi", *args, "--non-interactive", "--stack", self.lab], cwd=self.tree,
                              env=self.env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        elapsed = time.monotonic() - start
        if proc.returncode != 0:
            raise RuntimeError(f"pulumi {args[0]} in {self.tree} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return elapsed

    def round(self) -> dict[str, float]:
        subprocess.run(["pulumi", "stack", "init", self.lab, "--non-interactive"], cwd=self.tree, env=self.env,
                       capture_output=True, text=True, timeout=TIMEOUT, check=True)
        destroyed = False
        try:
            up = self.pulumi("up", "--yes")
            destroy = self.pulumi("destroy", "--yes")
            destroyed = True
            return {"up_s": round(up, 3), "destroy_s": round(destroy, 3)}
        finally:
            self.remove(destroyed)

    def remove(self, destroyed: bool) -> None:
        if not destroyed:
            with contextlib.suppress(Exception):
                self.pulumi("destroy", "--yes")
        with contextlib.suppress(Exception):
            self.pulumi("stack", "rm", "--yes", "--force")
        self.settings.unlink(missing_ok=True)
        remove_lab(self.lab)


def measure(rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"plugin": [], "dynamic": []}
    with tempfile.TemporaryDirectory(prefix="acklab-bench-up-") as tmp:
        base_tree, backend = Path(tmp) / "baseline", Path(tmp) / "backend"
        (backend / "home").mkdir(parents=True)
        try:
            worktree(base_tree)
            trees = {"plugin": (PROJECT, False), "dynamic": (base_tree, True)}
            for i in range(rounds):
                order = ["plugin", "dynamic"] if i % 2 == 0 else ["dynamic", "plugin"]
                for way in order:
                    tree, baseline = trees[way]
                    runs[way].append(Stack(tree, backend, baseline).round())
                    progress(f"round {i + 1}/{rounds} {way}: {runs[way][-1]}")
        finally:
            remove_worktree(base_tree)
    return runs


def summary(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    med = {way: {k: statistics.median(r[k] for r in rows) for k in ("up_s", "destroy_s")} for way, rows in runs.items()}
    up_ratio = med["plugin"]["up_s"] / med["dynamic"]["up_s"]
    return {"median": med, "up_ratio": round(up_ratio, 3),
            "destroy_ratio": round(med["plugin"]["destroy_s"] / med["dynamic"]["destroy_s"], 3),
            "passed": up_ratio <= TARGET}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# `pulumi up` / `destroy` of the default lab: the alicloud plugin vs the dynamic providers", "",
             f"{report['started']} · commit {report['commit']} · baseline {BASELINE} · {report['cpus']} CPUs · "
             f"median of {report['rounds']} rounds, alternating", "",
             f"Target: the plugin's median `pulumi up` ≤ {TARGET}x the dynamic providers'.", ""]
    if "error" in report:
        return "\n".join([*lines, f"Failed: {report['error']}", ""])
    s = report["summary"]
    lines += ["| way | up s (median) | destroy s (median) | up s (each round) |", "|---|---:|---:|---|"]
    for way, rows in report["runs"].items():
        lines.append(f"| {way} | {s['median'][way]['up_s']:.2f} | {s['median'][way]['destroy_s']:.2f} | "
                     f"{', '.join(format(r['up_s'], '.2f') for r in rows)} |")
    lines += ["", f"up: {s['up_ratio']:.2f}x, destroy: {s['destroy_ratio']:.2f}x — "
              f"{'PASS' if s['passed'] else 'FAIL'}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.default_lab_up", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per way; medians are reported (default 5)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    report: dict[str, Any] = {"started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                              "commit": git_commit(), "cpus": os.cpu_count(), "python": platform.python_version(),
                              "rounds": args.rounds, "baseline": BASELINE, "target": TARGET}
    try:
        report["runs"] = measure(args.rounds)
        report["summary"] = summary(report["runs"])
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "default_lab_up.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (REPORT_DIR / "default_lab_up.md").write_text(text)
    print(text)
    return 0 if report.get("summary", {}).get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
