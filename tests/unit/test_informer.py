"""What the controllers on the API share (acklab/k8s/informer.py), without an API server: the Events they record,
the wait for every watch's first list, and the main loop's pause that acts on a signal within a slice."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

from acklab.k8s import informer

SERVICE = {"apiVersion": "v1", "kind": "Service", "namespace": "shop", "name": "web", "uid": "u-1"}


def test_an_event_names_its_object_and_source_as_kubectl_describe_shows_them() -> None:
    body = informer.event(SERVICE, "Warning", "SyncLoadBalancerFailed", "no free address", "cloud-controller",
                          when=0.0)
    assert body["metadata"] == {"generateName": "web.", "namespace": "shop"}
    assert body["involvedObject"] == SERVICE
    assert (body["type"], body["reason"], body["message"], body["count"]) == (
        "Warning", "SyncLoadBalancerFailed", "no free address", 1)
    assert body["firstTimestamp"] == body["lastTimestamp"] == "1970-01-01T00:00:00Z"
    assert body["source"] == {"component": "cloud-controller"} and "reportingInstance" not in body


def test_a_node_agents_event_names_its_node_and_the_message_fits_the_apis_limit() -> None:
    long = "x" * 5000
    body = informer.event({"kind": "NetworkPolicy", "name": "deny", "namespace": None, "uid": None}, "Warning",
                          "PolicyRejected", long, "acklab-policy", host="node-1")
    assert body["metadata"]["namespace"] == "default"  # a cluster-scoped object's Events go to default
    assert body["involvedObject"] == {"kind": "NetworkPolicy", "name": "deny"}  # no nulls sent
    assert len(body["message"]) == informer.EVENT_MESSAGE_MAX
    assert body["source"] == {"component": "acklab-policy", "host": "node-1"} and body["reportingInstance"] == "node-1"


def test_recording_is_a_courtesy_an_api_that_refuses_it_is_ignored() -> None:
    made: list[tuple[str, dict]] = []

    class Core:
        def create_namespaced_event(self, namespace: str, body: dict) -> None:
            made.append((namespace, body))

    class Refusing:
        def create_namespaced_event(self, namespace: str, body: dict) -> None:
            raise RuntimeError("403 Forbidden")

    body = informer.event(SERVICE, "Normal", "Ensured", "ok", "cloud-controller")
    informer.record(Core(), body)
    informer.record(Refusing(), body)  # no exception
    assert made == [("shop", body)]


def test_wait_synced_returns_once_every_watch_listed_or_when_stopping() -> None:
    first, second, stopping = threading.Event(), threading.Event(), threading.Event()
    first.set()
    threading.Timer(0.05, second.set).start()
    informer.wait_synced([first, second], stopping)
    assert second.is_set()
    never = threading.Event()
    stopping.set()
    informer.wait_synced([never], stopping)  # returns: the controller is stopping
    assert not never.is_set()


def test_pause_waits_out_its_time_or_ends_when_stopping() -> None:
    stopping = threading.Event()
    start = time.monotonic()
    assert informer.pause(stopping, 0.05) is False and time.monotonic() - start >= 0.05
    threading.Timer(0.05, stopping.set).start()
    assert informer.pause(stopping, 30.0) is True


def test_a_main_thread_in_pause_acts_on_a_sigterm_given_to_another_thread() -> None:
    """A daemon's loop (``while not pause(stopping, RESYNC)``) ends within a slice when the kernel hands SIGTERM to
    a thread other than the main one: Python runs the handler in the main thread once that next wakes."""
    code = (
        "import signal, sys, threading, time\n"
        "from acklab.k8s import informer\n"
        "stopping = threading.Event()\n"
        "signal.signal(signal.SIGTERM, lambda *_: stopping.set())\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "start = time.monotonic()\n"
        "while not informer.pause(stopping, 30.0):\n"
        "    pass\n"
        "print(round(time.monotonic() - start, 2), flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        others = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall({"x86_64": 234, "aarch64": 131}[os.uname().machine], proc.pid, others[0],
                            signal.SIGTERM) == 0
        assert proc.wait(timeout=5) == 0
        assert float(proc.stdout.read().strip()) < 5.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
