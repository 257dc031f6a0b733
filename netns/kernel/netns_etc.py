"""A named network namespace's own /etc files: ``/etc/netns/<name>/<file>``, which ``ip netns exec <name>``
bind-mounts over ``/etc/<file>`` for the command it runs (iproute2's convention; ``resolv.conf`` is the one the
lab writes: a pod's DNS configuration, as a container runtime writes the container's).

No cloud words. ``ip netns delete`` leaves the folder behind: whoever removes a namespace removes its folder too
(``remove``), and ``sweep`` removes the folders of namespaces that are gone (a lab removed with ``acklab clean``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from netns.kernel.files import write_if_changed
from netns.kernel.process import NETNS_DIR

ETC_NETNS = Path("/etc/netns")


def folder(name: str) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a namespace name: {name!r}")
    return ETC_NETNS / name


def write(name: str, filename: str, text: str, mode: int = 0o644) -> bool:
    """Write ``/etc/netns/<name>/<filename>`` unless it holds ``text`` already; True when written."""
    path = folder(name) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_if_changed(path, text, mode)


def remove(name: str) -> bool:
    """Remove the namespace's folder; True when there was one."""
    path = folder(name)
    if not path.is_dir():
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def sweep(wanted: Callable[[str], bool]) -> list[str]:
    """Remove the folders of namespaces that no longer exist and whose name is ``wanted`` (a lab's); their names."""
    try:
        names = sorted(os.listdir(ETC_NETNS))
    except FileNotFoundError:
        return []
    gone = [n for n in names if wanted(n) and not os.path.exists(os.path.join(NETNS_DIR, n))]
    return [n for n in gone if remove(n)]
