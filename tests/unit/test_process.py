"""netns.kernel.process: tracked PIDs are checked against namespace and command line, leftovers found by argv."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from netns.kernel import process


def _sleeper(*tag: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *tag])


def test_tracked_pid_needs_namespace_and_command_line(tmp_path: Path) -> None:
    child = _sleeper("acklab-test-daemon")
    try:
        pidfile = tmp_path / "d.pid"
        pidfile.write_text(f"{child.pid}\n")
        here = process.netns_inode(os.getpid())
        assert process.tracked_pid(pidfile, here, lambda argv: "acklab-test-daemon" in argv) == child.pid
        assert process.tracked_pid(pidfile, here, lambda argv: "something-else" in argv) is None
        assert process.tracked_pid(pidfile, (here or 0) + 1) is None, "another namespace: not ours"
        assert process.tracked_pid(tmp_path / "missing.pid", here) is None
    finally:
        child.kill()
        child.wait(timeout=10)
    assert process.tracked_pid(pidfile, here) is None, "a dead daemon's pidfile names nothing"


def test_find_and_kill_by_command_line_only() -> None:
    ours, other = _sleeper("acklab-test-ours"), _sleeper("acklab-test-other")
    try:
        found = process.find(lambda argv: "acklab-test-ours" in argv)
        assert found == [ours.pid]
        assert process.kill_all(found) == [ours.pid]
        assert ours.wait(timeout=10) != 0 and other.poll() is None
        assert process.kill_all([ours.pid]) == [], "gone already"
    finally:
        for child in (ours, other):
            child.kill()
            child.wait(timeout=10)


def test_a_process_whose_main_thread_exited_is_exiting_until_its_last_thread_ends() -> None:
    # what a SIGKILLed Go daemon looks like for a moment: a zombie leader, threads still holding its sockets
    release = "import threading, ctypes, sys; t = threading.Thread(target=sys.stdin.read); t.start(); " \
              "ctypes.CDLL(None).pthread_exit(None)"
    child = subprocess.Popen([sys.executable, "-c", release], stdin=subprocess.PIPE)
    try:
        wait_until(lambda: not process.alive(child.pid))
        assert process.exiting(child.pid), "the leader is a zombie, a thread still runs"
        assert child.stdin is not None
        child.stdin.close()  # the thread's read returns: the last thread ends
        wait_until(lambda: not process.exiting(child.pid))
    finally:
        child.kill()
        child.wait(timeout=10)
    assert not process.exiting(child.pid), "reaped: nothing left"
    assert not process.exiting(os.getpid()), "a running process is not exiting"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
