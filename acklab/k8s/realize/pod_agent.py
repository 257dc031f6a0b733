"""The pod agent: one process per node answering on every pod's declared containerPorts (agnhost netexec-like).

A socket keeps the network namespace it was created in, so one single-threaded process can listen inside many
pod namespaces: sockets are made by a short-lived thread that enters the pod's namespace (``socket_in``), never
by forking. The agent lives in the node's namespace (so removing the node ends it) and serves a selector loop.

Control, all under ``/run/acklab/<lab>/k8s/``:
- ``<node>.agent.json``: the desired pods (name, namespace path, ports) and a generation number,
- SIGHUP: re-read it; the agent opens and closes sockets to match, then writes ``<node>.agent.status``
  (the generation it applied and what it listens on),
- ``<node>.agent.pid``: its pidfile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from acklab.k8s.model import pod_agent
from netns.kernel.files import write_json
from netns.kernel.process import NETNS_DIR, alive  # no pyroute2 in the agent (memory per node)
from netns.realize import state_dir

CLONE_NEWNET = 0x40000000

IDLE_TIMEOUT = 10.0


def k8s_dir(lab: str) -> Path:
    return state_dir(lab) / "k8s"


@dataclass
class _Conn:
    sock: socket.socket
    hostname: str
    peer: tuple[str, int]
    buffer: bytes = b""
    since: float = field(default_factory=time.monotonic)


class Agent:
    """The serving loop (runs in the agent process)."""

    def __init__(self, config: Path, status: Path) -> None:
        self.config, self.status = config, status
        self.selector = selectors.DefaultSelector()
        # (pod key, port, protocol) → listening socket; pod key → (hostname, netns)
        self.listeners: dict[tuple[str, int, str], socket.socket] = {}
        self.pods: dict[str, tuple[str, str, int]] = {}
        self.conns: dict[int, _Conn] = {}
        self.reload = True
        self.running = True

    def run(self) -> None:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_term)
        self.selector.register(wake_r, selectors.EVENT_READ, ("wake",))
        while self.running:
            if self.reload:
                self.reload = False
                self._apply()
            for key, _ in self.selector.select(timeout=1.0):
                kind = key.data[0]
                if kind == "wake":
                    with contextlib.suppress(BlockingIOError):
                        wake_r.recv(64)
                elif kind == "tcp":
                    self._accept(key.fileobj, key.data[1])
                elif kind == "udp":
                    self._datagram(key.fileobj, key.data[1])
                else:
                    self._read(key.fileobj)
            self._expire()

    def _on_hup(self, *_: object) -> None:
        self.reload = True

    def _on_term(self, *_: object) -> None:
        self.running = False

    # --- configuration -------------------------------------------------------------------------------------
    def _apply(self) -> None:
        try:
            desired = json.loads(self.config.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return
        # (hostname, namespace, its inode): a namespace made again under the same name gets new sockets
        wanted: dict[tuple[str, int, str], tuple[str, str, int]] = {}
        for pod in desired.get("pods", []):
            for port, protocol in pod["ports"]:
                wanted[(pod["key"], port, protocol)] = (pod["name"], pod["netns"], pod.get("inode", 0))
        errors = []
        for key in [k for k in self.listeners if k not in wanted or self.pods.get(k[0]) != wanted[k]]:
            self._close_listener(key)
        self.pods = {key[0]: value for key, value in wanted.items()}
        for key, (hostname, netns, _inode) in wanted.items():
            if key in self.listeners:
                continue
            try:
                self._listen(key, hostname, netns)
            except OSError as exc:
                errors.append(f"{key[0]} {key[1]}/{key[2]}: {exc}")
        for sock_id in [i for i, c in self.conns.items() if c.hostname not in {w[0] for w in wanted.values()}]:
            self._close_conn(self.conns[sock_id].sock)
        listening = {}
        for pod_key, port, protocol in sorted(self.listeners):
            listening.setdefault(pod_key, []).append([port, protocol])
        write_json(self.status, {"generation": desired.get("generation"), "pid": os.getpid(),
                                 "listening": listening, "errors": errors}, indent=None)

    def _listen(self, key: tuple[str, int, str], hostname: str, netns: str) -> None:
        _, port, protocol = key
        path = os.path.join(NETNS_DIR, netns)
        kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
        sock = _socket_in(path, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            if protocol == "TCP":
                sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.selector.register(sock, selectors.EVENT_READ, ("tcp" if protocol == "TCP" else "udp", hostname))
        self.listeners[key] = sock

    def _close_listener(self, key: tuple[str, int, str]) -> None:
        sock = self.listeners.pop(key)
        self.selector.unregister(sock)
        sock.close()

    # --- serving ----------------------------------------------------------------------------------------------
    def _accept(self, listener: socket.socket, hostname: str) -> None:
        try:
            sock, peer = listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        self.conns[sock.fileno()] = _Conn(sock, hostname, peer)
        self.selector.register(sock, selectors.EVENT_READ, ("conn",))

    def _read(self, sock: socket.socket) -> None:
        conn = self.conns[sock.fileno()]
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._close_conn(sock)
            return
        conn.buffer += data
        if pod_agent.is_http(conn.buffer):
            if b"\r\n\r\n" not in conn.buffer and len(conn.buffer) < pod_agent.MAX_REQUEST:
                return
            reply = pod_agent.http_response(conn.hostname, conn.buffer, conn.peer)
        elif b"\n" in conn.buffer or len(conn.buffer) >= pod_agent.MAX_REQUEST:
            reply = (pod_agent.command(conn.hostname, conn.buffer.decode("latin-1"), conn.peer) + "\n").encode()
        else:
            return
        with contextlib.suppress(OSError):
            sock.setblocking(True)
            sock.settimeout(2.0)
            sock.sendall(reply)
        self._close_conn(sock)

    def _datagram(self, sock: socket.socket, hostname: str) -> None:
        try:
            data, peer = sock.recvfrom(2048)
            sock.sendto(pod_agent.command(hostname, data.decode("latin-1"), peer).encode(), peer)
        except OSError:
            return

    def _close_conn(self, sock: socket.socket) -> None:
        self.conns.pop(sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self.conns.values() if now - c.since > IDLE_TIMEOUT]:
            self._close_conn(conn.sock)


# --- control (runs in the Ansible module / tests) --------------------------------------------------------------

@dataclass(frozen=True)
class AgentHandle:
    """Start, configure and stop one node's agent."""

    lab: str
    node: str  # a node name (files) — the agent runs in ``node_netns``
    node_netns: str

    @property
    def folder(self) -> Path:
        return k8s_dir(self.lab)

    def _path(self, suffix: str) -> Path:
        return self.folder / f"{self.node}.agent.{suffix}"

    def pid(self) -> int | None:
        try:
            pid = int(self._path("pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (FileNotFoundError, ProcessLookupError):  # gone, or exiting while read
            return None
        ours = b"acklab.k8s.realize.pod_agent" in cmdline and self._path("json").name.encode() in cmdline
        return pid if ours else None

    def status(self) -> dict:
        try:
            return json.loads(self._path("status").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def desired(self) -> list[dict] | None:
        """The pods the agent was last told to serve."""
        try:
            return json.loads(self._path("json").read_text())["pods"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return None

    def configure(self, pods: list[dict], timeout: float = 15.0) -> dict:
        """Make the agent serve exactly ``pods`` ({key, name, netns, ports: [[port, proto]]}); wait until it does.

        Returns the agent's status. Starts the agent if it is not running.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        generation = time.time_ns()
        write_json(self._path("json"), {"generation": generation, "pods": pods}, indent=None)
        pid = self.pid()
        if pid is None:
            self._start()
        else:
            os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("generation") == generation:
                return status
            time.sleep(0.02)
        raise TimeoutError(f"pod agent of node {self.node} did not apply its configuration within {timeout}s")

    def _start(self) -> None:
        # nsenter --net switches the network namespace only: the agent sees the host's mounts (/run/netns).
        log = open(self._path("log"), "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                ["nsenter", f"--net={NETNS_DIR}/{self.node_netns}", "--", sys.executable, "-m",
                 "acklab.k8s.realize.pod_agent", str(self._path("json")), str(self._path("status"))],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd="/")
        finally:
            log.close()
        self._path("pid").write_text(str(proc.pid))

    def stop(self, timeout: float = 5.0) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.pid() is not None and alive(pid):
                time.sleep(0.02)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        for suffix in ("pid", "json", "status", "log"):
            self._path(suffix).unlink(missing_ok=True)


def _socket_in(path: str, kind: int) -> socket.socket:
    """A socket in the namespace at ``path``: the (single-threaded) agent enters it, makes the socket, returns.

    No other thread exists in the agent, so switching the process's only thread is safe and cheaper than the
    thread per socket that ``netns.kernel.namespace.socket_in`` uses inside multi-threaded callers.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
        try:
            return socket.socket(socket.AF_INET, kind)
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:  # never keep serving from the wrong namespace
                os._exit(70)
    finally:
        os.close(home)
        os.close(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acklab.k8s.realize.pod_agent", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("status", type=Path)
    args = parser.parse_args(argv)
    Agent(args.config, args.status).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
