"""What every controller on the API shares: list then watch one kind (client-go's reflector), a work queue, the
wait for every first list, and the Events they record.

The cloud controller, the ingress controller, the NetworkPolicy agent and the node agent run
:func:`list_and_watch` per kind on a thread and feed a queue; only what they do with a listing and an event
differs. They tell users what went wrong in core/v1 Events (:func:`event`, :func:`record`), as `kubectl describe`
lists them.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

WATCH_TIMEOUT = 120  # seconds a watch request lasts before it is renewed from the last resourceVersion
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)
EVENT_MESSAGE_MAX = 1024  # the API refuses an Event whose message is longer (validation: 1 KiB)


def backoff(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1 = the first)."""
    return BACKOFF[min(max(failures, 1), len(BACKOFF)) - 1]


def list_and_watch(what: str, list_call: Callable[..., Any], args: Sequence[Any],
                   on_list: Callable[[list[dict[str, Any]]], None], on_event: Callable[[str, dict[str, Any]], None],
                   stopping: threading.Event, synced: threading.Event, log: Callable[[str], None],
                   options: Mapping[str, Any] | None = None) -> None:
    """List (``on_list`` with the items, then ``synced`` is set), then watch from the list's resourceVersion
    (``on_event`` per ADDED/MODIFIED/DELETED, bookmarks only move the version), until ``stopping``. A 410 Gone
    lists again at once; any other failure (the API server restarting, a dropped connection) is logged and lists
    again after a backoff. Objects are raw dicts, camelCase as the API sends them. ``options`` go to both the list
    and the watch (a ``field_selector``, as the kubelet's "spec.nodeName=<node>")."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    version: str | None = None
    failures = 0
    while not stopping.is_set():
        try:
            if version is None:
                listing = json.loads(list_call(*args, **(options or {}), _preload_content=False).data)
                on_list(listing.get("items") or [])
                version = listing["metadata"]["resourceVersion"]
                synced.set()
            for event in watch.Watch().stream(list_call, *args, **(options or {}), resource_version=version,
                                              timeout_seconds=WATCH_TIMEOUT, allow_watch_bookmarks=True):
                raw = event["raw_object"]
                if event["type"] == "ERROR":
                    if raw.get("code") == 410:
                        version = None  # too old: list again
                    break
                version = raw["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    on_event(event["type"], raw)
            failures = 0
        except ApiException as exc:
            if exc.status == 410:
                version = None
                continue
            failures += 1
            log(f"watch {what}: {exc.status} {exc.reason}")
            stopping.wait(backoff(failures))
        except Exception as exc:  # whatever broke the stream: list again after a pause
            failures += 1
            version = None
            log(f"watch {what}: {exc!r}")
            stopping.wait(backoff(failures))


class WorkQueue:
    """Keys due at a time; a key is never handed out twice at once (added while busy, it waits for ``done``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}
        self._busy: set[str] = set()

    def add(self, key: str, delay: float = 0.0) -> None:
        with self._cond:
            due = time.monotonic() + delay
            self._due[key] = min(self._due.get(key, due), due)
            self._cond.notify_all()

    def get(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                ready = [(due, key) for key, due in self._due.items() if due <= now and key not in self._busy]
                if ready:
                    key = min(ready)[1]
                    del self._due[key]
                    self._busy.add(key)
                    return key
                if now >= deadline:
                    return None
                upcoming = [due for key, due in self._due.items() if key not in self._busy]
                self._cond.wait(max(0.01, min([deadline, *upcoming]) - now))

    def done(self, key: str) -> None:
        with self._cond:
            self._busy.discard(key)
            self._cond.notify_all()


SIGNAL_SLICE = 1.0  # seconds: the longest a main thread sleeps at a time (see ``pause``)


def pause(stopping: threading.Event, seconds: float) -> bool:
    """``stopping.wait(seconds)`` for a process's main thread, in slices of at most ``SIGNAL_SLICE``: the kernel may
    hand a SIGTERM to any thread (a watch's, a C library's), and Python runs the handler (which sets ``stopping``)
    only when the main thread next runs; one long sleep would keep it waiting until the caller's SIGKILL."""
    deadline = time.monotonic() + seconds
    while not stopping.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        stopping.wait(min(left, SIGNAL_SLICE))
    return True


def wait_synced(synced: Iterable[threading.Event], stopping: threading.Event) -> None:
    """Until every watch has listed once (a reconcile from a partial list would drop what the rest holds), or
    ``stopping``."""
    for one in synced:
        while not one.wait(1.0) and not stopping.is_set():
            pass


def event(involved: Mapping[str, Any], kind: str, reason: str, message: str, component: str,
          host: str | None = None, when: float | None = None) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (``apiVersion``, ``kind``, ``namespace``, ``name``, ``uid``: an
    ObjectReference), ``kind`` Normal or Warning, from ``component`` (on ``host``, for a node's agents)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if when is None else when))
    namespace = involved.get("namespace") or "default"
    source = {"component": component, **({"host": host} if host else {})}
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{involved.get('name')}.", "namespace": namespace},
            "involvedObject": {k: v for k, v in involved.items() if v is not None}, "type": kind, "reason": reason,
            "message": message[:EVENT_MESSAGE_MAX], "count": 1, "firstTimestamp": now, "lastTimestamp": now,
            "source": source, "reportingComponent": component, **({"reportingInstance": host} if host else {})}


def record(core: Any, body: Mapping[str, Any]) -> None:
    """Create the Event (``core``: a CoreV1Api). An Event is a courtesy: never the reason a reconcile fails, so
    an API that refuses it is ignored."""
    with contextlib.suppress(Exception):
        core.create_namespaced_event(body["metadata"]["namespace"], body)
