"""Recovery decisions that need no root: when a stack lock is stale, which ids a checkpoint keeps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from acklab.recover import StackLock, checkpoint_ids, lock_files, owner_is_dead, pending_operations

T = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def lock(hostname: str = "vm", pid: int = 4242) -> StackLock:
    return StackLock(Path("x.json"), pid, hostname, T)


def test_lock_of_a_vanished_process_on_this_host_is_stale():
    assert owner_is_dead(lock(), "vm", lambda pid: None)


def test_lock_whose_pid_now_belongs_to_a_younger_process_is_stale():
    assert owner_is_dead(lock(), "vm", lambda pid: T + timedelta(minutes=5))


def test_lock_of_a_process_that_may_still_run_is_kept():
    assert not owner_is_dead(lock(), "vm", lambda pid: T - timedelta(seconds=3))
    # Start times are only known to about a second (boot time in whole seconds): too close to decide.
    assert not owner_is_dead(lock(), "vm", lambda pid: T + timedelta(seconds=1))


def test_lock_of_another_host_is_never_stale():
    assert not owner_is_dead(lock(hostname="other"), "vm", lambda pid: None)


def test_lock_file_as_pulumi_writes_it(tmp_path):
    folder = tmp_path / ".pulumi" / "locks" / "organization" / "acklab" / "lab1"
    folder.mkdir(parents=True)
    (folder / "9755ecf4.json").write_text(json.dumps(
        {"pid": 4815, "username": "root", "hostname": "vm", "timestamp": "2026-11-26T10:10:37.155593635Z"}))
    (folder / "9755ecf4.json.attrs").write_text("{}")
    (tmp_path / ".pulumi" / "locks" / "organization" / "acklab" / "lab10").mkdir()
    found = list(lock_files(tmp_path, "acklab", "lab1"))
    assert [p.name for p in found] == ["9755ecf4.json"]
    read = StackLock.read(found[0])
    assert (read.pid, read.hostname) == (4815, "vm")
    assert read.timestamp == datetime(2026, 11, 26, 10, 10, 37, 155593, tzinfo=UTC)


DEPLOYMENT = {
    "resources": [
        {"type": "pulumi:pulumi:Stack", "outputs": {"vpc_id": "vpc-0000000a"}},
        {"type": "pulumi:providers:pulumi-python", "id": "34bf8c28-e4c4-4385-9665-7bb2f3a3aa31"},
        {"id": "vpc-0000000a", "outputs": {"netns": "acklab-l-vpc-0000000a", "route_table_id": "vtb-0000000a"}},
        {"id": "i-0000000b", "outputs": {"network_interface_id": "eni-0000000c",
                                         "security_groups": ["sg-0000000d"], "private_ip": "192.168.1.10"}},
    ],
    "pending_operations": [
        {"resource": {"urn": "urn:pulumi:l::acklab::pulumi-python:dynamic:Resource::ecs-3",
                      "inputs": {"vswitch_id": "vsw-0000000e"}}, "type": "creating"},
    ],
}


def test_checkpoint_ids_are_the_resources_ids_and_the_ids_in_their_outputs():
    assert checkpoint_ids(DEPLOYMENT) == {"vpc-0000000a", "i-0000000b", "eni-0000000c", "sg-0000000d"}


def test_pending_operations_are_named_by_resource():
    assert pending_operations(DEPLOYMENT) == ["ecs-3 (creating)"]
    assert pending_operations({"resources": []}) == []


def _project_with_lock(tmp_path: Path, monkeypatch, pid: int) -> Path:
    import socket

    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}")
    (tmp_path / "Pulumi.yaml").write_text("name: acklab\nruntime: python\n")
    folder = tmp_path / ".pulumi" / "locks" / "organization" / "acklab" / "lab1"
    folder.mkdir(parents=True)
    path = folder / "1.json"
    path.write_text(json.dumps({"pid": pid, "username": "root", "hostname": socket.gethostname(),
                                "timestamp": datetime.now(UTC).isoformat()}))
    return path


def test_a_live_owners_lock_is_left_alone(tmp_path, monkeypatch):
    import os

    import pytest

    import acklab.recover
    from acklab.recover import Recovery
    from netns.model.errors import LabError

    path = _project_with_lock(tmp_path, monkeypatch, os.getpid())
    assert acklab.recover.process_started_at(os.getpid()) is None  # this process is python, not a pulumi CLI
    started = datetime.now(UTC) - timedelta(minutes=1)
    monkeypatch.setattr(acklab.recover, "process_started_at", lambda pid: started if pid == os.getpid() else None)
    with pytest.raises(LabError, match="locked by a running pulumi"):
        Recovery("lab1", tmp_path).clear_stale_locks()
    assert path.exists()


def test_a_dead_owners_lock_is_removed(tmp_path, monkeypatch):
    import subprocess

    from acklab.recover import Recovery

    child = subprocess.Popen(["true"])
    child.wait()  # reaped: its pid is now free
    path = _project_with_lock(tmp_path, monkeypatch, child.pid)
    assert Recovery("lab1", tmp_path).clear_stale_locks() == 1
    assert not path.exists()


def test_an_interrupted_checkpoint_write_is_repaired(tmp_path):
    from acklab.recover import repair_stack_files

    folder = tmp_path / ".pulumi" / "stacks" / "acklab"
    folder.mkdir(parents=True)
    files = {"lab1.json": "{}", "lab1.json.attrs": "", "lab1.json.18eb92fdbe0b4073.tmp": "{",
             "lab1.json.bak": "{}", "lab1.json.bak.attrs": '{"md5": "x"}', "lab10.json.attrs": ""}
    for name, text in files.items():
        (folder / name).write_text(text)
    removed = repair_stack_files(tmp_path, "acklab", "lab1")
    assert sorted(p.name for p in removed) == ["lab1.json.18eb92fdbe0b4073.tmp", "lab1.json.attrs"]
    assert sorted(p.name for p in folder.iterdir()) == ["lab1.json", "lab1.json.bak", "lab1.json.bak.attrs",
                                                        "lab10.json.attrs"]


def test_a_lock_whose_write_was_interrupted_is_removed_once_old(tmp_path, monkeypatch):
    import os
    import time

    from acklab.recover import TEMP_LOCK_AGE, Recovery

    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}")
    (tmp_path / "Pulumi.yaml").write_text("name: acklab\n")
    folder = tmp_path / ".pulumi" / "locks" / "organization" / "acklab" / "lab1"
    folder.mkdir(parents=True)
    old, fresh = folder / "a.json.18eb92fdbe0b4073.tmp", folder / "b.json.18eb92fdbe0b4074.tmp"
    old.write_text('{"pid": 1')
    fresh.write_text('{"pid": 2')
    past = time.time() - TEMP_LOCK_AGE - 5
    os.utime(old, (past, past))
    assert Recovery("lab1", tmp_path).clear_stale_locks() == 1
    assert not old.exists() and fresh.exists()  # a fresh one may be a lock being taken right now


def test_a_stack_not_made_yet_has_nothing_to_recover(tmp_path, monkeypatch):
    from acklab.recover import Recovery

    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}")
    (tmp_path / "Pulumi.yaml").write_text("name: acklab\n")

    def no_pulumi(*args: str) -> str:
        raise AssertionError(f"pulumi {args} must not run for a stack that does not exist")

    recovery = Recovery("lab1", tmp_path)
    monkeypatch.setattr(recovery, "pulumi", no_pulumi)
    recovery.run()
