"""SLB API state: the pure changes of a server group and an ACL, and their read-modify-write under one lock.

Pulumi creates an ACL's entries (a server group's attachments) in parallel. Each change reads the shared file,
changes it and writes it back; if the read happened before the lab lock was taken, two changes would both
start from the same old content and the later write would drop the earlier one. No kernel object is involved
here (no SLB namespace exists, so nothing is re-synced): the lab's state folder is a temporary one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from netns import realize as realize_pkg
from netns.kernel.files import write_json
from netns.model import slb as model
from netns.realize import slb as realize

LAB = "tlocktest01"
PARALLEL = 20


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The lab's state folder (and its lock) under a temporary directory: no root needed."""
    monkeypatch.setattr(realize_pkg, "LOCK_DIR", str(tmp_path))
    return tmp_path / LAB


def _all_at_once(calls: list[Callable[[], None]]) -> None:
    """Run the calls in threads released together (the widest window for a lost update); re-raise a failure."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def ref(server_id: str, port: int, weight: int) -> model.BackendRef:
    return model.BackendRef(server_id=server_id, weight=weight, port=port)


def test_with_server_adds_and_replaces_the_same_server_and_port():
    group = {"load_balancer_id": "lb-0000000a", "name": "g", "servers": []}
    one = realize.with_server(group, ref("i-00000001", 80, 100))
    two = realize.with_server(one, ref("i-00000001", 81, 0))
    again = realize.with_server(two, ref("i-00000001", 80, 50))  # a new weight for the same server and port
    assert group["servers"] == []  # the old content is left as it was
    assert sorted((s["server_id"], s["port"], s["weight"]) for s in again["servers"]) == [
        ("i-00000001", 80, 50), ("i-00000001", 81, 0)]
    assert realize.without_server(again, "i-00000001", 80)["servers"] == [
        {"server_id": "i-00000001", "port": 81, "weight": 0, "type": "ecs"}]


def test_with_acl_entry_adds_replaces_and_removes():
    acl = {"name": "a", "entries": {"10.0.0.0/8": "old"}}
    assert realize.with_acl_entry(acl, "10.0.0.0/8", "new")["entries"] == {"10.0.0.0/8": "new"}
    assert realize.with_acl_entry(acl, "192.168.0.1/32", "")["entries"] == {"10.0.0.0/8": "old",
                                                                            "192.168.0.1/32": ""}
    assert realize.with_acl_entry(acl, "10.0.0.0/8", None)["entries"] == {}
    assert acl["entries"] == {"10.0.0.0/8": "old"}


def test_acl_entries_set_in_parallel_are_all_kept(state):
    realize.create_acl(LAB, "acl-0000000a", "clients")
    entries = [f"10.1.{n}.0/24" for n in range(PARALLEL)]
    _all_at_once([lambda e=e: realize.set_acl_entry(LAB, "acl-0000000a", e, f"entry {e}", "test") for e in entries])
    assert sorted(realize.acl(LAB, "acl-0000000a")["entries"]) == sorted(entries)

    _all_at_once([lambda e=e: realize.set_acl_entry(LAB, "acl-0000000a", e, None, "test") for e in entries])
    assert realize.acl(LAB, "acl-0000000a")["entries"] == {}


def test_servers_detached_in_parallel_all_go(state):
    servers = [{"server_id": f"i-{n:08x}", "port": 80, "weight": 100, "type": "ecs"} for n in range(PARALLEL)]
    # the group of an SLB that has no namespace here: nothing is re-synced, only the file changes
    write_json(state / "slb" / "groups" / "rsp-0000000a.json",
               {"load_balancer_id": "lb-0000000a", "name": "g", "servers": servers})
    _all_at_once([lambda s=s: realize.detach_server(LAB, "rsp-0000000a", s["server_id"], 80) for s in servers])
    assert realize.server_group(LAB, "rsp-0000000a")["servers"] == []


def test_removing_an_entry_of_an_acl_that_is_gone_is_no_error(state):
    realize.set_acl_entry(LAB, "acl-0000000b", "10.0.0.0/8", None, "test")
    assert realize.acl(LAB, "acl-0000000b") is None
    with pytest.raises(realize.NotFoundError):
        realize.set_acl_entry(LAB, "acl-0000000b", "10.0.0.0/8", "x", "test")


def test_an_acl_in_use_is_not_deleted(state):
    realize.create_acl(LAB, "acl-0000000c", "clients")
    write_json(state / "slb" / "listeners" / "lb-0000000a_http_80.json", {"acl_id": "acl-0000000c"})
    with pytest.raises(realize.LabError, match="still used by listeners of lb-0000000a"):
        realize.delete_acl(LAB, "acl-0000000c")
    assert realize.acl(LAB, "acl-0000000c") is not None
