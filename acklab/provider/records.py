"""What the plugin keeps of an object besides the kernel: the arguments the lab only keeps as state (names,
descriptions, tags, billing), so that ``pulumi import`` and the data sources can answer with them.

The kernel stays the truth for everything realized (a block, an address, a group's policy): a read takes those
from the kernel and only fills the rest from here. A record is one JSON file per object under
``/run/acklab/<lab>/provider/`` (removed with the lab by ``acklab clean``), written whole (atomic rename) by the
one resource that owns the object, so it needs no lock. Secrets (passwords, keys) are never written.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from netns.kernel.files import write_json
from netns.realize import state_dir

# Arguments never written to disk: the engine hands the plugin secrets in plain text (user data may hold some).
_SECRET = re.compile(r"password|secret|private_key|kms_|key_pair|token|user_data", re.IGNORECASE)


def _path(lab: str, object_id: str) -> Path:
    return state_dir(lab) / "provider" / f"{object_id}.json"


def put(lab: str, object_id: str, state: dict[str, Any]) -> None:
    kept = {k: v for k, v in state.items() if v is not None and not _SECRET.search(k)}
    write_json(_path(lab, object_id), kept)


def get(lab: str, object_id: str) -> dict[str, Any]:
    """The record of an object, or an empty one (objects made by the dynamic providers have none)."""
    try:
        return json.loads(_path(lab, object_id).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def drop(lab: str, object_id: str) -> None:
    path = _path(lab, object_id)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the lab's last record gone: no empty folder is left behind
        path.parent.rmdir()
