"""Recovery after an interrupted ``pulumi up`` (kill -9, OOM, power loss): ``make up`` runs this first.

What the real engine (v3.260.0, file backend) leaves behind when its CLI is killed:
1. A stale stack lock: ``<backend>/.pulumi/locks/organization/<project>/<stack>/<uuid>.json`` holds the pid, host
   and time of the CLI that took it. Nobody deletes it, and every later ``pulumi up`` refuses to start. It is
   removed here only when its owner is provably dead: same host, and no living pulumi CLI with that pid, or
   one that started after the lock was written (the pid was reused). Otherwise nothing is touched.
2. Pending operations in the checkpoint: the engine records "creating" before the provider runs a create; the
   crash leaves it pending. ``pulumi refresh --clear-pending-creates`` drops those and re-reads every known
   resource from the kernel (a half-made one reads as gone and is dropped too).
3. Kernel leftovers: what an interrupted create made carries an id the checkpoint does not know. They are
   removed (``prune_lab``), so the following ``pulumi up`` creates each missing resource exactly once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from acklab.k8s import ack_cluster
from netns.model.errors import LabError
from netns.model.names import check_lab, is_any_cloud_id
from netns.realize.cleanup import prune_lab

# /proc start times are derived from the boot time, which the kernel reports in whole seconds: a process
# that started up to this long after the lock was written still counts as possibly its owner.
START_TIME_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class StackLock:
    path: Path
    pid: int
    hostname: str
    timestamp: datetime

    @classmethod
    def read(cls, path: Path) -> StackLock:
        data = json.loads(path.read_text())
        return cls(path, int(data["pid"]), str(data["hostname"]), datetime.fromisoformat(data["timestamp"]))

    def describe(self) -> str:
        return f"pid {self.pid} on {self.hostname} since {self.timestamp.isoformat(timespec='seconds')}"


def owner_is_dead(lock: StackLock, this_host: str, started_at: Callable[[int], datetime | None]) -> bool:
    """True only when the lock's process provably no longer runs (``started_at``: a pid's start, None if gone)."""
    if lock.hostname != this_host:
        return False  # another machine's process: nothing here can tell
    start = started_at(lock.pid)
    if start is None:
        return True
    return start > lock.timestamp + START_TIME_SLACK  # the pid now belongs to a younger process


def process_started_at(pid: int) -> datetime | None:
    """When the pulumi CLI with pid ``pid`` started; None if no living pulumi CLI has that pid.

    A process at that pid that is not a ``pulumi`` executable cannot be the lock's owner (the pid was reused).
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        executable = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:
        executable = "pulumi"  # cannot tell: assume the worst (a living owner)
    if fields[0] in ("Z", "X") or executable.removesuffix(" (deleted)") != "pulumi":
        return None
    ticks = int(fields[19])  # field 22 of stat: start time in clock ticks after boot
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def checkpoint_ids(deployment: dict[str, Any]) -> set[str]:
    """Every acklab cloud id the checkpoint's resources hold (their ids and any id in their outputs)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if is_any_cloud_id(value):
                found.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for resource in deployment.get("resources") or ():
        walk(resource.get("id"))
        walk(resource.get("outputs"))
    return found


def pending_operations(deployment: dict[str, Any]) -> list[str]:
    return [f"{op['resource']['urn'].rsplit('::', 1)[-1]} ({op['type']})"
            for op in deployment.get("pending_operations") or ()]


def backend_root() -> Path | None:
    """The file backend's folder, or None for another kind of backend (whose locks are not files)."""
    url = os.environ.get("PULUMI_BACKEND_URL", "")
    if not url.startswith("file://"):
        return None
    return Path(os.path.expanduser(url.removeprefix("file://")))


def lock_files(root: Path, project: str, stack: str, pattern: str = "*.json") -> Iterator[Path]:
    for folder in (root / ".pulumi" / "locks" / "organization" / project / stack, root / ".pulumi" / "locks" / stack):
        if folder.is_dir():
            yield from sorted(folder.glob(pattern))


# A lock is written as a .tmp file renamed into place; one left by a kill would count as a foreign lock to
# every later pulumi. One older than this cannot belong to a lock being taken right now.
TEMP_LOCK_AGE = 60.0


def repair_stack_files(root: Path, project: str, stack: str) -> list[Path]:
    """Remove what an interrupted checkpoint write leaves next to the stack file; return what went.

    The file backend writes ``<stack>.json`` atomically (a ``.tmp`` file renamed over it), then its metadata
    sidecar ``<stack>.json.attrs`` in place. Killed in between, the sidecar is empty and every command fails
    with "failed to load checkpoint: EOF", although the checkpoint itself is whole. A sidecar that is not JSON
    is removed (the backend reads a missing one as "no metadata"), and so are leftover ``.tmp`` files.
    Only call this when no pulumi process holds the stack's lock.
    """
    removed = []
    for folder in (root / ".pulumi" / "stacks" / project, root / ".pulumi" / "stacks"):
        for path in sorted(folder.glob(f"{stack}.json*")) if folder.is_dir() else ():
            broken = path.name.endswith(".tmp")
            if path.name.endswith(".attrs"):
                try:
                    broken = not isinstance(json.loads(path.read_text()), dict)
                except ValueError:  # empty or cut short
                    broken = True
            if broken:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def project_name(project_dir: Path) -> str:
    return str(yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["name"])


class Recovery:
    """One lab (Pulumi stack) of the project in ``project_dir``; prints what it does."""

    def __init__(self, lab: str, project_dir: Path) -> None:
        self.lab = check_lab(lab)
        self.project_dir = project_dir

    def pulumi(self, *args: str) -> str:
        result = subprocess.run(["pulumi", *args, "--stack", self.lab, "--non-interactive"], cwd=self.project_dir,
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise LabError(f"pulumi {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def deployment(self) -> dict[str, Any]:
        return json.loads(self.pulumi("stack", "export"))["deployment"]

    def clear_stale_locks(self) -> int:
        """Remove locks of dead owners; raise if a live (or unknowable) owner holds one."""
        root = backend_root()
        if root is None:
            return 0
        this_host = socket.gethostname()
        removed = 0
        project = project_name(self.project_dir)
        for path in lock_files(root, project, self.lab):
            try:
                lock = StackLock.read(path)
            except (ValueError, KeyError) as exc:
                raise LabError(f"stack {self.lab}: cannot read the lock {path}: {exc}") from None
            if not owner_is_dead(lock, this_host, process_started_at):
                raise LabError(f"stack {self.lab} is locked by a running pulumi ({lock.describe()}): wait for it "
                               f"to finish. Only if you are sure it is gone: pulumi cancel --stack {self.lab}")
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".attrs").unlink(missing_ok=True)  # the file blob's metadata
            print(f"removed the stale lock of a dead pulumi ({lock.describe()})")
            removed += 1
        for path in lock_files(root, project, self.lab, "*.tmp"):
            if time.time() - path.stat().st_mtime > TEMP_LOCK_AGE:
                path.unlink(missing_ok=True)
                print(f"removed {path.name}, a lock whose write was interrupted")
                removed += 1
        return removed

    def run(self) -> None:
        stale = self.clear_stale_locks()
        root = backend_root()
        if root is not None:
            project = project_name(self.project_dir)
            for path in repair_stack_files(root, project, self.lab):
                print(f"removed {path.name}, left by an interrupted checkpoint write")
            if not any((folder / f"{self.lab}.json").exists() for folder in (
                    root / ".pulumi" / "stacks" / project, root / ".pulumi" / "stacks")):
                return  # a stack not made yet: nothing to recover
        pending = pending_operations(self.deployment())
        if not stale and not pending:
            return
        if pending:
            print(f"interrupted operations: {', '.join(pending)}")
        self.pulumi("refresh", "--yes", "--skip-preview", "--clear-pending-creates")
        # what a cluster made for its resources (nodes, Terway's ENIs, Services' SLBs) is in no checkpoint
        keep = checkpoint_ids(self.deployment()) | ack_cluster.owned_ids(self.lab)
        removed = prune_lab(self.lab, keep)
        for item in removed:
            print(f"removed leftover {item}")
        print(f"lab {self.lab} recovered: the checkpoint matches the kernel; pulumi up completes the lab")


def main(lab: str, project_dir: Path | None = None) -> int:
    try:
        Recovery(lab, project_dir or Path.cwd()).run()
    except LabError as exc:
        print(f"acklab recover: {exc}", file=sys.stderr)
        return 1
    return 0
