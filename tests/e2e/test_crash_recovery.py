"""kill -9 of `pulumi up` halfway through the default lab, then `acklab clean` or `make up`'s recovery path.

The CLI runs in a session of its own; the kill takes every process of that session (the CLI, the language
host, the program, the provider plugins, which sit in process groups of their own but the same session), so
only what the test started dies.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from acklab.inventory import read_lab
from acklab.recover import Recovery, checkpoint_ids
from netns.kernel.link import links_of
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.errors import LabError
from netns.model.names import is_cloud_id, mark
from netns.realize import state_dir
from tests.e2e.test_pulumi_up import PROJECT, Stack
from tests.labtools import ProbeServer, ping, probe_tcp, wait_for

pytestmark = pytest.mark.e2e
# What a complete `pulumi up` of __main__.py (datapath terway-eniip, the cluster on its API: Terway's agent makes the
# pods' ENIs) records as custom resources: vpc, 3 vSwitches, 3 ECS, sg-ecs with 3 rules, sg-pods with 4 rules (16),
# and the default `alicloud` provider (pulumi:providers:alicloud).
DEFAULT_LAB_RESOURCES = 17


def session_of(pid: int) -> int | None:
    """The session of a living (non-zombie) process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[3]) if fields[0] not in ("Z", "X") else None


def session_processes(sid: int) -> list[int]:
    """Living processes of session ``sid``."""
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and session_of(int(entry)) == sid]


def kill_if_in_session(pid: int, sid: int) -> None:
    """SIGKILL ``pid`` only if it still belongs to session ``sid``: the pidfd pins the process, so a pid
    reused after a listing can never be hit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if session_of(pid) == sid:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended meanwhile
    finally:
        os.close(fd)


def lab_namespaces(lab: str) -> list[str]:
    return [ns.name for ns in list_namespaces(mark(lab))]


class InterruptedUp:
    """`pulumi up` of the stack in a new session, killed with SIGKILL once part of the lab exists."""

    def __init__(self, stack: Stack, log: Path) -> None:
        self.stack = stack
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                ["pulumi", "up", "--yes", "--skip-preview", "--stack", stack.name, "--non-interactive"],
                cwd=stack.project, env=stack.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.sid = self.proc.pid  # a session leader's session id is its pid

    def kill_when(self, ready: str, timeout: float = 120) -> list[str]:
        """Wait until the lab has a namespace whose name contains ``ready``; kill -9; return the namespaces."""
        prefix = mark(self.stack.name)
        wait_for(lambda: any(ready in ns.name for ns in list_namespaces(prefix)), f"a namespace with {ready!r}",
                 timeout=timeout)
        self.kill()
        return lab_namespaces(self.stack.name)

    def kill(self) -> None:
        self.proc.kill()  # the CLI first: nothing new gets started after this (a no-op once it was reaped)
        self.proc.wait()
        for pid in session_processes(self.sid):
            kill_if_in_session(pid, self.sid)
        wait_for(lambda: not session_processes(self.sid), "every process of pulumi's session to end")


@pytest.fixture
def interrupted(stack, tmp_path):
    runs: list[InterruptedUp] = []

    def start() -> InterruptedUp:
        runs.append(InterruptedUp(stack, tmp_path / "interrupted-up.log"))
        return runs[-1]

    yield start
    for run in runs:  # also when the test failed before its kill
        if run.proc.poll() is None or session_processes(run.sid):
            run.kill()


def checkpoint_file(stack: Stack, backend: Path) -> Path:
    return backend / ".pulumi" / "stacks" / "acklab" / f"{stack.name}.json"


def assert_interrupted(stack: Stack, backend: Path) -> None:
    """The kill came before the update was complete: not every resource reached the checkpoint.

    The checkpoint file is read directly: the CLI may refuse to (see test_kill_then_make_down_leaves_nothing).
    """
    latest = json.loads(checkpoint_file(stack, backend).read_text())["checkpoint"]["latest"]
    recorded = [r for r in latest.get("resources") or () if r.get("custom")]
    assert len(recorded) < DEFAULT_LAB_RESOURCES, "the kill came too late: every resource was recorded"


def stack_locks(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / ".pulumi" / "locks").rglob("*.json"))


def test_kill_then_clean_leaves_nothing(root_unchanged, stack, interrupted, lab, tmp_path):
    run = interrupted()
    left = run.kill_when("-i-")
    assert left, "part of the lab exists in the kernel"
    assert_interrupted(stack, tmp_path)
    assert not session_processes(run.sid)
    assert stack_locks(tmp_path), "the killed CLI leaves its stack lock behind"

    result = subprocess.run([str(Path(PROJECT) / ".venv/bin/acklab"), "clean", "--lab", lab],
                            capture_output=True, text=True, env=stack.env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert lab_namespaces(lab) == []
    assert not state_dir(lab).exists()


@pytest.mark.parametrize(("kill_at", "sidecar_cut"), [("-vpc-", False), ("-i-", True)])
def test_kill_then_make_up_converges_and_destroy_leaves_nothing(stack, interrupted, lab, tmp_path, kill_at,
                                                                 sidecar_cut):
    """``sidecar_cut``: the kill also hit between the checkpoint's rename and its sidecar's write (see below)."""
    run = interrupted()
    run.kill_when(kill_at)
    assert_interrupted(stack, tmp_path)
    if sidecar_cut:
        checkpoint_file(stack, tmp_path).with_name(f"{lab}.json.attrs").write_text("")
    assert stack_locks(tmp_path)
    refused = stack.run("up", "--yes", check=False)
    why = refused.stdout + refused.stderr  # the stale lock, or (rarely) a sidecar the kill left empty
    assert refused.returncode != 0 and ("locked" in why or "failed to load checkpoint: EOF" in why), \
        f"a plain pulumi up must refuse after the kill (the reason for the recovery path): {why}"

    started = time.monotonic()
    result = subprocess.run([str(PROJECT / "scripts" / "up.sh"), lab], cwd=PROJECT,
                            env={**stack.env, "KUBERNETES": "false"},  # the cloud's recovery: no cluster
                            capture_output=True, text=True, timeout=600)
    print(f"scripts/up.sh (recovery + up) took {time.monotonic() - started:.1f} s\n{result.stdout}")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "removed the stale lock of a dead pulumi" in result.stdout
    assert stack_locks(tmp_path) == []

    out = stack.outputs()
    ecs = out["instances"]
    assert {name: e["private_ip"] for name, e in ecs.items()} == {
        "ecs-1": "192.168.1.10", "ecs-2": "192.168.1.11", "ecs-3": "192.168.2.10"}
    # Exactly the objects of the checkpoint: no duplicate of an interrupted create, no leftover.
    assert sorted(lab_namespaces(lab)) == sorted([out["vpc_netns"], *(e["netns"] for e in ecs.values())])
    ids = checkpoint_ids(json.loads(stack.run("stack", "export").stdout)["deployment"])
    view = read_lab(lab)
    assert sorted(e.id for e in view.ecs) == sorted(e["id"] for e in ecs.values())
    assert {v.id for v in view.vpcs[0].vswitches} == {i for i in ids if i.startswith("vsw-")}
    router = Namespace(out["vpc_netns"])
    ports = {name for name, kind in links_of(router).items() if kind == "veth" and is_cloud_id(name, "eni")}
    assert ports == {i for i in ids if i.startswith("eni-")}  # primary and secondary ENIs, none twice

    for a, b in itertools.permutations(ecs.values(), 2):
        assert ping(a["netns"], b["private_ip"]), f"{a['private_ip']} -> {b['private_ip']}"
    with ProbeServer(ecs["ecs-3"]["netns"], tcp=(80,), udp=()):
        assert probe_tcp(ecs["ecs-1"]["netns"], "192.168.2.10", 80)

    stack.run("up", "--yes", "--expect-no-changes")
    stack.run("destroy", "--yes")
    assert lab_namespaces(lab) == []


def test_kill_then_make_down_leaves_nothing(stack, interrupted, lab, tmp_path):
    """`make down` after a crash: `acklab recover`, then `pulumi destroy` (the lock no longer stops it).

    Seen in practice: a kill between the atomic rename of the checkpoint and the in-place write of its
    metadata sidecar leaves the sidecar empty, and every pulumi command fails with "failed to load checkpoint:
    EOF". That moment is made certain here by emptying the sidecar.
    """
    interrupted().kill_when("-i-")
    assert_interrupted(stack, tmp_path)
    sidecar = checkpoint_file(stack, tmp_path).with_name(f"{lab}.json.attrs")
    sidecar.write_text("")
    assert "failed to load checkpoint: EOF" in stack.run("stack", "export", check=False).stderr
    acklab = str(PROJECT / ".venv" / "bin" / "acklab")
    recover = subprocess.run([acklab, "recover", "--lab", lab], cwd=PROJECT, env=stack.env, capture_output=True,
                             text=True, timeout=600)
    assert recover.returncode == 0, recover.stderr
    assert f"removed {lab}.json.attrs, left by an interrupted checkpoint write" in recover.stdout
    stack.run("destroy", "--yes")
    assert lab_namespaces(lab) == []
    assert stack_locks(tmp_path) == []
    resources = json.loads(stack.run("stack", "export").stdout)["deployment"].get("resources") or []
    assert resources == []


def test_the_lock_of_a_running_pulumi_is_never_taken(stack, interrupted, lab, tmp_path, monkeypatch):
    run = interrupted()
    wait_for(lambda: any("-vpc-" in name for name in lab_namespaces(lab)), "the VPC namespace", timeout=120)
    locks = stack_locks(tmp_path)
    monkeypatch.setenv("PULUMI_BACKEND_URL", stack.env["PULUMI_BACKEND_URL"])
    with pytest.raises(LabError, match="locked by a running pulumi"):
        Recovery(lab, PROJECT).clear_stale_locks()
    assert run.proc.poll() is None, "pulumi up ended before the check: the check proved nothing"
    assert locks and stack_locks(tmp_path) == locks
    assert run.proc.wait(timeout=300) == 0  # the update it did not disturb completes
    assert len(stack.outputs()["instances"]) == 3
