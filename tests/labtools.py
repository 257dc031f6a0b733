"""Test helpers: unique labs, the root namespace's state, and traffic between lab namespaces."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from netns.kernel.namespace import Namespace
from netns.realize import cleanup


def new_lab() -> str:
    """A lab name no other test or lab on this machine uses."""
    return "t" + secrets.token_hex(5)


def clean_lab(lab: str) -> None:
    cleanup.clean_lab(lab)


def root_netns_state() -> dict[str, object]:
    """Links, addresses, routes and rules of the root namespace (the lab must never change them)."""
    def ip_json(*args: str) -> object:
        out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True).stdout
        return json.loads(out or "[]")

    def read(argv: list[str]) -> str:  # read-only listings; a missing tool reads as empty
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
        except FileNotFoundError:
            return ""

    def drop_counters(text: str) -> str:
        lines = (line for line in text.splitlines() if not line.startswith("#"))
        return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in lines)

    links = [{k: link.get(k) for k in ("ifname", "mtu", "operstate", "address")} for link in ip_json("link")]
    return {"links": links, "addr": ip_json("addr"), "routes": ip_json("route", "show", "table", "all"),
            "rules": ip_json("rule"), "iptables": drop_counters(read(["iptables-save"])),
            "nft": read(["nft", "list", "ruleset"]),
            "sysctls": read(["sysctl", "net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding",
                             "net.ipv4.conf.all.rp_filter"])}


def require_cluster_tools(tools: Iterable[str]) -> None:
    """Skip unless the Kubernetes (and CoreDNS) binaries are in the venv and this runs as root."""
    import pytest

    bin_dir = Path(sys.executable).parent
    missing = [t for t in tools if not (bin_dir / t).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not in {bin_dir}: run scripts/build-kube.sh and scripts/build-coredns.sh "
                    "(make test does)")
    if os.geteuid() != 0:
        pytest.skip("needs root: builds network namespaces")


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 10.0, interval: float = 0.05) -> float:
    """Seconds until ``predicate`` holds (polled every ``interval``); fails after ``timeout``."""
    begin = time.monotonic()
    while time.monotonic() - begin < timeout:
        if predicate():
            return round(time.monotonic() - begin, 3)
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def ping(netns: str, address: str) -> bool:
    return Namespace(netns).run(["ping", "-c1", "-W1", address], check=False).returncode == 0


SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
while True:
    conn, peer = s.accept()
    conn.sendall(f"hello {peer[0]}\\n".encode())
    conn.close()
"""

CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as c:
    print(c.recv(100).decode().strip())
"""


class TcpServer:
    """A TCP server in a namespace that greets each client with the address it saw."""

    def __init__(self, netns: str, port: int = 8080) -> None:
        self.netns, self.port = netns, port
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER, str(port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "listening"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)

    def __enter__(self) -> TcpServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def tcp_greeting(netns: str, address: str, port: int = 8080) -> str | None:
    """Connect from ``netns``; return the server's greeting, or None if the connection failed."""
    result = Namespace(netns).run([sys.executable, "-c", CLIENT, address, str(port)], check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def env_with_venv() -> dict[str, str]:
    venv_bin = os.path.join(os.path.dirname(sys.executable))
    return {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}


class ProbeServer:
    """TCP and UDP responders inside a namespace, served by a thread of the test process.

    The sockets are created inside the namespace, so no process runs there. TCP: a greeting line
    ``hello <client ip>``, then every line sent is echoed. UDP: each datagram gets ``hello <client ip>``.
    """

    def __init__(self, netns: str, tcp: tuple[int, ...] = (80, 22), udp: tuple[int, ...] = (53,)) -> None:
        import selectors
        import socket
        import threading

        self._socket = socket
        self.selector = selectors.DefaultSelector()
        self.sockets = []
        for port in tcp:
            s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(64)
            self.selector.register(s, selectors.EVENT_READ, "accept")
            self.sockets.append(s)
        for port in udp:
            s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", port))
            self.selector.register(s, selectors.EVENT_READ, "datagram")
            self.sockets.append(s)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            for key, _ in self.selector.select(timeout=0.1):
                sock = key.fileobj
                try:
                    if key.data == "accept":
                        conn, peer = sock.accept()
                        conn.sendall(f"hello {peer[0]}\n".encode())
                        self.selector.register(conn, 1, "stream")
                        self.sockets.append(conn)
                    elif key.data == "datagram":
                        data, peer = sock.recvfrom(2048)
                        sock.sendto(f"hello {peer[0]}".encode(), peer)
                    else:
                        data = sock.recv(2048)
                        if data:
                            sock.sendall(data)
                        else:
                            self.selector.unregister(sock)
                            sock.close()
                except OSError:
                    continue

    def stop(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        for s in self.sockets:
            s.close()
        self.selector.close()

    def __enter__(self) -> ProbeServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def probe_tcp(netns: str, address: str, port: int, source: str | None = None, timeout: float = 1.0) -> bool:
    """True if a TCP connection from ``netns`` gets the greeting."""
    import socket

    s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if source:
            s.bind((source, 0))
        s.connect((address, port))
        return s.recv(100).startswith(b"hello ")
    except OSError:
        return False
    finally:
        s.close()


def probe_udp(netns: str, address: str, port: int, timeout: float = 1.0) -> bool:
    """True if a datagram from ``netns`` gets an answer within ``timeout``."""
    import socket

    s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(b"hostname", (address, port))
        return s.recvfrom(100)[0].startswith(b"hello ")
    except OSError:
        return False
    finally:
        s.close()


def connect_tcp(netns: str, address: str, port: int):
    """An open TCP connection from ``netns`` (greeting already read), for flows that must survive changes."""
    import socket

    s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect((address, port))
    assert s.recv(100).startswith(b"hello ")
    return s


def still_flows(conn) -> bool:
    try:
        conn.sendall(b"ping\n")
        return conn.recv(100) == b"ping\n"
    except OSError:
        return False
