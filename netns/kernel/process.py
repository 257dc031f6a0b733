"""Processes the lab starts and tracks: read their command line, find them again, end them — by PID only.

No cloud words and no pyroute2 (the pod agent imports this and stays small). A pidfile is never trusted alone:
a PID counts as a daemon's only while it is alive, runs in the expected network namespace and has the expected
command line, so a dead daemon's PID reused by another process is never mistaken for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from netns.kernel.files import read_text, write_atomic

NETNS_DIR = "/run/netns"  # as `ip netns` names them (not imported from namespace.py: no pyroute2 here)


def cmdline(pid: int) -> list[str] | None:
    """The process's argv, or None if it is gone (or has none: a kernel thread, a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]] or None


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone (a read racing the exit gives ESRCH)
        return False


def exiting(pid: int) -> bool:
    """True while a process's main thread has exited (a zombie) but some of its threads have not.

    A killed multi-threaded daemon (Go's are) shows its leader as a zombie before the other threads are gone, and
    the sockets it listens on close only with the last thread: a successor started then fails to bind.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    if alive(pid):
        return False
    return any(_task_running(pid, task) for task in tasks)


def _task_running(pid: int, task: str) -> bool:
    try:
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            return f.read().split(")")[-1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def tracked_pid(pidfile: Path, inode: int | None, matches: Callable[[list[str]], bool] = lambda _argv: True
                ) -> int | None:
    """The PID in ``pidfile`` if that process is alive, in the namespace with ``inode`` and its argv ``matches``."""
    pid = read_pidfile(pidfile)
    if pid is None or inode is None or netns_inode(pid) != inode or not alive(pid):
        return None
    argv = cmdline(pid)
    return pid if argv is not None and matches(argv) else None


def find(matches: Callable[[list[str]], bool]) -> list[int]:
    """PIDs of every process whose argv ``matches`` (one scan of /proc), wherever it runs."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = cmdline(int(entry))
            if argv and matches(argv):
                found.append(int(entry))
    return found


def children(parents: Iterable[int]) -> list[int]:
    """PIDs of the direct children of ``parents`` (one scan of /proc): a daemon's workers."""
    wanted, found = set(parents), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'
            if int(stat.rsplit(b")", 1)[1].split()[1]) in wanted:
                found.append(int(entry))
    return found


def kill_all(pids: list[int]) -> list[int]:
    """SIGKILL each PID; the ones that were still there."""
    killed = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def spawn_in(netns: str, argv: Sequence[str], pidfile: Path, log: Path, cwd: Path | str,
             env: dict[str, str] | None = None, pass_fds: Sequence[int] = ()) -> int:
    """Start ``argv`` detached (own session) inside the named network namespace; its PID goes to ``pidfile``.

    ``nsenter --net`` enters the network namespace only and executes the command in its own place, so the PID is
    the daemon's: this waits (10 s at most) until that PID's command line is ``argv``, so a caller checking
    ``tracked_pid`` next never sees nsenter's. A thread reaps it when it ends: a long-lived caller keeps no zombie.
    A predecessor (the pidfile's PID) still exiting is waited for (10 s at most): its sockets close last.
    """
    previous = read_pidfile(pidfile)
    deadline = time.monotonic() + 10
    while previous is not None and exiting(previous) and time.monotonic() < deadline:
        time.sleep(0.005)
    with open(log, "ab") as out:
        child = subprocess.Popen(["nsenter", f"--net={os.path.join(NETNS_DIR, netns)}", *argv],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, pass_fds=tuple(pass_fds), cwd=cwd, env=env)
    write_atomic(pidfile, f"{child.pid}\n")
    deadline = time.monotonic() + 10
    while cmdline(child.pid) != list(argv) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    threading.Thread(target=child.wait, name=f"reap {os.path.basename(argv[0])}", daemon=True).start()
    return child.pid


def wait_ready(ready_file: Path, pid: int, current: Callable[[], int | None], timeout: float) -> str | None:
    """Wait until the daemon ``pid`` writes its PID into ``ready_file`` (its first work is done; a successor's file
    never counts for it). None when it did; ``"exited"`` when ``current()`` (the tracked PID) is no longer ``pid``;
    ``"timeout"`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while read_text(ready_file).strip() != str(pid):
        if current() != pid:
            return "exited"
        if time.monotonic() > deadline:
            return "timeout"
        time.sleep(0.05)  # the daemon writes a file: there is nothing to wait on
    return None
