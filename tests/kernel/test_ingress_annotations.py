"""nginx.ingress.kubernetes.io annotations on the real kernel: real requests through real nginx in the two
controller pods (the lab of tests/kernel/test_ingress.py, plus annotated Ingresses).

Entry points: an ECS of the VPC (192.168.2.10) talking to the controller pods' IPs, and a client on the lab's
internet through the internet SLB → NodePort → kube-proxy (nginx sees a node's address there: kube-proxy
masquerades). Allow-lists use that difference: two client addresses as nginx sees them.
"""

from __future__ import annotations

import http.client
import select
import subprocess
import sys
import threading

import pytest

from acklab.k8s import ingress_annotations as ann
from acklab.k8s import ingress_controller as ctl
from acklab.k8s.certs import mint_certificate
from acklab.k8s.model import parse_documents
from netns.kernel.namespace import Namespace
from netns.model.errors import ValidationError
from netns.realize import slb as slb_realize
from tests.kernel.test_ingress import ECS3, Lab, get, manifests, rule, service, who
from tests.labtools import clean_lab, new_lab, wait_for
from tests.slbtools import _NsConnection

pytestmark = pytest.mark.kernel
P = "nginx.ingress.kubernetes.io/"


def annotated(name: str, rules: list, annotations: dict, tls: list | None = None) -> dict:
    spec: dict = {"ingressClassName": "nginx", "rules": rules}
    if tls:
        spec["tls"] = tls
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "demo", "annotations": {P + k: v for k, v in annotations.items()}},
            "spec": spec}


def canary(weight: int) -> dict:
    return annotated("main-canary", [rule("canary.test", ("/", "Prefix", "b"))],
                     {"canary": "true", "canary-by-header": "X-Canary", "canary-by-cookie": "canary",
                      "canary-weight": str(weight)})


def annotated_ingresses(weight: int = 0) -> tuple[dict, ...]:
    return (
        # netexec on the "named" port (8000 → the pods' 8080) answers /hostname with the pod's name
        annotated("rewrite", [rule("rewrite.test", ("/api(/|$)(.*)", "ImplementationSpecific", "a", "named"))],
                  {"rewrite-target": "/$2", "app-root": "/api/hostname"}),
        annotated("force", [rule("force.test", ("/", "Prefix", "a"))], {"force-ssl-redirect": "true"}),
        annotated("moved", [rule("moved.test", ("/", "Prefix", "a"))],
                  {"permanent-redirect": "https://example.test$request_uri"}),
        annotated("allow", [rule("allow.test", ("/", "Prefix", "a"))], {"allowlist-source-range": f"{ECS3}/32"}),
        annotated("deny", [rule("deny.test", ("/", "Prefix", "a"))], {"denylist-source-range": f"{ECS3}/32"}),
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "main", "namespace": "demo"},
         "spec": {"ingressClassName": "nginx", "rules": [rule("canary.test", ("/", "Prefix", "a"))]}},
        canary(weight),
        annotated("sticky", [rule("sticky.test", ("/", "Prefix", "web"))], {"affinity": "cookie"}),
        annotated("limited", [rule("limited.test", ("/", "Prefix", "a"))], {"limit-rps": "1"}),
        annotated("www", [rule("www.shop.test", ("/", "Prefix", "a"))], {"from-to-www-redirect": "true"}),
        annotated("hashed", [rule("hashed.test", ("/", "Prefix", "web"))], {"upstream-hash-by": "$arg_user"}),
        annotated("small", [rule("small.test", ("/", "Prefix", "a"))], {"proxy-body-size": "1k"}),
        annotated("one-at-a-time", [rule("conn.test", ("/", "Prefix", "slow"))], {"limit-connections": "1"}),
        annotated("https-backend", [rule("https.test", ("/", "Prefix", "secure-b", 443))],
                  {"backend-protocol": "HTTPS"}),
        annotated("http-to-https", [rule("plain-to-tls.test", ("/", "Prefix", "secure-b", 443))], {}),
        *EXTRA_SERVICES,
        annotated("trusted", [rule("trusted.test", ("/", "Prefix", "a"))],
                  {"allowlist-source-range": "203.0.113.77/32"}),
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "main2", "namespace": "demo"},
         "spec": {"ingressClassName": "nginx", "rules": [rule("canary2.test", ("/", "Prefix", "a"))]}},
        annotated("main2-canary", [rule("canary2.test", ("/", "Prefix", "b"))],
                  {"canary": "true", "canary-by-header": "X-Version", "canary-by-header-value": "v2",
                   "canary-weight": "0"}),
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "main3", "namespace": "demo"},
         "spec": {"ingressClassName": "nginx", "rules": [rule("canary3.test", ("/", "Prefix", "a"))]}},
        annotated("main3-canary", [rule("canary3.test", ("/", "Prefix", "b"))],
                  {"canary": "true", "canary-by-header": "X-Version", "canary-by-header-pattern": "^(beta|gamma)$",
                   "canary-by-cookie": "c3"}),
    )


# Servers of the tests' own in backend pods: "a" answers slowly on 9100 (limit-connections needs a request in
# flight), "b" speaks HTTPS on 9443 (backend-protocol HTTPS). Services target them by number.
SERVER = r"""
import http.server, socketserver, ssl, sys, time
name, port, delay, cert, key = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
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
EXTRA_SERVICES = (service("slow", [{"name": "http", "port": 80, "targetPort": 9100}], "172.21.0.40"),
                  service("secure-b", [{"name": "https", "port": 443, "targetPort": 9443}], "172.21.0.41"))
# the Services select app=slow / app=secure-b: point them at pods a and b
EXTRA_SERVICES[0]["spec"]["selector"] = {"app": "a"}
EXTRA_SERVICES[1]["spec"]["selector"] = {"app": "b"}


def start_server(netns: str, name: str, port: int, delay: float = 0.0, cert: str = "",
                 key: str = "") -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER, name, str(port), str(delay),
                             cert, key], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
    return proc


SNIPPET = annotated("snippet", [rule("snippet.test", ("/", "Prefix", "b"))],
                    {"configuration-snippet": "return 200 'owned';"})


@pytest.fixture(scope="module")
def alab(tmp_path_factory):
    name = new_lab()
    lab = None
    servers: list[subprocess.Popen[str]] = []
    try:
        lab = Lab(name, annotated_ingresses())
        folder = tmp_path_factory.mktemp("backend-tls")
        cert, key = mint_certificate(lab.ca, ["secure-b.demo.svc"])
        (folder / "tls.crt").write_text(cert)
        (folder / "tls.key").write_text(key)
        servers.append(start_server(lab.pod("a").netns, "slow-a", 9100, delay=2.0))
        lab.slow = servers[-1]  # type: ignore[attr-defined]
        servers.append(start_server(lab.pod("b").netns, "tls-b", 9443, cert=str(folder / "tls.crt"),
                                    key=str(folder / "tls.key")))
        yield lab
    finally:  # also when building the lab failed half-way
        for proc in servers:  # ours, by PID
            proc.kill()
            proc.wait(timeout=5)
        for b in lab.backends if lab else ():
            b.kill()
        clean_lab(name)


def entries(lab: Lab) -> dict[str, tuple[str, str]]:
    """One (client netns, address) per entry point."""
    return {"vpc": (lab.ecs3.namespace.name, lab.controllers()[0].ip),
            "internet": (slb_realize.InternetSegment(lab.name).namespace.name, lab.slb_address)}


def sync(lab: Lab, docs: tuple[dict, ...], rejected: list | None = None) -> list[str]:
    return ctl.sync(lab.name, parse_documents([(d, "t") for d in manifests(3, lab.secret, docs)]),
                    rejected=rejected)


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


def test_rewrite_target_with_capture_groups_and_app_root(alab):
    for client, address in entries(alab).values():
        assert who(get(client, address, "rewrite.test", "/api/hostname")) == "a"  # /api/hostname → /hostname
        assert who(get(client, address, "rewrite.test", "/API/hostname")) == "a"  # case-insensitive regex
        root = get(client, address, "rewrite.test", "/")
        assert root[0] == 302 and root[2]["Location"] == "http://rewrite.test/api/hostname"


def test_redirects_308_to_https_and_permanent(alab):
    for client, address in entries(alab).values():
        www = get(client, address, "shop.test", "/x?y=1")  # from-to-www-redirect
        assert www[0] == 308 and www[2]["Location"] == "http://www.shop.test/x?y=1"
        assert who(get(client, address, "www.shop.test", "/")) == "a"
        forced = get(client, address, "force.test", "/x?y=1")
        assert forced[0] == 308 and forced[2]["Location"] == "https://force.test/x?y=1"
        moved = get(client, address, "moved.test", "/p?q=2")
        assert moved[0] == 301 and moved[2]["Location"] == "https://example.test/p?q=2"


def test_allowlist_and_denylist_by_client_address(alab):
    vpc, internet = entries(alab)["vpc"], entries(alab)["internet"]
    # the ECS's own address (192.168.2.10) reaches nginx from the VPC; a node's address through the SLB
    assert who(get(*vpc, "allow.test", "/")) == "a"
    assert who(get(*internet, "allow.test", "/")) == "403"
    assert who(get(*vpc, "deny.test", "/")) == "403"
    assert who(get(*internet, "deny.test", "/")) == "a"


def test_canary_by_header_and_cookie_with_precedence(alab):
    for client, address in entries(alab).values():
        assert who(get(client, address, "canary.test", "/")) == "a"  # weight 0
        assert who(get(client, address, "canary.test", "/", {"X-Canary": "always"})) == "b"
        assert who(get(client, address, "canary.test", "/", {"Cookie": "canary=always"})) == "b"
        assert who(get(client, address, "canary.test", "/", {"Cookie": "canary=never"})) == "a"
        # the header wins over the cookie, either way
        assert who(get(client, address, "canary.test", "/", {"X-Canary": "never",
                                                             "Cookie": "canary=always"})) == "a"
        assert who(get(client, address, "canary.test", "/", {"X-Canary": "always",
                                                             "Cookie": "canary=never"})) == "b"


def test_canary_by_header_value_and_pattern(alab):
    for client, address in entries(alab).values():
        assert who(get(client, address, "canary2.test", "/", {"X-Version": "v2"})) == "b"
        assert who(get(client, address, "canary2.test", "/", {"X-Version": "v3"})) == "a"
        assert who(get(client, address, "canary2.test", "/", {"X-Version": "always"})) == "a"  # a value is set
        assert who(get(client, address, "canary3.test", "/", {"X-Version": "gamma"})) == "b"
        assert who(get(client, address, "canary3.test", "/", {"X-Version": "delta"})) == "a"
        # no match: on to the cookie (ingress-nginx falls through)
        assert who(get(client, address, "canary3.test", "/", {"X-Version": "delta", "Cookie": "c3=always"})) == "b"


N = 300
TOLERANCE = 0.1  # ±10 points over 300 requests: more than 3 standard deviations of a binomial at 30 %


def test_canary_weight_within_tolerance_and_changed_without_a_reload(alab):
    client, address = entries(alab)["vpc"]
    nginx = [ctl.NginxPod(alab.name, c) for c in alab.controllers()]
    before = {n.record.pod.key: (n.pid(), sorted(n.workers(n.pid()))) for n in nginx}
    for weight in (30, 80):
        changes = sync(alab, annotated_ingresses(weight))
        assert changes and all("endpoints updated without a reload" in c for c in changes), changes
        seen = [who(get(client, address, "canary.test", "/")) for _ in range(N)]
        share = seen.count("b") / N
        assert set(seen) == {"a", "b"} and abs(share - weight / 100) <= TOLERANCE, (weight, share)
        # a header still decides alone
        assert who(get(client, address, "canary.test", "/", {"X-Canary": "never"})) == "a"
    # the same master and the same workers: nginx was not reloaded
    assert before == {n.record.pod.key: (n.pid(), sorted(n.workers(n.pid()))) for n in nginx}
    sync(alab, annotated_ingresses())


def test_cookie_affinity_keeps_a_client_on_one_pod(alab):
    for client, address in entries(alab).values():
        first, set_cookies = cookies(client, address, "sticky.test")
        sticky = [c for c in set_cookies if c.startswith("INGRESSCOOKIE=")]
        assert first and first.startswith("web-") and len(sticky) == 1, set_cookies
        assert "Path=/" in sticky[0] and "HttpOnly" in sticky[0]
        value = sticky[0].split(";")[0]
        answers = [cookies(client, address, "sticky.test", cookie=value) for _ in range(9)]
        assert {a[0] for a in answers} == {first}  # every request on the same pod, through both controllers
        assert all(not any(c.startswith("INGRESSCOOKIE=") for c in a[1]) for a in answers)  # kept, not re-set
        spread = {cookies(client, address, "sticky.test")[0] for _ in range(9)}
        assert len(spread) == 3  # without the cookie: round robin over the 3 pods


def test_limit_rps_answers_503_past_the_limit(alab):
    client, address = entries(alab)["vpc"]
    wait_for(lambda: who(get(client, address, "limited.test", "/")) == "a", "the limit's bucket to refill",
             timeout=10)
    answers = [who(get(client, address, "limited.test", "/")) for _ in range(20)]
    # 1 r/s with a burst of 5 (ingress-nginx: limit-rps * limit-burst-multiplier 5), nodelay
    assert answers[:5] == ["a"] * 5 and "503" in answers, answers
    assert set(answers) <= {"a", "503"}


def test_a_snippet_ingress_is_refused_while_the_others_serve(alab):
    docs = (*annotated_ingresses(), SNIPPET)
    with pytest.raises(ValidationError, match="snippet annotations are refused"):
        sync(alab, docs)  # strict: nothing applied
    rejected: list = []
    sync(alab, docs, rejected)
    assert [e.resource for e in rejected] == ["Ingress 'demo/snippet'"]
    assert rejected[0].field == f"metadata.annotations[{P}configuration-snippet]"
    for client, address in entries(alab).values():
        assert who(get(client, address, "snippet.test", "/")) == "c"  # not served: the catch-all's backend
        assert who(get(client, address, "rewrite.test", "/api/hostname")) == "a"
        assert who(get(client, address, "mixed.test", "/foo")) == "b"
    for controller in alab.controllers():
        assert "owned" not in (ctl.NginxPod(alab.name, controller).folder / "nginx.conf").read_text()
    assert sync(alab, annotated_ingresses(), []) == []  # without it: the same configuration, nothing to do


def test_upstream_hash_by_keeps_a_key_on_one_pod(alab):
    for client, address in entries(alab).values():
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


def test_proxy_body_size(alab):
    for client, address in entries(alab).values():
        assert post(client, address, "small.test", 4096) == 413  # refused by nginx before the pod
        assert post(client, address, "small.test", 512) not in (None, 413)  # reached the pod (which has no POST)


def test_configmap_use_forwarded_headers_trusts_the_vpc_and_real_ip_follows(alab):
    client, _ = entries(alab)["vpc"]
    addresses = [c.ip for c in alab.controllers()]
    header = {"X-Forwarded-For": "203.0.113.77"}
    for address in addresses:
        assert who(get(client, address, "trusted.test", "/", header)) == "403"  # not trusted: the ECS's address
    trusting = ctl.Options(config=ann.parse_configmap({"use-forwarded-headers": "true",
                                                       "proxy-real-ip-cidr": "192.168.2.0/24"}))
    try:
        changes = ctl.sync(alab.name, parse_documents([(d, "t") for d in manifests(3, alab.secret,
                                                                                  annotated_ingresses())]),
                           trusting)
        assert len(changes) == 2 and all("nginx reloaded" in c for c in changes)
        for address in addresses:
            assert who(get(client, address, "trusted.test", "/", header)) == "a"
            assert who(get(client, address, "trusted.test", "/")) == "403"  # no header: the ECS itself
            assert who(get(client, address, "trusted.test", "/", {"X-Forwarded-For": "203.0.113.78"})) == "403"
    finally:
        sync(alab, annotated_ingresses())


def test_http2_over_tls(alab, tmp_path):
    cafile = tmp_path / "ca.pem"
    cafile.write_text(alab.ca.cert_pem)
    for client, address in entries(alab).values():
        out = Namespace(client).run(["curl", "-sS", "--http2", "--max-time", "5", "--cacert", str(cafile),
                                     "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                     "--resolve", f"secure.test:443:{address}", "https://secure.test/"],
                                    check=False)
        assert out.stdout == "2 200", out.stderr


def test_limit_connections_answers_503_while_one_is_in_flight(alab):
    client, address = entries(alab)["vpc"]
    first: list[str | None] = []
    slow = threading.Thread(target=lambda: first.append(who(get(client, address, "conn.test", "/"))))
    slow.start()
    try:
        # the server says when the request reached it; it then holds it (and so nginx its connection) for 2 s
        ready, _, _ = select.select([alab.slow.stdout], [], [], 5.0)
        assert ready and alab.slow.stdout.readline().strip() == "request"
        assert slow.is_alive()
        assert who(get(client, address, "conn.test", "/")) == "503"  # a second one at the same time
    finally:
        slow.join(timeout=10)
    assert first == ["slow-a"]  # the one in flight was served
    assert who(get(client, address, "conn.test", "/")) == "slow-a"  # and one at a time is fine
    assert alab.slow.stdout.readline().strip() == "request"


def test_backend_protocol_https(alab):
    for client, address in entries(alab).values():
        assert who(get(client, address, "https.test", "/")) == "tls-b"  # nginx → pod over TLS
        assert who(get(client, address, "plain-to-tls.test", "/")) != "tls-b"  # plain HTTP to a TLS port fails
