"""The one atomic writer (netns/kernel/files.py): readers never see half a file, writers never share a temporary
file, and the tree has no second hand-written writer."""

from __future__ import annotations

import json
import re
import stat
import threading
from pathlib import Path

import pytest

from netns.kernel.files import write_atomic, write_json

PROJECT = Path(__file__).resolve().parents[2]


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    """A reader polling while two writers rewrite a large JSON file always parses a whole one (with a plain
    ``write_text`` in place, readers catch it empty or cut short)."""
    path = tmp_path / "state.json"
    write_json(path, {"chains": {}})
    done = threading.Event()
    bad: list[str] = []

    def writer(tag: str) -> None:
        for round_ in range(200):
            write_json(path, {"chains": {f"cali-{tag}-{i}": ["-j ACCEPT"] * 20 for i in range(50)}, "n": round_})

    def reader() -> None:
        while not done.is_set():
            text = path.read_text()
            try:
                json.loads(text)
            except ValueError:
                bad.append(text[:40])

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(tag,)) for tag in "ab"]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert bad == []
    assert not [p for p in tmp_path.iterdir() if p.name != "state.json"], "no temporary file left"


def test_mode_and_missing_folder(tmp_path: Path) -> None:
    key = tmp_path / "no" / "such" / "key.pem"
    write_atomic(key, "secret", mode=0o600)
    assert key.read_text() == "secret" and stat.S_IMODE(key.stat().st_mode) == 0o600


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_json(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})  # not serializable: fails before the file is touched
    assert json.loads(path.read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


# A configuration tested before it replaces the live one (haproxy -c, nginx -t) is a candidate swap, not a writer.
CANDIDATE_SWAPS = {"netns/realize/slb.py", "acklab/k8s/realize/ingress.py"}


def test_one_atomic_writer_in_the_tree() -> None:
    renames = re.compile(r"os\.replace\(|\.replace\(self\._|tmp\.replace\(|tmp\.rename\(|\.with_suffix\(\"\.tmp\"\)")
    found = []
    for folder in ("acklab", "netns", "ansible"):
        for path in sorted((PROJECT / folder).rglob("*.py")):
            rel = path.relative_to(PROJECT).as_posix()
            if rel == "netns/kernel/files.py" or rel in CANDIDATE_SWAPS:
                continue
            found += [f"{rel}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1) if renames.search(line)]
    assert found == [], "write through netns.kernel.files instead"
