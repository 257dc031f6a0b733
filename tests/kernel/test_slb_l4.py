"""SLB layer-4 listeners in the kernel (nftables DNAT + conntrack in the VPC router), on the real kernel.

Backends are small TCP + UDP servers in ECS namespaces that answer every request with their name and the peer
address they saw; clients are sockets opened inside client namespaces (an ECS on the backends' vSwitch, one on
another vSwitch, the lab's internet).
"""

from __future__ import annotations

import collections
import ipaddress
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from acklab.inventory import read_lab
from netns.kernel.namespace import Namespace
from netns.model import slb as model
from netns.model import slb_l4 as l4
from netns.realize import slb as realize
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch
from tests.labtools import wait_for

pytestmark = pytest.mark.kernel

LB, VIP, PORT = "lb-00000001", "192.168.1.100", 8080
INTERVAL, TIMEOUT, HEALTHY, UNHEALTHY = 1, 1, 2, 2  # fast health checks; the bounds below follow from them
FAST = {"health_check_interval": INTERVAL, "health_check_timeout": TIMEOUT, "healthy_threshold": HEALTHY,
        "unhealthy_threshold": UNHEALTHY}

# A backend: TCP (one answer line per request line, connections kept open) and, unless told otherwise, UDP
# (one answer datagram per datagram), both on PORT, both answering "<name> peer=<the source address seen>".
SERVER = r"""
import socket, socketserver, sys, threading
name, port, udp = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "udp"
class Tcp(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            for _ in self.rfile:
                self.wfile.write(f"{name} peer={self.client_address[0]}\n".encode())
        except ConnectionResetError:  # the health checker's handshake ends with RST
            pass
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
tcp = Server(("0.0.0.0", port), Tcp)
threading.Thread(target=tcp.serve_forever, daemon=True).start()
if udp:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    print("listening", flush=True)
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(f"{name} peer={peer[0]}".encode(), peer)
print("listening", flush=True)
threading.Event().wait()
"""


class Backend:
    def __init__(self, netns: str, name: str, udp: bool = True) -> None:
        self.netns, self.name, self.udp = netns, name, udp
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, "-c", SERVER, self.name,
                                      str(PORT), "udp" if self.udp else "tcp"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "listening"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


def tcp_ask(netns: str, address: str, port: int, source: str | None = None, sport: int = 0,
            timeout: float = 2.0) -> str | None:
    """One request over a new TCP connection: the answer line, or None if the connection failed."""
    try:
        with Namespace(netns).socket() as s:
            s.settimeout(timeout)
            if source or sport:
                s.setsockopt(1, 2, 1)  # SO_REUSEADDR: a fixed source port again right after closing it
                s.bind((source or "", sport))
            s.connect((address, port))
            s.sendall(b"hi\n")
            return s.makefile().readline().strip() or None
    except OSError:
        return None


def udp_ask(netns: str, address: str, port: int, source: str | None = None, timeout: float = 1.0) -> str | None:
    import socket

    try:
        with Namespace(netns).socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            if source:
                s.bind((source, 0))
            s.connect((address, port))
            s.send(b"hi")
            return s.recv(2048).decode()
    except OSError:
        return None


def name_of(answer: str | None) -> str | None:
    return answer.split()[0] if answer else None


def peer_of(answer: str | None) -> str | None:
    return answer.split("peer=")[1] if answer else None


@dataclass
class Site:
    lab: str
    router: VpcRouter
    backends: dict[str, Backend]
    clients: dict[str, str]  # c1: on the backends' vSwitch, c2: on another vSwitch
    client_ips: dict[str, str]
    lb: realize.SlbInstance

    def set_backends(self, weights: dict[str, int], lb_id: str = LB) -> None:
        refs = tuple(model.BackendRef(f"i-0000000{n[1]}", w) for n, w in weights.items())
        realize.put_backend_servers(self.lab, lb_id, refs, "test backends")

    def listen(self, port: int, protocol: str = "tcp", lb_id: str = LB, **args: object) -> None:
        args = {"frontend_port": port, "protocol": protocol, "backend_port": PORT, **FAST, **args}
        realize.put_listener(self.lab, model.parse_listener("test", lb_id, args), args, "test listener")

    def health(self, listener_id: str, lb: realize.SlbInstance | None = None) -> dict[str, str]:
        rows = (lb or self.lb).backend_health().get(listener_id, [])
        return {row["server_id"]: row["status"] for row in rows}


@pytest.fixture
def site(lab):
    router = VpcRouter(lab, "vpc-00000001")
    router.create(ipaddress.IPv4Network("192.168.0.0/16"))
    near, far = VSwitch(router, "vsw-0000000a"), VSwitch(router, "vsw-0000000b")
    near.create(ipaddress.IPv4Network("192.168.1.0/24"), "cn-hangzhou-h", "near")
    far.create(ipaddress.IPv4Network("192.168.2.0/24"), "cn-hangzhou-h", "far")
    backends: dict[str, Backend] = {}
    try:
        for n in (1, 2, 3):
            instance = EcsInstance(lab, f"i-0000000{n}", f"eni-0000000{n}")
            instance.create(near, f"192.168.1.1{n}", f"b{n}", f"b{n}")
            backends[f"b{n}"] = Backend(instance.namespace.name, f"b{n}", udp=n != 3)  # b3: no UDP socket
        clients, client_ips = {}, {}
        for n, vswitch, ip in ((4, near, "192.168.1.21"), (5, far, "192.168.2.21")):
            instance = EcsInstance(lab, f"i-0000000{n}", f"eni-0000000{n}")
            client_ips[f"c{n - 3}"] = instance.create(vswitch, ip, f"c{n - 3}", f"c{n - 3}")
            clients[f"c{n - 3}"] = instance.namespace.name
        lb = realize.SlbInstance(lab, LB)
        assert lb.create("intranet", near, VIP, "test slb", "l4") == VIP
        yield Site(lab, router, backends, clients, client_ips, lb)
    finally:
        for backend in backends.values():
            backend.kill()


def test_tcp_and_udp_spread_by_weight_and_weight_zero_gets_nothing(site):
    site.set_backends({"b1": 100, "b2": 50, "b3": 0})
    site.listen(80, "tcp")
    site.listen(53, "udp")
    n = 150
    tolerance = 0.05 * n  # stated tolerance: 5 % of the flows (the slots are exact; the window is not)
    tcp = collections.Counter(name_of(tcp_ask(site.clients["c1"], VIP, 80)) for _ in range(n))
    udp = collections.Counter(name_of(udp_ask(site.clients["c2"], VIP, 53)) for _ in range(n))
    print(f"spread over {n} flows, weights 100/50/0: tcp {dict(tcp)} udp {dict(udp)}")
    for seen in (tcp, udp):
        assert seen[None] == 0 and seen["b3"] == 0, seen
        assert abs(seen["b1"] - n * 2 / 3) <= tolerance and abs(seen["b2"] - n / 3) <= tolerance, seen


def test_backends_see_the_client_address_intranet_and_internet(site, root_unchanged):
    site.set_backends({"b1": 100})
    site.listen(80, "tcp")
    site.listen(53, "udp")
    for client in ("c1", "c2"):  # same vSwitch (bridged in the router) and another vSwitch (routed)
        assert peer_of(tcp_ask(site.clients[client], VIP, 80)) == site.client_ips[client]
        assert peer_of(udp_ask(site.clients[client], VIP, 53)) == site.client_ips[client]
    public = realize.SlbInstance(site.lab, "lb-00000002")
    address = public.create("internet", None, None, "test internet slb", "public")
    site.set_backends({"b1": 100, "b2": 100}, lb_id="lb-00000002")
    site.listen(80, "tcp", lb_id="lb-00000002")
    site.listen(53, "udp", lb_id="lb-00000002")
    internet = realize.InternetSegment(site.lab).namespace.name
    for client in model.INTERNET_CLIENTS[:2]:
        for _ in range(2):  # both backends
            assert peer_of(tcp_ask(internet, address, 80, source=str(client))) == str(client)
            assert peer_of(udp_ask(internet, address, 53, source=str(client))) == str(client)
    # a backends-only change moves map elements: the internet path (its ip rules, sysctls, nft table) is not set
    # up again; its table gone, the next sync makes it again
    path = public.runtime_dir / "l4-path.json"
    made = path.stat().st_mtime_ns
    site.set_backends({"b1": 100}, lb_id="lb-00000002")
    assert path.stat().st_mtime_ns == made
    client = str(model.INTERNET_CLIENTS[0])
    assert peer_of(tcp_ask(internet, address, 80, source=client)) == client
    public.namespace.run(["nft", "delete", "table", "ip", "slb_forward"])
    site.set_backends({"b1": 100, "b2": 100}, lb_id="lb-00000002")
    assert path.stat().st_mtime_ns != made
    assert peer_of(tcp_ask(internet, address, 80, source=client)) == client
    # a tcp listener with wlc stays on HAProxy, next to the kernel listeners: it proxies from the 100.64 leg
    site.listen(81, "tcp", lb_id="lb-00000002", scheduler="wlc")
    peer = peer_of(tcp_ask(internet, address, 81))
    assert peer is not None and ipaddress.IPv4Address(peer) in model.SLB_LEG_RANGE, peer
    # both SLBs' tables side by side in one router, named by their ids
    tables = site.router.namespace.run(["nft", "list", "tables"]).stdout
    assert "slb_lb_00000001" in tables and "slb_lb_00000002" in tables
    public.delete()
    assert "slb_lb_00000002" not in site.router.namespace.run(["nft", "list", "tables"]).stdout


def _rule_handles(site: Site) -> str:
    return site.router.namespace.run(["nft", "-a", "list", "chain", "ip", l4.table_name(LB), "l4_dnat"]).stdout


def test_backend_changes_swap_elements_and_keep_established_flows(site):
    site.set_backends({"b1": 100, "b2": 100, "b3": 100})
    site.listen(80, "tcp")
    held: dict[str, object] = {}
    sock_for = {}
    for _ in range(30):  # one open connection per backend
        s = Namespace(site.clients["c2"]).socket()
        s.settimeout(2)
        s.connect((VIP, 80))
        s.sendall(b"hi\n")
        reader = s.makefile()
        name = name_of(reader.readline())
        if name in held:
            s.close()
            continue
        held[name], sock_for[name] = reader, s
        if len(held) == 3:
            break
    assert set(held) == {"b1", "b2", "b3"}
    rules = _rule_handles(site)
    for weights in ({"b1": 100, "b2": 0, "b3": 100}, {"b1": 100, "b3": 100}, {"b1": 30, "b2": 100},
                    {"b1": 100, "b2": 100, "b3": 100}):
        site.set_backends(weights)
        assert _rule_handles(site) == rules  # elements swapped, rules untouched
        for name, s in sock_for.items():  # every established flow still reaches its backend
            s.sendall(b"again\n")
            assert name_of(held[name].readline()) == name, (weights, name)  # type: ignore[attr-defined]
    site.set_backends({"b1": 100, "b3": 100})
    seen = collections.Counter(name_of(tcp_ask(site.clients["c1"], VIP, 80)) for _ in range(20))
    assert seen["b2"] == 0 and seen[None] == 0, seen
    for s in sock_for.values():
        s.close()


def test_source_and_tuple_hash_keep_a_client_and_move_about_one_nth(site):
    site.set_backends({"b1": 100, "b2": 100, "b3": 100})
    site.listen(80, "tcp", scheduler="tch")
    ports = range(40000, 40090)

    def by_port() -> dict[int, str | None]:
        return {p: name_of(tcp_ask(site.clients["c1"], VIP, 80, sport=p)) for p in ports}

    before = by_port()
    assert by_port() == before  # the same 4-tuple lands on the same backend again
    assert set(before.values()) == {"b1", "b2", "b3"}
    site.set_backends({"b1": 100, "b2": 100})
    after = by_port()
    moved = [p for p in ports if after[p] != before[p]]
    assert all(before[p] == "b3" for p in moved)  # only the leaving backend's flows move
    fraction = len(moved) / len(ports)
    print(f"tch: {len(moved)} of {len(ports)} flows moved when 1 of 3 backends left ({fraction:.2f})")
    assert abs(fraction - 1 / 3) <= 0.15, fraction
    # sch: one client address, many connections, one backend
    site.listen(81, "tcp", scheduler="sch")
    for client in ("c1", "c2"):
        seen = {name_of(tcp_ask(site.clients[client], VIP, 81)) for _ in range(10)}
        assert len(seen) == 1 and None not in seen, seen


def test_killed_backend_leaves_rotation_in_time_and_no_new_flow_reaches_it(site):
    site.set_backends({"b1": 100, "b2": 100})
    site.listen(80, "tcp")
    listener = f"{LB}:tcp:80"
    wait_for(lambda: site.health(listener) == {"i-00000001": "normal", "i-00000002": "normal"}, "both up")
    survivor = Namespace(site.clients["c1"]).socket()
    survivor.settimeout(2)
    for _ in range(10):  # an established flow on b2
        survivor.close()
        survivor = Namespace(site.clients["c1"]).socket()
        survivor.settimeout(2)
        survivor.connect((VIP, 80))
        survivor.sendall(b"hi\n")
        reader = survivor.makefile()
        if name_of(reader.readline()) == "b2":
            break
    killed_at = time.monotonic()
    site.backends["b1"].kill()
    bound = INTERVAL * UNHEALTHY + TIMEOUT
    wait_for(lambda: site.health(listener).get("i-00000001") == "abnormal", "b1 marked down", timeout=3 * bound)
    detection = time.monotonic() - killed_at
    print(f"killed backend marked down after {detection:.2f} s (bound {bound} s)")
    assert detection <= bound + 0.5, detection
    seen = collections.Counter(name_of(tcp_ask(site.clients["c2"], VIP, 80)) for _ in range(20))
    assert seen == {"b2": 20}, seen
    survivor.sendall(b"again\n")
    assert name_of(reader.readline()) == "b2"
    survivor.close()
    site.backends["b1"].start()
    wait_for(lambda: site.health(listener).get("i-00000001") == "normal", "b1 back", timeout=3 * INTERVAL * HEALTHY)


def test_udp_health_check_marks_a_closed_port_down(site):
    site.set_backends({"b1": 100, "b3": 100})  # b3 runs no UDP server: ICMP port unreachable
    site.listen(53, "udp")
    listener = f"{LB}:udp:53"
    wait_for(lambda: site.health(listener) == {"i-00000001": "normal", "i-00000003": "abnormal"},
             "b3 marked down", timeout=3 * (INTERVAL * UNHEALTHY + TIMEOUT))
    seen = collections.Counter(name_of(udp_ask(site.clients["c1"], VIP, 53)) for _ in range(10))
    assert seen == {"b1": 10}, seen
    (view,) = read_lab(site.lab).slbs  # what `acklab status` shows
    (listed,) = view.listeners
    assert listed.id == listener
    assert {(b["server_id"], b["status"]) for b in listed.backends} == {("i-00000001", "normal"),
                                                                        ("i-00000003", "abnormal")}


def _check_sources(site: Site, backend_ip: str) -> set[str]:
    """Sources of the flows to ``backend_ip``:PORT the router's conntrack holds (health checks end with RST: their
    entries stay for CLOSE's 10 s)."""
    out = site.router.namespace.run(["conntrack", "-L", "-p", "tcp", "--orig-dst", backend_ip,
                                     "--orig-port-dst", str(PORT)], check=False).stdout
    return {word.split("=", 1)[1] for line in out.splitlines() for word in line.split()[:8] if word.startswith("src=")}


def test_health_checks_come_from_the_slbs_100_64_address(site):
    """Alibaba's health checks come from 100.64.0.0/10 (ACK tells users to admit that range in the nodes'
    security groups), also for an intranet SLB whose VIP is on the backends' own vSwitch: the checks take the
    SLB's leg into the VPC router, clients' flows keep the VIP's vSwitch."""
    site.set_backends({"b1": 100})
    site.listen(80, "tcp")
    source = site.lb.leg_address()
    assert source is not None and ipaddress.IPv4Address(source) in model.SLB_LEG_RANGE
    wait_for(lambda: source in _check_sources(site, "192.168.1.11"), "a health check from the 100.64 leg",
             timeout=3 * INTERVAL + TIMEOUT)
    assert VIP not in _check_sources(site, "192.168.1.11")  # none from the VIP any more
    assert name_of(tcp_ask(site.clients["c1"], VIP, 80)) == "b1"  # clients are served as before
    assert site.health(f"{LB}:tcp:80") == {"i-00000001": "normal"}


def test_layer7_stays_in_haproxy_and_checker_ends_with_the_slb(site):
    site.set_backends({"b1": 100})
    site.listen(80, "tcp")
    checker = realize.slb_l4.checker_pid(site.lb.runtime_dir, site.lb.namespace)
    assert checker is not None and site.lb.master_pid() is None  # no HAProxy for layer 4
    site.lb.delete()
    wait_for(lambda: not __import__("os").path.exists(f"/proc/{checker}"), "the checker to end")
    assert l4.table_name(LB) not in site.router.namespace.run(["nft", "list", "tables"]).stdout


def test_acl_on_a_layer4_listener(site):
    realize.create_acl(site.lab, "acl-00000001", "near clients")
    realize.set_acl_entry(site.lab, "acl-00000001", "192.168.1.0/24", "near", "test entry")
    site.set_backends({"b1": 100})
    site.listen(80, "tcp", acl_status="on", acl_type="white", acl_id="acl-00000001")
    site.listen(53, "udp", acl_status="on", acl_type="black", acl_id="acl-00000001")
    assert name_of(tcp_ask(site.clients["c1"], VIP, 80)) == "b1"
    assert tcp_ask(site.clients["c2"], VIP, 80, timeout=0.5) is None  # not on the whitelist
    assert udp_ask(site.clients["c1"], VIP, 53, timeout=0.5) is None  # on the blacklist
    assert name_of(udp_ask(site.clients["c2"], VIP, 53)) == "b1"


def test_source_hash_moves_about_one_nth_of_the_clients_when_a_backend_leaves(site):
    public = realize.SlbInstance(site.lab, "lb-00000002")
    address = public.create("internet", None, None, "test internet slb", "public")
    site.set_backends({"b1": 100, "b2": 100, "b3": 100}, lb_id="lb-00000002")
    site.listen(80, "tcp", lb_id="lb-00000002", scheduler="sch")
    internet = realize.InternetSegment(site.lab).namespace
    clients = [f"203.0.113.{n}" for n in range(200, 245)]  # more internet clients, in the lab's internet only
    for client in clients:
        internet.run(["ip", "addr", "add", f"{client}/32", "dev", realize.INTERNET_BRIDGE])

    def placement() -> dict[str, str | None]:
        return {c: name_of(tcp_ask(internet.name, address, 80, source=c)) for c in clients}

    before = placement()
    assert placement() == before and None not in before.values()  # a client stays on its backend
    site.set_backends({"b1": 100, "b2": 100}, lb_id="lb-00000002")
    after = placement()
    moved = [c for c in clients if after[c] != before[c]]
    print(f"sch: {len(moved)} of {len(clients)} clients moved when 1 of 3 backends left; "
          f"b3 had {sum(v == 'b3' for v in before.values())}")
    assert all(before[c] == "b3" for c in moved)  # only the leaving backend's clients move
    assert abs(len(moved) / len(clients) - 1 / 3) <= 0.15


def test_established_timeout_is_the_flows_conntrack_timeout(site):
    site.set_backends({"b1": 100})
    site.listen(80, "tcp", established_timeout=60)
    conn = Namespace(site.clients["c1"]).socket()
    conn.settimeout(2)
    conn.connect((VIP, 80))
    conn.sendall(b"hi\n")
    assert name_of(conn.makefile().readline()) == "b1"
    listing = site.router.namespace.run(["conntrack", "-L", "-p", "tcp", "--orig-dst", VIP, "--orig-port-dst", "80"],
                                        check=False).stdout
    conn.close()
    (entry,) = [line for line in listing.splitlines() if "ESTABLISHED" in line]
    assert 50 <= int(entry.split()[2]) <= 60, entry  # not the kernel's default of 5 days


def _one_connection_per_backend(site: Site, names: set[str]) -> dict[str, tuple[object, object]]:
    """An open connection to each backend named (new connections until each was reached): name → (socket, reader)."""
    held: dict[str, tuple[object, object]] = {}
    for _ in range(40):
        s = Namespace(site.clients["c2"]).socket()
        s.settimeout(2)
        s.connect((VIP, 80))
        s.sendall(b"hi\n")
        reader = s.makefile()
        name = name_of(reader.readline())
        if name in held or name not in names:
            s.close()
            continue
        held[name] = (s, reader)
        if set(held) == names:
            return held
    raise AssertionError(f"reached only {sorted(held)}")


def _answer(held: tuple[object, object]) -> str | None:
    """The backend's name through an established connection; None once the connection is gone (reset)."""
    sock, reader = held
    try:
        sock.sendall(b"again\n")  # type: ignore[attr-defined]
        return name_of(reader.readline())  # type: ignore[attr-defined]
    except OSError:
        return None


def test_connection_drain_keeps_a_removed_backends_flows_for_its_timeout_then_ends_them(site):
    drain = 10  # Alibaba's least connection_drain_timeout
    site.set_backends({"b1": 100, "b2": 100})
    site.listen(80, "tcp", connection_drain="on", connection_drain_timeout=drain)
    held = _one_connection_per_backend(site, {"b1", "b2"})
    site.set_backends({"b1": 100})  # b2 leaves: it drains
    removed = time.monotonic()
    seen = collections.Counter(name_of(tcp_ask(site.clients["c1"], VIP, 80)) for _ in range(10))
    assert seen == {"b1": 10}, seen  # new flows go elsewhere at once
    assert _answer(held["b2"]) == "b2"  # while its established flow lives on
    wait_for(lambda: _answer(held["b2"]) is None, "b2's flow to end", timeout=drain + 10)
    ended = time.monotonic() - removed
    print(f"drained flow ended {ended:.2f} s after its backend left (connection_drain_timeout {drain} s)")
    assert drain - 0.5 <= ended <= drain + 3, ended
    assert _answer(held["b1"]) == "b1"  # a backend in rotation keeps its flows
    for sock, _ in held.values():
        sock.close()  # type: ignore[attr-defined]


def test_without_drain_a_removed_backends_flow_lives_on(site):
    site.set_backends({"b1": 100, "b2": 100})
    site.listen(80, "tcp")
    held = _one_connection_per_backend(site, {"b2"})
    site.set_backends({"b1": 100})
    deadline = time.monotonic() + 12  # past the least drain timeout (10 s): nothing ends it
    while time.monotonic() < deadline:
        assert _answer(held["b2"]) == "b2"
        time.sleep(1)
    held["b2"][0].close()  # type: ignore[attr-defined]

