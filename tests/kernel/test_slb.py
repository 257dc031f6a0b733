"""SLB realizations on the real kernel with real HAProxy: scheduling, health checks, ACLs, persistence, TLS.

Backends are HTTP servers started in ECS namespaces (killed by PID to simulate a crash); clients are sockets
opened inside client ECS namespaces (or the lab's internet namespace).
"""

from __future__ import annotations

import collections
import ipaddress
import os
import ssl
import time
from dataclasses import dataclass

import pytest

from acklab.inventory import read_lab
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model import slb as model
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import mark
from netns.realize import slb as realize
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch
from tests.labtools import wait_for
from tests.slbtools import HttpBackend, backend_of, http_get, mint_certificate

pytestmark = pytest.mark.kernel

LB = "lb-00000001"
VIP = "192.168.1.100"
# Fast health checks so the tests are quick; the bounds below are computed from these.
INTERVAL, TIMEOUT, HEALTHY, UNHEALTHY = 1, 1, 2, 2
FAST = {"health_check_interval": INTERVAL, "health_check_timeout": TIMEOUT, "healthy_threshold": HEALTHY,
        "unhealthy_threshold": UNHEALTHY}


@dataclass
class Site:
    lab: str
    vswitch: VSwitch
    backends: dict[str, HttpBackend]  # name → server in ECS i-0000000N (b1 → N=1)
    clients: dict[str, str]  # name → namespace
    client_ips: dict[str, str]
    lb: realize.SlbInstance

    def server_id(self, name: str) -> str:
        return f"i-0000000{name[1]}"

    def set_backends(self, weights: dict[str, int], lb_id: str = LB) -> None:
        refs = tuple(model.BackendRef(self.server_id(n), w) for n, w in weights.items())
        realize.put_backend_servers(self.lab, lb_id, refs, "test backends")

    def listen(self, port: int, protocol: str = "http", lb_id: str = LB, **args: object) -> model.Listener:
        args = {"frontend_port": port, "protocol": protocol, "backend_port": 8080, **FAST, **args}
        listener = model.parse_listener("test listener", lb_id, args)
        realize.put_listener(self.lab, listener, args, "test listener")
        return listener

    def health(self, port: int, protocol: str = "http", lb: realize.SlbInstance | None = None) -> dict[str, str]:
        """server id → Alibaba's status (normal / abnormal / unavailable) on one listener."""
        lb = lb or self.lb
        rows = lb.backend_health().get(f"{lb.lb_id}:{protocol}:{port}", [])
        return {row["server_id"]: row["status"] for row in rows}

    def get(self, client: str, port: int, **kwargs: object):
        return http_get(self.clients[client], VIP, port, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def site(lab):
    router = VpcRouter(lab, "vpc-00000001")
    router.create(ipaddress.IPv4Network("192.168.0.0/16"))
    vswitch = VSwitch(router, "vsw-0000000a")
    vswitch.create(ipaddress.IPv4Network("192.168.1.0/24"), "cn-hangzhou-h", "vsw")
    backends: dict[str, HttpBackend] = {}
    clients, client_ips = {}, {}
    try:
        for n in (1, 2, 3):
            instance = EcsInstance(lab, f"i-0000000{n}", f"eni-0000000{n}")
            instance.create(vswitch, f"192.168.1.1{n}", f"b{n}", f"b{n}")
            backends[f"b{n}"] = HttpBackend(instance.namespace.name, f"b{n}")
        for n in (4, 5):
            instance = EcsInstance(lab, f"i-0000000{n}", f"eni-0000000{n}")
            client_ips[f"c{n - 3}"] = instance.create(vswitch, f"192.168.1.2{n - 3}", f"c{n - 3}", f"c{n - 3}")
            clients[f"c{n - 3}"] = instance.namespace.name
        lb = realize.SlbInstance(lab, LB)
        assert lb.create("intranet", vswitch, VIP, "test slb", "web") == VIP
        yield Site(lab, vswitch, backends, clients, client_ips, lb)
    finally:
        for backend in backends.values():
            backend.kill()


def spread(site: Site, client: str, port: int, n: int, **kwargs: object) -> collections.Counter:
    return collections.Counter(backend_of(site.get(client, port, **kwargs)) for _ in range(n))


def test_traffic_spreads_by_weight_and_weight_zero_gets_nothing(site):
    site.set_backends({"b1": 100, "b2": 50, "b3": 0})
    site.listen(80, scheduler="wrr")
    site.listen(81, scheduler="rr")  # round robin: weights ignored, but 0 still means no traffic
    n = 150
    tolerance = 0.05 * n  # stated tolerance: 5 % of the requests
    wrr = spread(site, "c1", 80, n)
    assert wrr[None] == 0, wrr
    assert wrr["b3"] == 0
    assert abs(wrr["b1"] - n * 2 / 3) <= tolerance and abs(wrr["b2"] - n / 3) <= tolerance, wrr
    rr = spread(site, "c1", 81, n)
    assert rr["b3"] == 0
    assert abs(rr["b1"] - n / 2) <= tolerance and abs(rr["b2"] - n / 2) <= tolerance, rr


def test_wlc_sends_new_connections_to_the_least_busy_backend(site):
    site.set_backends({"b1": 100, "b2": 100})
    site.listen(80, "tcp", scheduler="wlc")
    busy = Namespace(site.clients["c2"]).socket()
    busy.settimeout(3)
    busy.connect((VIP, 80))  # held open: its backend has one connection more than the other
    busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    held = _receive_body(busy).split(b"\r\n\r\n")[1].split()[0].decode()
    other = ({"b1", "b2"} - {held}).pop()
    seen = collections.Counter()
    for _ in range(6):
        # the previous request's connection is gone from HAProxy's count: the other backend has 0, held has 1
        wait_for(lambda: _sessions(site, "be_tcp_80", site.server_id(other)) == 0, "the last connection closed")
        seen[backend_of(site.get("c1", 80))] += 1
    busy.close()
    assert seen == {other: 6}, (held, seen)


def _sessions(site: Site, backend: str, server_id: str) -> int:
    rows = model.parse_show_stat(site.lb.ask("show stat"))
    return next(int(r["scur"]) for r in rows if r["pxname"] == backend and r["svname"].startswith(server_id))


def test_layer4_keeps_the_client_address_layer7_adds_x_forwarded_for(site):
    site.set_backends({"b1": 100})
    site.listen(80, "http", x_forwarded_for={"retrive_slb_ip": True, "retrive_slb_id": True,
                                             "retrive_slb_proto": True})
    site.listen(81, "tcp")
    site.listen(82, "http", x_forwarded_for="off")
    status, body, _ = site.get("c1", 80)
    proxy = site.lb.leg_address()  # layer 7 reaches backends from the SLB's 100.64 address, as on Alibaba
    assert proxy is not None and proxy.startswith("100.64.")
    assert (status, body) == (200, f"b1 peer={proxy} xff={site.client_ips['c1']} SLB-IP={VIP} SLB-ID={LB} "
                                   "X-Forwarded-Proto=http")
    # layer 4 forwards in the kernel (DNAT, no SNAT): the backend sees the client itself, as behind LVS
    assert site.get("c1", 81)[1] == f"b1 peer={site.client_ips['c1']} xff=-"
    assert site.get("c1", 82)[1] == f"b1 peer={proxy} xff=-"


def test_killed_backend_leaves_rotation_in_time_and_comes_back(site):
    site.set_backends({"b1": 100, "b2": 100})
    site.listen(80)
    wait_for(lambda: site.health(80) == {"i-00000001": "normal", "i-00000002": "normal"}, "both backends up")

    killed_at = time.monotonic()
    site.backends["b1"].kill()
    down_at = None
    failed_after_down = []
    deadline = killed_at + 3 * (INTERVAL * UNHEALTHY + TIMEOUT)
    while time.monotonic() < deadline:
        if down_at is None and site.health(80).get("i-00000001") == "abnormal":
            down_at = time.monotonic()
        answer = site.get("c1", 80)
        if down_at is not None:
            if backend_of(answer) != "b2":
                failed_after_down.append(answer)
            if time.monotonic() - down_at > 1:
                break
    assert down_at is not None, "the killed backend was never marked down"
    detection = down_at - killed_at
    assert detection <= INTERVAL * UNHEALTHY + TIMEOUT + 0.5, detection
    assert failed_after_down == []

    revived_at = time.monotonic()
    site.backends["b1"].start()
    wait_for(lambda: site.health(80).get("i-00000001") == "normal", "the backend back up",
             timeout=3 * INTERVAL * (HEALTHY + 1))
    recovery = time.monotonic() - revived_at
    assert recovery <= INTERVAL * (HEALTHY + 1) + 0.5, recovery
    assert spread(site, "c1", 80, 10)["b1"] == 5


def test_acl_whitelist_and_blacklist(site):
    realize.create_acl(site.lab, "acl-00000001", "clients")
    site.set_backends({"b1": 100})
    site.listen(80, acl_status="on", acl_type="white", acl_id="acl-00000001")
    assert backend_of(site.get("c2", 80)) == "b1"  # a whitelist without entries forwards everything
    realize.set_acl_entry(site.lab, "acl-00000001", f"{site.client_ips['c1']}/32", "c1 only", "test entry")
    assert backend_of(site.get("c1", 80)) == "b1"
    assert site.get("c2", 80) is None
    site.listen(80, acl_status="on", acl_type="black", acl_id="acl-00000001")
    assert site.get("c1", 80) is None
    assert backend_of(site.get("c2", 80)) == "b1"
    with pytest.raises(LabError, match="still used"):
        realize.delete_acl(site.lab, "acl-00000001")


def test_source_hash_persistence_and_sticky_cookies_keep_a_client_on_one_backend(site):
    site.set_backends({"b1": 100, "b2": 100, "b3": 100})
    site.listen(80, "http", scheduler="sch")
    site.listen(81, "tcp", persistence_timeout=60)
    site.listen(82, "http", sticky_session="on", sticky_session_type="insert", cookie_timeout=60)
    site.listen(83, "http", sticky_session="on", sticky_session_type="server", cookie="APP")
    for client in ("c1", "c2"):
        for port in (80, 81):
            seen = spread(site, client, port, 10)
            assert len(seen) == 1 and None not in seen, (client, port, seen)
    assert len(spread(site, "c1", 82, 6)) == 3  # without the cookie: round robin
    for port, name in ((82, "SERVERID"), (83, "APP")):
        first = site.get("c1", port)
        cookie = next(v for k, v in first[2].items() if k.lower() == "set-cookie").split(";")[0]
        assert cookie.startswith(f"{name}=")
        seen = spread(site, "c1", port, 10, headers={"Cookie": cookie})
        assert seen == {backend_of(first): 10}, (port, seen)


def test_http_health_check_uses_uri_domain_and_codes(site):
    site.set_backends({"b1": 100})
    site.listen(80, health_check_uri="/health", health_check_domain="good.example")  # 200
    site.listen(81, health_check_uri="/health")  # no Host good.example: 503
    site.listen(82, health_check_uri="/missing", health_check_http_code="http_4xx")  # 404 expected
    site.listen(83, health_check_uri="/", health_check_http_code="http_3xx")  # 200 is not 3xx
    site.listen(84, "tcp", health_check_type="http", health_check_uri="/health", health_check_domain="good.example")
    site.listen(85, "tcp", health_check="off")
    wait_for(lambda: site.health(81) == {"i-00000001": "abnormal"} and site.health(83) == {"i-00000001": "abnormal"},
             "the failing checks to mark the backend down", timeout=3 * INTERVAL * UNHEALTHY + TIMEOUT)
    for port in (80, 82):
        assert site.health(port) == {"i-00000001": "normal"}, port
    assert site.health(84, "tcp") == {"i-00000001": "normal"}
    assert site.health(85, "tcp") == {"i-00000001": "unavailable"}  # no health check
    assert site.get("c1", 81)[0] == 503  # no healthy backend
    assert backend_of(site.get("c1", 80)) == "b1"


def test_https_terminates_tls_with_a_certificate_the_client_verifies(site, tmp_path):
    ca, cert, key = mint_certificate(VIP)
    realize.put_certificate(site.lab, "cert-00000001", cert, key)
    site.set_backends({"b1": 100})
    site.listen(443, "https", server_certificate_id="cert-00000001")
    (tmp_path / "ca.pem").write_text(ca)
    trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    status, body, _ = site.get("c1", 443, tls=trusted)
    assert status == 200 and body.startswith(f"b1 peer={site.lb.leg_address()} xff={site.client_ips['c1']}")
    assert site.get("c1", 443, tls=ssl.create_default_context()) is None  # an unknown CA is refused
    assert oct(os.stat(realize._cert_path(site.lab, "cert-00000001")).st_mode & 0o777) == "0o600"



def test_listener_forward_redirects_http_to_the_https_listener(site, tmp_path):
    ca, cert, key = mint_certificate(VIP)
    realize.put_certificate(site.lab, "cert-00000002", cert, key)
    site.set_backends({"b2": 100})
    redirect = {"listener_forward": "on", "forward_port": 443, "backend_port": None}
    with pytest.raises(ValidationError, match="has no https listener on port 443"):
        site.listen(80, "http", **redirect)  # Alibaba's order: the https listener first
    site.listen(443, "https", server_certificate_id="cert-00000002")
    site.listen(80, "http", **redirect)
    status, _, headers = site.get("c1", 80, path="/some/page?q=1")
    location = {k.lower(): v for k, v in headers.items()}.get("location")
    assert status == 302 and location == f"https://{VIP}/some/page?q=1", headers
    (tmp_path / "ca.pem").write_text(ca)
    trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    assert backend_of(site.get("c1", 443, path="/some/page?q=1", tls=trusted)) == "b2"
    assert site.health(80) == {}, "a redirecting listener has no backends to check"

def _receive_body(conn) -> bytes:
    data = b""
    while b"peer=" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _held(site: Site, port: int):
    conn = Namespace(site.clients["c1"]).socket()
    conn.settimeout(3)
    conn.connect((VIP, port))
    return conn


def test_listener_change_reloads_without_dropping_open_connections(site):
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    site.set_backends({"b1": 100})
    site.listen(80, "tcp", scheduler="wlc")  # wlc: still proxied by HAProxy
    site.listen(82, "tcp")  # in the kernel
    master = site.lb.master_pid()
    proxied, forwarded = _held(site, 80), _held(site, 82)
    for conn in (proxied, forwarded):
        conn.sendall(request)
        assert b"b1 peer=" in _receive_body(conn)
    site.listen(81, "http")  # a new HAProxy listener: HAProxy reloads
    site.listen(83, "tcp")  # a new kernel listener: the SLB's nftables table is loaded again
    assert site.lb.master_pid() == master  # same master, new worker
    for conn in (proxied, forwarded):
        conn.sendall(request)  # the open connections are still served (old worker; conntrack's binding)
        assert b"b1 peer=" in _receive_body(conn)
        conn.close()
    assert backend_of(site.get("c1", 81)) == "b1"
    assert backend_of(site.get("c1", 83)) == "b1"


def test_internet_slb_is_reached_from_the_sealed_internet_and_proxies_from_100_64(site, root_unchanged):
    site.set_backends({"b1": 100})
    internet_lb = realize.SlbInstance(site.lab, "lb-00000002")
    address = internet_lb.create("internet", None, None, "test internet slb", "public")
    assert ipaddress.IPv4Address(address) in model.INTERNET
    site.set_backends({"b1": 100, "b2": 100}, lb_id="lb-00000002")
    site.listen(80, "http", lb_id="lb-00000002")
    internet = realize.InternetSegment(site.lab).namespace.name
    for client in model.INTERNET_CLIENTS[:2]:
        status, body, _ = http_get(internet, address, 80, source=str(client))
        assert status == 200
        peer = body.split()[1].removeprefix("peer=")
        assert ipaddress.IPv4Address(peer) in model.SLB_LEG_RANGE  # backends see the SLB's 100.64 address
        assert f"xff={client}" in body
    for namespace in (internet, internet_lb.namespace.name):  # sealed: no default route anywhere
        assert "default" not in Namespace(namespace).run(["ip", "route"]).stdout
    assert http_get(site.clients["c1"], address, 80, timeout=1) is None  # the VPC has no route to the internet
    internet_lb.delete()
    assert not Namespace(internet).exists()  # the last internet SLB takes the segment with it


def test_an_eni_backend_with_its_address_takes_the_traffic(site):
    eni = model.BackendRef("eni-00000002", type="eni", ip="192.168.1.12")  # b2's ENI, at its (primary) address
    realize.put_backend_servers(site.lab, LB, (eni,), "test")
    site.listen(80, "http")
    assert backend_of(site.get("c1", 80)) == "b2"
    assert realize.backend_servers(site.lab, LB) == [{"server_id": "eni-00000002", "weight": 100, "type": "eni",
                                                      "ip": "192.168.1.12"}]


def test_status_shows_backend_health_per_listener(site):
    site.set_backends({"b1": 100, "b2": 100})
    site.listen(80)
    site.backends["b2"].kill()
    wait_for(lambda: site.health(80).get("i-00000002") == "abnormal", "b2 marked down")
    (view,) = read_lab(site.lab).slbs
    assert (view.id, view.name, view.address, view.address_type) == (LB, "web", VIP, "intranet")
    (listener,) = view.listeners
    assert listener.id == f"{LB}:http:80"
    assert {(b["server_id"], b["port"], b["status"]) for b in listener.backends} == {
        ("i-00000001", 8080, "normal"), ("i-00000002", 8080, "abnormal")}
    assert {e.name for e in read_lab(site.lab).ecs} == {"b1", "b2", "b3", "c1", "c2"}  # the SLB is no ECS
    site.lb.rename("web two")
    assert (site.lb.read().name, site.lb.read().vpc_id) == ("web_two", "vpc-00000001")


def test_bad_input_changes_nothing(site):
    with pytest.raises(NotFoundError, match="i-0000000f"):
        realize.put_backend_servers(site.lab, LB, (model.BackendRef("i-0000000f"),), "test")
    with pytest.raises(ValidationError, match=r"server_ip: 192\.168\.1\.99 is not an address of eni-00000001"):
        realize.put_backend_servers(site.lab, LB, (model.BackendRef("eni-00000001", type="eni", ip="192.168.1.99"),),
                                    "test")
    site.set_backends({"b1": 100})
    site.listen(80, "http")
    config = site.lb.config_path.read_text()
    with pytest.raises(ValidationError, match="frontend_port: 80 is already used"):
        site.listen(80, "tcp")
    realize.create_server_group(site.lab, "rsp-00000001", LB, "g", "test group")
    with pytest.raises(NotFoundError, match="i-0000000f"):
        realize.attach_server(site.lab, "rsp-00000001", model.BackendRef("i-0000000f", port=80), "test")
    with pytest.raises(NotFoundError, match="cert-0000000f"):
        site.listen(443, "https", server_certificate_id="cert-0000000f")
    assert site.lb.config_path.read_text() == config
    assert realize.listener_args(site.lab, LB, "https", 443) is None
    with pytest.raises(ValidationError, match="already used"):
        realize.SlbInstance(site.lab, "lb-00000003").create("intranet", site.vswitch, VIP, "dup", "")
    assert not realize.SlbInstance(site.lab, "lb-00000003").namespace.exists()


def test_delete_stops_haproxy_and_frees_the_address(site, root_unchanged):
    site.set_backends({"b1": 100})
    site.listen(80)
    master = site.lb.master_pid()
    pids = site.lb.namespace.pids()
    assert master in pids and len(pids) >= 2  # master and worker, inside the SLB's namespace
    site.lb.delete()
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), "HAProxy to end")
    assert not site.lb.runtime_dir.exists()
    assert ipaddress.IPv4Address(VIP) not in site.vswitch.used_addresses()
    assert [ns.name for ns in list_namespaces(mark(site.lab) + "lb-")] == []


def test_clean_removes_slb_namespaces_and_their_haproxy(site):
    site.set_backends({"b1": 100})
    site.listen(80)
    internet_lb = realize.SlbInstance(site.lab, "lb-00000002")
    internet_lb.create("internet", None, None, "test internet slb", "")
    site.listen(80, lb_id="lb-00000002")
    pids = site.lb.namespace.pids() + internet_lb.namespace.pids()
    from netns.realize.cleanup import clean_lab

    removed = clean_lab(site.lab)
    assert f"{mark(site.lab)}internet" in removed and f"{mark(site.lab)}{LB}" in removed
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), "HAProxy to end")
    assert list_namespaces(mark(site.lab)) == []


def test_clean_ends_haproxy_whose_namespace_was_deleted_behind_the_labs_back(site):
    import subprocess

    from netns.realize.cleanup import clean_lab

    site.set_backends({"b1": 100})
    site.listen(80)
    pids = site.lb.namespace.pids()
    subprocess.run(["ip", "netns", "delete", site.lb.namespace.name], check=True)  # HAProxy keeps running
    assert sorted(realize.haproxy_pids(site.lb.config_path)) == sorted(pids)
    removed = clean_lab(site.lab)
    assert any(item.startswith("haproxy pid") for item in removed)
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), "HAProxy to end")
