"""The health checker of one SLB's layer-4 listeners: ``python -m netns.realize.slb_checker LAB LB_ID``.

Runs inside the SLB's namespace (started by ``netns/realize/slb_l4.py``, ended with the namespace or by PID), so
its checks leave from the SLB's 100.64.0.0/10 address (its leg into the backends' VPC), as Alibaba's do. One thread
per (listener, backend) checks every ``interval`` seconds with ``timeout``: tcp = a handshake then RST; udp = a
datagram, where an ICMP port unreachable means down and silence means up; http = a request whose status class is
one of the listener's codes. ``unhealthy_threshold`` failures in a row mark a backend ``abnormal``,
``healthy_threshold`` successes ``normal`` again; then, under the lab lock, the state file is rewritten and the
listener's slot elements swapped in the router (no rule reload; established flows keep their backend through
conntrack). A backend starts ``normal`` (in rotation), as HAProxy's servers do. The plan is re-read when
``l4.json`` changes.

Connection drain (a listener's ``connection_drain_timeout``): a backend that leaves a listener's rotation keeps its
established flows — conntrack holds them — for the drain timeout, then its flows of that listener are deleted from
the router's conntrack table. The realization records the backends a change took out (removed, weight 0) with
their deadline in ``l4.json`` (so a checker that starts late, or again, still knows them); the checker adds those
its own checks take out. At the deadline: a client's next packet is a new flow, DNATed to a backend in rotation, which
answers a TCP segment of an unknown connection with RST (a UDP flow just moves on). A backend back in rotation
before its deadline is not drained (Alibaba keeps draining it; conntrack cannot tell its old flows from new ones).
Without drain, flows to a removed backend live on until they end or idle out (``established_timeout``).
"""

from __future__ import annotations

import http.client
import queue
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from netns.kernel.files import read_json, write_json
from netns.kernel.namespace import Namespace
from netns.model import slb as model
from netns.model import slb_l4 as l4
from netns.realize import lab_lock
from netns.realize import slb_l4 as realize
from netns.realize.slb import slb_dir

TICK = 0.1


def _from(source: str | None) -> tuple[str, int] | None:
    return (source, 0) if source else None


def check_tcp(ip: str, port: int, timeout: float, source: str | None = None) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout, source_address=_from(source)) as s:
            # close with RST, not FIN: no TIME_WAIT and the backend's application sees no half-open request
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return True
    except OSError:
        return False


def check_udp(ip: str, port: int, timeout: float, source: str | None = None) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            if source:
                s.bind((source, 0))
            s.connect((ip, port))
            s.send(b"acklab health check\n")
            s.recv(2048)
        except ConnectionRefusedError:  # ICMP port unreachable
            return False
        except TimeoutError:  # silence: up, as on Alibaba
            return True
        except OSError:
            return False
    return True


def check_http(ip: str, port: int, health: model.HealthCheck, timeout: float, source: str | None = None) -> bool:
    conn = http.client.HTTPConnection(ip, port, timeout=timeout, source_address=_from(source))
    try:
        conn.request("GET", health.uri, headers={"Host": health.domain or ip})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return f"http_{status // 100}xx" in health.http_codes


def close_flows(router: str, vip: str, listener: model.Listener, server: model.Server) -> int:
    """Delete the conntrack entries of ``listener``'s flows to ``server`` in the router; how many went."""
    result = Namespace(router).run(["conntrack", "-D", "-p", listener.protocol, "--orig-dst", vip,
                                    "--orig-port-dst", str(listener.frontend_port), "--reply-src", server.ip,
                                    "--reply-port-src", str(server.port)], check=False)
    # "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted." (exit status 1 when none matched)
    words = result.stderr.split("): ")[-1].split()
    return int(words[0]) if words and words[0].isdigit() else 0


@dataclass(frozen=True)
class Drain:
    """A backend that left a draining listener's rotation, and when (wall clock) its remaining flows end."""

    listener: model.Listener
    server: model.Server
    deadline: float


def check_once(listener: model.Listener, server: model.Server, source: str | None = None) -> bool:
    """One check of ``server``, from ``source`` (the SLB's 100.64 address) when given."""
    health = listener.health
    port = health.connect_port or server.port
    if health.type == "udp":
        return check_udp(server.ip, port, health.timeout, source)
    if health.type == "http":
        return check_http(server.ip, port, health, health.timeout, source)
    return check_tcp(server.ip, port, health.timeout, source)


@dataclass
class Target:
    """One backend of one listener, checked by its own thread."""

    listener: model.Listener
    server: model.Server
    flips: queue.Queue[tuple[str, str, str]]
    status: str = "normal"
    source: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        health, streak, last = self.listener.health, 0, True
        while not self.stop.is_set():
            started = time.monotonic()
            ok = check_once(self.listener, self.server, self.source)
            streak = streak + 1 if ok == last else 1
            last = ok
            wanted = self.status
            if ok and streak >= health.healthy_threshold:
                wanted = "normal"
            elif not ok and streak >= health.unhealthy_threshold:
                wanted = "abnormal"
            if wanted != self.status:
                self.status = wanted
                self.flips.put((self.listener.listener_id, self.server.name, wanted))
            self.stop.wait(max(0.0, health.interval - (time.monotonic() - started)))


class Checker:
    def __init__(self, lab: str, lb_id: str) -> None:
        self.lab, self.lb_id = lab, lb_id
        self.runtime_dir = slb_dir(lab) / lb_id
        self.flips: queue.Queue[tuple[str, str, str]] = queue.Queue()
        self.targets: dict[tuple[str, str], Target] = {}
        self.seen_mtime = 0.0
        self.plan: l4.L4Plan | None = None
        self.router = ""
        self.rotation: dict[str, dict[str, model.Server]] = {}  # listener id → its servers in rotation, by name
        self.draining: dict[tuple[str, str], Drain] = {}  # (listener id, server name) → its drain
        self.drained: set[tuple[str, str, float]] = set()  # (listener id, server name, deadline) done

    def reload(self) -> bool:
        """Follow ``l4.json``: start threads for new backends, stop those of gone ones. False: no plan left."""
        path = realize.config_path(self.runtime_dir)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return False
        if mtime == self.seen_mtime:
            return True
        self.seen_mtime = mtime
        data = read_json(path)
        if not data:
            return True
        plan = realize.plan_from_json(data)
        self.plan, self.router = plan, data["router"]
        self._recorded_drains(plan, data)
        known = realize.read_health(self.runtime_dir)
        wanted: dict[tuple[str, str], tuple[model.Listener, model.Server]] = {
            (item.listener.listener_id, s.name): (item.listener, s)
            for item in plan.listeners if item.listener.health.enabled for s in item.servers}
        for key in list(self.targets):
            old = self.targets[key]
            if key not in wanted or wanted[key] != (old.listener, old.server) or old.source != plan.check_source:
                old.stop.set()
                del self.targets[key]
        for key, (listener, server) in wanted.items():
            if key not in self.targets:
                target = Target(listener, server, self.flips, known.get(key[0], {}).get(key[1], "normal"),
                                source=plan.check_source)
                self.targets[key] = target
                threading.Thread(target=target.run, daemon=True).start()
        return True

    def _recorded_drains(self, plan: l4.L4Plan, data: dict[str, Any]) -> None:
        """Take up the drains the realization recorded (backends a change took out of rotation)."""
        for item, entry in zip(plan.listeners, data["listeners"], strict=True):
            for recorded in entry.get("draining", []):
                server = model.Server(**recorded["server"])
                key = (item.listener.listener_id, server.name)
                if key not in self.draining and (*key, recorded["deadline"]) not in self.drained:
                    self.draining[key] = Drain(item.listener, server, recorded["deadline"])
                    print(f"{time.strftime('%H:%M:%S')} {key[0]} {key[1]} draining until "
                          f"{time.strftime('%H:%M:%S', time.localtime(recorded['deadline']))}", flush=True)

    def statuses(self) -> dict[str, dict[str, str]]:
        """Listener id → server name → the checks' state (servers of unchecked listeners are absent: normal)."""
        health: dict[str, dict[str, str]] = {}
        for (listener_id, name), target in list(self.targets.items()):
            health.setdefault(listener_id, {})[name] = target.status
        return health

    def follow_rotation(self, now: float) -> None:
        """Start a drain for each backend that left a draining listener's rotation; cancel those back in it."""
        if self.plan is None:
            return
        health = self.statuses()
        for item in self.plan.listeners:
            listener = item.listener
            current = {s.name: s for s in l4.in_rotation(item.servers, health.get(listener.listener_id))}
            before = self.rotation.get(listener.listener_id)
            self.rotation[listener.listener_id] = current
            for name in current:
                self.draining.pop((listener.listener_id, name), None)
            if before is None or not listener.drain_timeout:
                continue
            for name, server in before.items():
                key = (listener.listener_id, name)
                if name not in current and key not in self.draining:
                    self.draining[key] = Drain(listener, server, now + listener.drain_timeout)
                    print(f"{time.strftime('%H:%M:%S')} {listener.listener_id} {name} draining "
                          f"{listener.drain_timeout}s", flush=True)

    def expire_drains(self, now: float) -> None:
        """End the flows of backends whose drain timeout passed."""
        if self.plan is None:
            return
        for key, drain in list(self.draining.items()):
            if drain.deadline <= now:
                del self.draining[key]
                self.drained.add((*key, drain.deadline))
                closed = close_flows(self.router, self.plan.vip, drain.listener, drain.server)
                print(f"{time.strftime('%H:%M:%S')} {key[0]} {key[1]} drained: {closed} flows closed", flush=True)

    def publish(self) -> None:
        """Write the states and swap the slots of the listeners in the current plan (under the lab lock)."""
        with lab_lock(self.lab):
            data = read_json(realize.config_path(self.runtime_dir))
            if not data:
                return
            plan = realize.plan_from_json(data)
            health = self.statuses()
            # the kernel first: once the state file says abnormal, no new flow may reach the backend
            realize.swap_elements(self.runtime_dir, plan, Namespace(data["router"]), health)
            write_json(realize.health_path(self.runtime_dir), health)

    def run(self) -> None:
        while self.reload():
            self.follow_rotation(time.time())
            self.expire_drains(time.time())
            try:
                listener_id, name, status = self.flips.get(timeout=TICK)
            except queue.Empty:
                continue
            print(f"{time.strftime('%H:%M:%S')} {listener_id} {name} {status}", flush=True)
            while not self.flips.empty():  # several flips at once: one publication
                self.flips.get_nowait()
            try:
                self.publish()
            except Exception as exc:  # e.g. the table went with its router: log it, keep checking
                print(f"{time.strftime('%H:%M:%S')} publishing failed: {exc}", flush=True)


def main(argv: list[str]) -> None:
    lab, lb_id = argv
    Checker(lab, lb_id).run()


if __name__ == "__main__":
    main(sys.argv[1:])

