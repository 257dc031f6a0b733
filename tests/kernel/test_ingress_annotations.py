"""nginx.ingress.kubernetes.io annotations and the controller ConfigMap on the real kernel, through the Kubernetes API
with kubectl only: real requests through real nginx in the two controller pods of ACK's nginx-ingress-controller
add-on, configured by the ingress controller on the API from the annotated Ingresses, Services, the TLS Secret and
the ConfigMap ``kube-system/nginx-configuration`` applied with kubectl; upstream kube-proxy on the nodes. The lab is
tests/ingresstools.ingress_lab (the one of tests/kernel/test_ingress.py) with this module's Ingresses.

Entry points: an ECS of the VPC (192.168.2.10) talking to the controller pods' IPs, and a client on the lab's
internet through the add-on's SLB → NodePort → kube-proxy (``externalTrafficPolicy: Local``: no masquerade, nginx
sees the internet client's own address, 203.0.113.x). Allow- and deny-lists use that difference: two client
addresses as nginx sees them.

What changes a running lab (the canary's weight, the ConfigMap, a refused Ingress) is applied with kubectl and
taken back afterwards; the tests poll until nginx serves it (deadlines, no sleeps).
"""

from __future__ import annotations

import http.client
import select
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from acklab.k8s import ingress_controller
from acklab.k8s.certs import mint_certificate
from acklab.k8s.model import ingress_annotations as ann
from netns.kernel.namespace import Namespace
from netns.model import slb as slb_model
from tests import apilab
from tests.ingresstools import (
    DEADLINE,
    ECS3,
    STATUS,
    IngressLab,
    base_workloads,
    dump,
    get,
    ingress,
    ingress_lab,
    rule,
    service,
    who,
)
from tests.slbtools import _NsConnection

pytestmark = pytest.mark.kernel
P = "nginx.ingress.kubernetes.io/"
VPC, INTERNET = "vpc-ecs-to-pod-ips", "internet-via-slb"


def annotated(name: str, rules: list, annotations: dict, tls: list | None = None) -> dict:
    doc = ingress(name, rules, tls=tls)
    doc["metadata"]["annotations"] = {P + k: v for k, v in annotations.items()}
    return doc


def canary(weight: int) -> dict:
    return annotated("main-canary", [rule("canary.test", ("/", "Prefix", "b"))],
                     {"canary": "true", "canary-by-header": "X-Canary", "canary-by-cookie": "canary",
                      "canary-weight": str(weight)})


def on(name: str, pod: str, port: int, target: int) -> dict:
    """A Service ``name`` on backend pod ``pod``'s port ``target`` (a server of this module's, undeclared)."""
    doc = service(name, [{"name": "http" if port == 80 else "https", "port": port, "targetPort": target}])
    doc["spec"]["selector"] = {"app": pod}
    return doc


def annotated_ingresses() -> list[dict]:
    return [
        # netexec on the "named" port (8000 → the pods' "agent" 8080) answers /hostname with the pod's name
        annotated("rewrite", [rule("rewrite.test", ("/api(/|$)(.*)", "ImplementationSpecific", "a", "named"))],
                  {"rewrite-target": "/$2", "app-root": "/api/hostname"}),
        annotated("force", [rule("force.test", ("/", "Prefix", "a"))], {"force-ssl-redirect": "true"}),
        annotated("moved", [rule("moved.test", ("/", "Prefix", "a"))],
                  {"permanent-redirect": "https://example.test$request_uri"}),
        annotated("allow", [rule("allow.test", ("/", "Prefix", "a"))], {"allowlist-source-range": f"{ECS3}/32"}),
        annotated("deny", [rule("deny.test", ("/", "Prefix", "a"))], {"denylist-source-range": f"{ECS3}/32"}),
        annotated("allow-internet", [rule("allow-internet.test", ("/", "Prefix", "a"))],
                  {"allowlist-source-range": str(slb_model.INTERNET)}),
        ingress("main", [rule("canary.test", ("/", "Prefix", "a"))]),
        canary(0),
        annotated("sticky", [rule("sticky.test", ("/", "Prefix", "web"))], {"affinity": "cookie"}),
        annotated("limited", [rule("limited.test", ("/", "Prefix", "a"))], {"limit-rps": "1"}),
        annotated("www", [rule("www.shop.test", ("/", "Prefix", "a"))], {"from-to-www-redirect": "true"}),
        annotated("hashed", [rule("hashed.test", ("/", "Prefix", "web"))], {"upstream-hash-by": "$arg_user"}),
        annotated("small", [rule("small.test", ("/", "Prefix", "a"))], {"proxy-body-size": "1k"}),
        annotated("one-at-a-time", [rule("conn.test", ("/", "Prefix", "slow"))], {"limit-connections": "1"}),
        annotated("https-backend", [rule("https.test", ("/", "Prefix", "secure-b", 443))],
                  {"backend-protocol": "HTTPS"}),
        ingress("http-to-https", [rule("plain-to-tls.test", ("/", "Prefix", "secure-b", 443))]),
        annotated("trusted", [rule("trusted.test", ("/", "Prefix", "a"))],
                  {"allowlist-source-range": "203.0.113.77/32"}),
        ingress("main2", [rule("canary2.test", ("/", "Prefix", "a"))]),
        annotated("main2-canary", [rule("canary2.test", ("/", "Prefix", "b"))],
                  {"canary": "true", "canary-by-header": "X-Version", "canary-by-header-value": "v2",
                   "canary-weight": "0"}),
        ingress("main3", [rule("canary3.test", ("/", "Prefix", "a"))]),
        annotated("main3-canary", [rule("canary3.test", ("/", "Prefix", "b"))],
                  {"canary": "true", "canary-by-header": "X-Version", "canary-by-header-pattern": "^(beta|gamma)$",
                   "canary-by-cookie": "c3"}),
    ]


def workloads(secret: dict) -> list[dict]:
    """The shared backends, Services, TLS Secret, catch-all (c) and secure.test; Services for this module's servers
    (``slow`` → pod a's 9100, ``secure-b`` → pod b's 9443, by number); the annotated Ingresses."""
    return [*base_workloads(secret), on("slow", "a", 80, 9100), on("secure-b", "b", 443, 9443),
            *annotated_ingresses()]


SNIPPET = annotated("snippet", [rule("snippet.test", ("/", "Prefix", "b"))],
                    {"configuration-snippet": "return 200 'owned';"})
# use-forwarded-headers with the VPC's client vSwitch as the trusted proxy
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": ann.CONFIGMAP_NAMES[0].split("/")[1], "namespace": "kube-system"},
             "data": {"use-forwarded-headers": "true", "proxy-real-ip-cidr": "192.168.2.0/24"}}

# Servers of the tests' own in backend pods: "a" answers slowly on 9100 (limit-connections needs a request in
# flight), "b" speaks HTTPS on 9443 (backend-protocol HTTPS). /ready answers at once and says nothing: the fixture
# waits with it until nginx reaches them, without a "request" line the limit-connections test would read.
SERVER = r"""
import http.server, socketserver, ssl, sys, time
name, port, delay, cert, key = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path != "/ready":
            print("request", flush=True)  # the test waits for it: a request in flight
            time.sleep(delay)
        data = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
server = Server(("0.0.0.0", port), Handler)
if cert:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
"""


def start_server(netns: str, name: str, port: int, delay: float = 0.0, cert: str = "",
                 key: str = "") -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER, name, str(port), str(delay),
                             cert, key], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
    return proc


@pytest.fixture(scope="module")
def api() -> Iterator[apilab.ApiLab]:
    yield from apilab.lab_fixture("terway-eniip", ingress_addon=True)


@pytest.fixture(scope="module")
def ilab(api: apilab.ApiLab) -> Iterator[IngressLab]:
    yield from ingress_lab(api, workloads, ("rewrite.test", "/api/hostname", "a"))


@pytest.fixture(scope="module")
def servers(ilab: IngressLab, tmp_path_factory) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """The slow server in pod a and the TLS server in pod b, reached through every entry point."""
    started: dict[str, subprocess.Popen[str]] = {}
    try:
        folder = tmp_path_factory.mktemp("backend-tls")
        cert, key = mint_certificate(ilab.ca, ["secure-b.demo.svc"])
        (folder / "tls.crt").write_text(cert)
        (folder / "tls.key").write_text(key)
        started["slow"] = start_server(ilab.api.pod_netns("demo/a"), "slow-a", 9100, delay=2.0)
        started["tls"] = start_server(ilab.api.pod_netns("demo/b"), "tls-b", 9443, cert=str(folder / "tls.crt"),
                                      key=str(folder / "tls.key"))
        apilab.until(lambda: ilab.everywhere("conn.test", "/ready") == {"slow-a"}
                     and ilab.everywhere("https.test", "/ready") == {"tls-b"},
                     "the slow and the TLS server through every entry point", DEADLINE, 0.2)
        yield started
    finally:  # also when starting them failed half-way; ours, by PID
        for proc in started.values():
            proc.kill()
            proc.wait(timeout=5)


def pairs(lab: IngressLab, *names: str) -> list[tuple[str, str]]:
    """(client netns, address) of the entry points ``names`` (all by default): the VPC ECS to each controller pod,
    the internet client to the SLB."""
    return [pair for name, entry in lab.entries().items() if not names or name in names for pair in entry]


def first_vpc(lab: IngressLab) -> tuple[str, str]:
    """The VPC ECS to the first controller pod: per-pod limits and counts need one nginx."""
    return lab.entries()[VPC][0]


def cookies(client: str, address: str, host: str, path: str = "/hostname",
            cookie: str | None = None) -> tuple[str | None, list[str]]:
    """(who answered, its Set-Cookie headers): all of them, which http_get's dict would fold."""
    conn = _NsConnection(client, address, 80, 3.0, None)
    try:
        conn.request("GET", path, headers={"Host": host, **({"Cookie": cookie} if cookie else {})})
        response = conn.getresponse()
        body = response.read().decode()
        return (body.split()[0] if response.status == 200 else str(response.status),
                response.msg.get_all("Set-Cookie") or [])
    except (OSError, http.client.HTTPException):
        return None, []
    finally:
        conn.close()


def processes(lab: IngressLab) -> dict[str, tuple[int | None, list[int], str | None]]:
    """Per controller pod: nginx's master, its workers and the generation it serves (a reload changes them)."""
    out = {}
    for key, nginx in lab.nginx().items():
        master = nginx.pid()
        out[key] = (master, sorted(nginx.workers(master)) if master else [], nginx.generation(STATUS))
    return out


def canary_weights(lab: IngressLab, header: str = "X-Canary") -> list[int | None]:
    """Per controller pod, the weight of the canary route by ``header`` that nginx's workers use: the endpoints
    file's ``canary`` line, once they loaded that file's version (None before)."""
    out: list[int | None] = []
    for nginx in lab.nginx().values():
        try:
            text = (nginx.folder / "endpoints").read_text()
        except FileNotFoundError:
            out.append(None)
            continue
        if nginx.endpoints_version(STATUS) != text.split("\n", 1)[0].removeprefix("version "):
            out.append(None)
            continue
        # canary ROUTE UPSTREAM WEIGHT TOTAL =HEADER =VALUE =PATTERN =COOKIE
        line = next((x.split() for x in text.splitlines() if x.startswith("canary ") and f" ={header} " in x), None)
        out.append(int(line[3]) if line else None)
    return out


def test_rewrite_target_with_capture_groups_and_app_root(ilab):
    for client, address in pairs(ilab):
        assert who(get(client, address, "rewrite.test", "/api/hostname")) == "a"  # /api/hostname → /hostname
        assert who(get(client, address, "rewrite.test", "/API/hostname")) == "a"  # case-insensitive regex
        root = get(client, address, "rewrite.test", "/")
        assert root[0] == 302 and root[2]["Location"] == "http://rewrite.test/api/hostname"


def test_redirects_308_to_https_and_permanent(ilab):
    for client, address in pairs(ilab):
        www = get(client, address, "shop.test", "/x?y=1")  # from-to-www-redirect
        assert www[0] == 308 and www[2]["Location"] == "http://www.shop.test/x?y=1"
        assert who(get(client, address, "www.shop.test", "/")) == "a"
        forced = get(client, address, "force.test", "/x?y=1")
        assert forced[0] == 308 and forced[2]["Location"] == "https://force.test/x?y=1"
        moved = get(client, address, "moved.test", "/p?q=2")
        assert moved[0] == 301 and moved[2]["Location"] == "https://example.test/p?q=2"


def test_allowlist_and_denylist_by_client_address(ilab):
    # the ECS's own address (192.168.2.10) reaches nginx from the VPC; through the SLB the internet client's own
    # (externalTrafficPolicy Local: kube-proxy does not masquerade)
    for client, address in pairs(ilab, VPC):
        assert who(get(client, address, "allow.test", "/")) == "a"
        assert who(get(client, address, "deny.test", "/")) == "403"
        assert who(get(client, address, "allow-internet.test", "/")) == "403"
    for client, address in pairs(ilab, INTERNET):
        assert who(get(client, address, "allow.test", "/")) == "403"
        assert who(get(client, address, "deny.test", "/")) == "a"
        assert who(get(client, address, "allow-internet.test", "/")) == "a"


def test_canary_by_header_and_cookie_with_precedence(ilab):
    for client, address in pairs(ilab):
        assert who(get(client, address, "canary.test", "/")) == "a"  # weight 0
        assert who(get(client, address, "canary.test", "/", {"X-Canary": "always"})) == "b"
        assert who(get(client, address, "canary.test", "/", {"Cookie": "canary=always"})) == "b"
        assert who(get(client, address, "canary.test", "/", {"Cookie": "canary=never"})) == "a"
        # the header wins over the cookie, either way
        assert who(get(client, address, "canary.test", "/", {"X-Canary": "never",
                                                             "Cookie": "canary=always"})) == "a"
        assert who(get(client, address, "canary.test", "/", {"X-Canary": "always",
                                                             "Cookie": "canary=never"})) == "b"


def test_canary_by_header_value_and_pattern(ilab):
    for client, address in pairs(ilab):
        assert who(get(client, address, "canary2.test", "/", {"X-Version": "v2"})) == "b"
        assert who(get(client, address, "canary2.test", "/", {"X-Version": "v3"})) == "a"
        assert who(get(client, address, "canary2.test", "/", {"X-Version": "always"})) == "a"  # a value is set
        assert who(get(client, address, "canary3.test", "/", {"X-Version": "gamma"})) == "b"
        assert who(get(client, address, "canary3.test", "/", {"X-Version": "delta"})) == "a"
        # no match: on to the cookie (ingress-nginx falls through)
        assert who(get(client, address, "canary3.test", "/", {"X-Version": "delta", "Cookie": "c3=always"})) == "b"


N = 300
TOLERANCE = 0.1  # ±10 points over 300 requests: more than 3 standard deviations of a binomial at 30 %
NO_RELOAD = "endpoints updated without a reload"


def test_canary_weight_within_tolerance_and_changed_without_a_reload(ilab):
    client, address = first_vpc(ilab)
    before = processes(ilab)
    assert None not in before.values() and len(before) == 2
    updates = {key: ilab.log().count(f"ingress pod {key}: {NO_RELOAD}") for key in before}
    try:
        for weight in (30, 80):
            ilab.api.apply(dump(canary(weight)))
            apilab.until(lambda w=weight: canary_weights(ilab) == [w, w],
                         f"both controller pods' nginx to use canary weight {weight}", DEADLINE)
            seen = [who(get(client, address, "canary.test", "/")) for _ in range(N)]
            share = seen.count("b") / N
            assert set(seen) == {"a", "b"} and abs(share - weight / 100) <= TOLERANCE, (weight, share)
            # a header still decides alone
            assert who(get(client, address, "canary.test", "/", {"X-Canary": "never"})) == "a"
        # the same master, workers and generation: nginx was not reloaded; the controller says how it applied them
        assert processes(ilab) == before
        assert all(ilab.log().count(f"ingress pod {key}: {NO_RELOAD}") >= n + 2 for key, n in updates.items())
    finally:
        ilab.api.apply(dump(canary(0)))
    apilab.until(lambda: canary_weights(ilab) == [0, 0], "canary weight 0 again", DEADLINE)


def test_cookie_affinity_keeps_a_client_on_one_pod(ilab):
    everyone = pairs(ilab)
    for client, address in everyone:
        first, set_cookies = cookies(client, address, "sticky.test")
        sticky = [c for c in set_cookies if c.startswith("INGRESSCOOKIE=")]
        assert first and first.startswith("web-") and len(sticky) == 1, set_cookies
        assert "Path=/" in sticky[0] and "HttpOnly" in sticky[0]
        value = sticky[0].split(";")[0]
        # the cookie names the pod the same way in every controller pod: every entry point keeps it there
        answers = [cookies(c, a, "sticky.test", cookie=value) for c, a in everyone for _ in range(3)]
        assert {a[0] for a in answers} == {first}
        assert all(not any(c.startswith("INGRESSCOOKIE=") for c in a[1]) for a in answers)  # kept, not re-set
        spread = {cookies(client, address, "sticky.test")[0] for _ in range(9)}
        assert len(spread) == 3  # without the cookie: round robin over the 3 pods


def test_limit_rps_answers_503_past_the_limit(ilab):
    client, address = first_vpc(ilab)
    apilab.until(lambda: who(get(client, address, "limited.test", "/")) == "a", "the limit's bucket to refill", 10,
                 0.5)
    answers = [who(get(client, address, "limited.test", "/")) for _ in range(20)]
    # 1 r/s with a burst of 5 (ingress-nginx: limit-rps * limit-burst-multiplier 5), nodelay
    assert answers[:5] == ["a"] * 5 and "503" in answers, answers
    assert set(answers) <= {"a", "503"}


def test_a_snippet_ingress_is_refused_with_an_event_while_the_others_serve(ilab):
    before = ilab.generations()
    ilab.api.apply(dump(SNIPPET))  # the API takes any annotation; the controller refuses the Ingress whole

    def rejected() -> list[dict]:
        return [e for e in ilab.api.get_json("events", "-n", "demo", "--field-selector",
                                             "involvedObject.name=snippet,involvedObject.kind=Ingress")["items"]
                if e["reason"] == ingress_controller.REJECTED]

    try:
        apilab.until(rejected, "a Rejected Event on the snippet Ingress", DEADLINE, 0.2)
        (event,) = rejected()
        assert event["type"] == "Warning" and event["source"]["component"] == ingress_controller.COMPONENT
        assert f"Ingress 'demo/snippet': metadata.annotations[{P}configuration-snippet]: snippet annotations are " \
               "refused" in event["message"]
        assert ilab.generations() == before and None not in before.values()  # the same configuration: no reload
        for client, address in pairs(ilab):
            assert who(get(client, address, "snippet.test", "/")) == "c"  # not served: the catch-all's backend
            assert who(get(client, address, "rewrite.test", "/api/hostname")) == "a"
            assert who(get(client, address, "canary.test", "/")) == "a"
        for nginx in ilab.nginx().values():
            assert "owned" not in (nginx.folder / "nginx.conf").read_text()
    finally:
        ilab.api.delete(dump(SNIPPET))


def test_upstream_hash_by_keeps_a_key_on_one_pod(ilab):
    for client, address in pairs(ilab):
        chosen = {}
        for user in ("ann", "bob", "cyd", "dan", "eve", "fay"):
            seen = {who(get(client, address, "hashed.test", f"/hostname?user={user}")) for _ in range(4)}
            assert len(seen) == 1 and next(iter(seen)).startswith("web-"), seen
            chosen[user] = seen.pop()
        assert len(set(chosen.values())) >= 2  # different keys spread


def post(client: str, address: str, host: str, size: int) -> int | None:
    conn = _NsConnection(client, address, 80, 3.0, None)
    try:
        conn.request("POST", "/", body=b"x" * size, headers={"Host": host})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def test_proxy_body_size(ilab):
    for client, address in pairs(ilab):
        assert post(client, address, "small.test", 4096) == 413  # refused by nginx before the pod
        assert post(client, address, "small.test", 512) not in (None, 413)  # reached the pod (which has no POST)


def test_configmap_use_forwarded_headers_trusts_the_vpc_and_real_ip_follows(ilab):
    """The ConfigMap's real-IP semantics (tests/kernel/test_ingress_api.py shows the ConfigMap reconfigures nginx
    and its deletion restores the defaults)."""
    vpc, internet = pairs(ilab, VPC), pairs(ilab, INTERNET)
    header = {"X-Forwarded-For": "203.0.113.77"}

    def trusted_by_every_pod(answer: str) -> bool:
        return {who(get(client, address, "trusted.test", "/", header)) for client, address in vpc} == {answer}

    assert trusted_by_every_pod("403")  # not trusted: the ECS's own address counts
    reloads = {key: ilab.log().count(f"ingress pod {key}: nginx reloaded") for key in ilab.nginx()}
    ilab.api.apply(dump(CONFIGMAP))
    try:
        apilab.until(lambda: trusted_by_every_pod("a"), "every controller pod to trust the VPC's X-Forwarded-For",
                     DEADLINE, 0.1)
        # the controller logs a reload once it verified the new workers, which may serve before the line is written
        apilab.until(lambda: all(ilab.log().count(f"ingress pod {key}: nginx reloaded") > n
                                 for key, n in reloads.items()), "a reload logged for every controller pod",
                     DEADLINE, 0.1)
        for client, address in vpc:
            assert who(get(client, address, "trusted.test", "/")) == "403"  # no header: the ECS itself
            assert who(get(client, address, "trusted.test", "/", {"X-Forwarded-For": "203.0.113.78"})) == "403"
        for client, address in internet:  # the internet client is no trusted proxy: its own address counts
            assert who(get(client, address, "trusted.test", "/", header)) == "403"
    finally:
        ilab.api.delete(dump(CONFIGMAP))
    apilab.until(lambda: trusted_by_every_pod("403"), "upstream's defaults again: no forwarded header trusted",
                 DEADLINE, 0.1)


def test_http2_over_tls(ilab, tmp_path):
    cafile = tmp_path / "ca.pem"
    cafile.write_text(ilab.ca.cert_pem)
    for client, address in pairs(ilab):
        out = Namespace(client).run(["curl", "-sS", "--http2", "--max-time", "5", "--cacert", str(cafile),
                                     "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                     "--resolve", f"secure.test:443:{address}", "https://secure.test/"],
                                    check=False)
        assert out.stdout == "2 200", out.stderr


def test_limit_connections_answers_503_while_one_is_in_flight(ilab, servers):
    client, address = first_vpc(ilab)
    slow = servers["slow"]
    assert slow.stdout is not None
    first: list[str | None] = []
    flight = threading.Thread(target=lambda: first.append(who(get(client, address, "conn.test", "/"))))
    flight.start()
    try:
        # the server says when the request reached it; it then holds it (and so nginx its connection) for 2 s
        ready, _, _ = select.select([slow.stdout], [], [], 5.0)
        assert ready and slow.stdout.readline().strip() == "request"
        assert flight.is_alive()
        assert who(get(client, address, "conn.test", "/")) == "503"  # a second one at the same time
    finally:
        flight.join(timeout=10)
    assert first == ["slow-a"]  # the one in flight was served
    assert who(get(client, address, "conn.test", "/")) == "slow-a"  # and one at a time is fine
    assert slow.stdout.readline().strip() == "request"


def test_backend_protocol_https(ilab, servers):
    for client, address in pairs(ilab):
        assert who(get(client, address, "https.test", "/")) == "tls-b"  # nginx → pod over TLS
        assert who(get(client, address, "plain-to-tls.test", "/")) != "tls-b"  # plain HTTP to a TLS port fails
