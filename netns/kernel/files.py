"""Files that other processes read while we rewrite them: written whole or not at all.

The one atomic writer of the tree. A reader (another provider call, an agent, nginx's master, ``acklab status``)
sees the old content or the new one, never half a file; two writers of the same path never share a temporary
file (each gets its own, next to the target, so the final rename stays on one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one rename (its folder is made if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any, indent: int | None = 1) -> None:
    """``data`` as JSON (sorted keys: the same data gives the same bytes), atomically."""
    write_atomic(path, json.dumps(data, indent=indent, sort_keys=True))


def read_json(path: Path) -> Any:
    """The JSON a file holds, or None when it does not exist (yet) or holds no JSON (a file of someone else's:
    ours are written whole, by ``write_json``)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


def read_text(path: Path) -> str:
    """The file's text, or "" when it does not exist (yet): a pidfile, a ready file, a kubeconfig."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def write_if_changed(path: Path, text: str, mode: int = 0o600) -> bool:
    """Write ``text`` atomically unless the file holds it already; True if written (a daemon reading it must be
    restarted). Mode 600 by default: kubeconfigs carry keys."""
    if read_text(path) == text:
        return False
    write_atomic(path, text, mode)
    return True


def tail(path: Path, size: int = 3000) -> str:
    """The end of a daemon's log, for an error message."""
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"
