"""Ingress scenarios on the real kernel, through the Kubernetes API with kubectl only: ACK's
nginx-ingress-controller add-on (controller pods in kube-system, the ``nginx-ingress-lb`` LoadBalancer Service whose
SLB acklab's cloud controller makes) and the ingress controller on the API configure nginx in the controller pods
from Ingresses, IngressClasses, Services, EndpointSlices and Secrets applied with kubectl; upstream kube-proxy runs
on the nodes (tests/apilab.py).

Scenarios: the Kubernetes docs' path table against real nginx, Exact/Prefix precedence, hosts and one-label
wildcards, default backends and 404, ingress classes, TLS a client verifies (SNI) with the HTTP → HTTPS redirect,
service port by name, X-Forwarded-For/Proto, spread over replicas, an invalid Ingress rejected (an Event) with the
running configuration kept, a graceful reload for a new Ingress, and ``nginx -t`` refusing a Secret whose key does
not match its certificate. How the controller follows the API (scaling without a reload, status, Events, its
ConfigMap, deletion) is tests/kernel/test_ingress_api.py's.

Entry points (``entry``, every scenario runs through each): an ECS of the VPC (ecs-3, another vSwitch) talking to
the controller pods' IPs directly, and a client on the lab's internet through the add-on's SLB → NodePort →
kube-proxy → controller pods (``externalTrafficPolicy: Local``: no masquerade, nginx sees the internet client).

Backends a-d are pods applied with kubectl that answer every path with their name (tests/slbtools.HttpBackend on
port 9000 inside the pod's network namespace, undeclared: Services target it by number); their declared port
"agent" (8080) is the pod agent's agnhost netexec (/hostname, /header?key=), as the Deployment web's pods.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from acklab.k8s import ingress_api
from acklab.k8s import ingress_controller as ctl
from acklab.k8s.certs import Ca, mint_ca, mint_certificate, tls_secret
from netns.kernel.namespace import Namespace
from netns.model import slb as slb_model
from netns.model.security_group import parse_rule
from netns.realize import security_group as sg
from netns.realize import slb as slb_realize
from netns.realize.slb import InternetSegment
from tests import apilab
from tests import k8stools as k
from tests.ingresstools import (
    DOCS_TABLE,
    ECS3,
    backend,
    curl_https,
    docs_table_ingresses,
    get,
    ingress,
    ns,
    rule,
    service,
    who,
)
from tests.slbtools import HttpBackend

pytestmark = pytest.mark.kernel

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
BACKENDS = {"a": "node-1", "b": "node-2", "c": "node-1", "d": "node-2"}
WEB_REPLICAS = 3
LB = ("kube-system", ingress_api.PUBLISH_SERVICE.split("/")[1])
STATUS = ctl.Options().status
DEADLINE = 60.0  # for what the controller, the node agents and the SLB's health checks do asynchronously
REFUSED = "nginx -t refused the configuration, the running one is kept"



def __getattr__(name: str) -> Any:
    """tests/kernel/test_ingress_annotations.py still builds the file-driven lab (now tests/ingress_filelab.py) and
    imports its ``Lab`` and ``manifests`` from here: handed over on demand, so this module does not load it."""
    if name in ("Lab", "manifests"):
        from tests import ingress_filelab

        return getattr(ingress_filelab, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

def backend_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "demo",
                                                             "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{
                "name": "netexec", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                "ports": [{"name": "agent", "containerPort": 8080}]}]}}


def web_deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                         "name": "netexec", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                         "ports": [{"name": "http", "containerPort": 8080}]}]}}}}


def workloads(secret: dict) -> list[dict]:
    """What the user applies: backends, their Services, the TLS Secret, another controller's IngressClass and the
    Ingresses (the add-on's IngressClass ``nginx`` is ACK's)."""
    docs = [ns("demo"), secret, web_deployment(WEB_REPLICAS),
            service("web", [{"name": "http", "port": 80, "targetPort": "http"}]),
            {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "alb"},
             "spec": {"controller": "ingress.k8s.alibabacloud/alb"}}]  # ACK's ALB Ingress controller, not ours
    for name, node in BACKENDS.items():
        docs.append(backend_pod(name, node))
        docs.append(service(name, [{"name": "plain", "port": 80, "targetPort": 9000},
                                   {"name": "named", "port": 8000, "targetPort": "agent"}]))
    return [*docs, *docs_table_ingresses(),
            ingress("mixed", [rule("mixed.test", ("/foo", "Prefix", "a"), ("/foo", "Exact", "b"))]),
            ingress("hosts", [rule("*.wild.test", ("/", "Prefix", "a")), rule("x.wild.test", ("/", "Prefix", "b")),
                              rule("named.test", ("/", "Prefix", "a", "named")),
                              rule("spread.test", ("/", "Prefix", "web"))]),
            ingress("catch-all", default=backend("c")),
            ingress("other-class", [rule("other.test", ("/", "Prefix", "b"))], cls="alb"),
            ingress("secure", [rule("secure.test", ("/", "Prefix", "a"))],
                    tls=[{"hosts": ["secure.test"], "secretName": "secure-tls"}])]


def dump(*docs: dict) -> str:
    return yaml.safe_dump_all(docs)


class Entry(list):
    """(client netns, address) pairs that reach the ingress controllers, and the client addresses nginx sees."""

    def __init__(self, pairs: list[tuple[str, str]], sources: set[str]) -> None:
        super().__init__(pairs)
        self.sources = sources


@dataclass
class IngressLab:
    api: apilab.ApiLab
    ca: Ca
    secret: dict
    slb_address: str = ""
    backends: list[HttpBackend] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.api.lab

    def controllers(self) -> list[Any]:
        """The controller pods' records (made by the node agents), in key order."""
        return ctl.controller_pods(self.name)

    def nginx(self) -> dict[str, ctl.NginxPod]:
        return {r.pod.key: ctl.NginxPod(self.name, r) for r in self.controllers()}

    def generations(self) -> dict[str, str | None]:
        return {key: nginx.generation(STATUS) for key, nginx in self.nginx().items()}

    def log(self) -> str:
        """The ingress controller's output: what it did to each nginx, and why it could not."""
        path = ingress_api.IngressController(self.name).log
        return path.read_text(errors="replace") if path.exists() else ""

    def entries(self) -> dict[str, Entry]:
        return {
            "vpc-ecs-to-pod-ips": Entry([(self.api.netns["ecs-3"], r.ip) for r in self.controllers()], {ECS3}),
            # SLB (kernel DNAT, client kept) → NodePort → kube-proxy (externalTrafficPolicy Local: no masquerade)
            "internet-via-slb": Entry([(InternetSegment(self.name).namespace.name, self.slb_address)],
                                      {str(a) for a in slb_model.INTERNET_CLIENTS}),
        }

    def everywhere(self, host: str, path: str) -> set[str | None]:
        """Who answers ``host``/``path`` through every controller pod and entry point."""
        return {who(get(client, address, host, path)) for entry in self.entries().values()
                for client, address in entry}


@pytest.fixture(scope="module")
def api() -> Iterator[apilab.ApiLab]:
    yield from apilab.lab_fixture("terway-eniip", ingress_addon=True)


@pytest.fixture(scope="module")
def ilab(api: apilab.ApiLab) -> Iterator[IngressLab]:
    # What a user's security groups admit: the ECS's vSwitch to the pods' 80/443, and on the nodes' NodePorts the
    # SLB's health checks (100.64.0.0/10) and its clients (a tcp listener forwards in the kernel, keeping them).
    for rule_id, port in (("sgr-00000080", 80), ("sgr-00000443", 443)):
        k.allow(api.lab, k.NODE_SG, rule_id, "tcp", port, "192.168.2.0/24")
    for rule_id, cidr in (("sgr-0000e001", "100.64.0.0/10"), ("sgr-0000e002", str(slb_model.INTERNET))):
        sg.add_rule(api.lab, k.NODE_SG, parse_rule("test", rule_id, type="ingress", ip_protocol="tcp",
                                                   port_range="30000/32767", cidr_ip=cidr))
    ca = mint_ca()
    cert, key = mint_certificate(ca, ["secure.test"])
    lab = IngressLab(api, ca, tls_secret("demo", "secure-tls", cert, key))
    try:
        api.apply(dump(*workloads(lab.secret)))
        api.wait_running(len(BACKENDS) + WEB_REPLICAS, "demo")
        api.wait_running(2, "kube-system", "app=ingress-nginx")
        for name in BACKENDS:
            lab.backends.append(HttpBackend(api.pod_netns(f"demo/{name}"), name, 9000))

        def slb_address() -> str | None:
            found = api.get_json("service", LB[1], "-n", LB[0]).get("status", {}).get("loadBalancer", {})
            lab.slb_address = (found.get("ingress") or [{}])[0].get("ip") or ""
            return lab.slb_address

        api.timings["add-on's SLB address"] = apilab.until(slb_address, "the add-on's SLB address", DEADLINE)

        def checks_follow_the_controllers() -> bool:
            # a backend is "normal" until its first checks; with externalTrafficPolicy Local a node without a
            # controller pod drops the traffic, so wait until the checks took such a node out (80 and 443)
            hosts = {apilab.NODES[r.node][0] for r in lab.controllers()}
            rows = [row for lb in slb_realize.slbs(api.lab) for rows in lb.backend_health().values() for row in rows]
            return len(rows) == 2 * len(apilab.NODES) and all(
                (row["status"] == "normal") == (row["server_id"] in hosts) for row in rows)

        api.timings["SLB health settled"] = apilab.until(
            checks_follow_the_controllers, "the SLB's checks to follow the controller pods", DEADLINE, 0.2)
        # served through both controller pods and the SLB
        api.timings["Ingresses served"] = apilab.until(lambda: lab.everywhere("r0.paths.test", "/x") == {"a"},
                                                       "r0.paths.test through every entry point", DEADLINE, 0.2)
        yield lab
    finally:
        for server in lab.backends:
            server.kill()


@pytest.fixture(params=["vpc-ecs-to-pod-ips", "internet-via-slb"])
def entry(request, ilab: IngressLab) -> Entry:
    return ilab.entries()[request.param]


def test_the_addon_runs_nginx_in_its_pods_behind_the_slb(ilab):
    controllers = ilab.controllers()
    assert len(controllers) == 2
    for record in controllers:
        pid = ctl.NginxPod(ilab.name, record).pid()
        assert pid is not None and pid in Namespace(record.netns).pids()
        listening = Namespace(record.netns).run(["ss", "-Hltnp"]).stdout
        assert "0.0.0.0:80 " in listening and "0.0.0.0:443 " in listening and "nginx" in listening
        assert "python" not in listening  # the node agent left the controller pods' ports to nginx
    assert ipaddress.IPv4Address(ilab.slb_address) in slb_model.INTERNET

    def statuses() -> dict[str, list[str]]:
        return {i["metadata"]["name"]: [a.get("ip") for a in ((i.get("status") or {}).get("loadBalancer") or {})
                                        .get("ingress") or []]
                for i in ilab.api.get_json("ingress", "-n", "demo")["items"]}

    # the publish Service has an address: every served Ingress says it (ingress-nginx's --publish-service)
    apilab.until(lambda: all(v == [ilab.slb_address] for n, v in statuses().items() if n != "other-class"),
                 "every served Ingress's status to name the SLB's address", DEADLINE, 0.2)
    assert statuses()["other-class"] == []  # another controller's Ingress: not ours to speak for


@pytest.mark.parametrize(("row", "case"), list(enumerate(DOCS_TABLE)))
def test_kubernetes_docs_path_table(ilab, entry, row, case):
    _, _, request, expected = case
    for client, address in entry:
        assert who(get(client, address, f"r{row}.paths.test", request)) == expected


def test_exact_beats_prefix_hosts_wildcards_default_backend_and_classes(ilab, entry):
    for client, address in entry:
        assert who(get(client, address, "mixed.test", "/foo")) == "b"  # Exact wins at equal length
        assert who(get(client, address, "mixed.test", "/foo/x")) == "a"
        assert who(get(client, address, "foo.wild.test", "/")) == "a"  # wildcard: one label
        assert who(get(client, address, "x.wild.test", "/")) == "b"  # an exact host beats the wildcard
        assert who(get(client, address, "a.b.wild.test", "/")) == "c"  # two labels: not the wildcard's
        assert who(get(client, address, "wild.test", "/")) == "c"  # the catch-all's default backend
        assert who(get(client, address, "unknown.test", "/x")) == "c"
        assert who(get(client, address, "other.test", "/")) == "c"  # another class's Ingress is not served
        assert who(get(client, address, "named.test", "/hostname")) == "a"  # port by name → targetPort by name
        answer = get(client, address, "named.test", "/header?key=X-Forwarded-For", {"X-Forwarded-For": "198.51.100.7"})
        given, seen = answer[1].split(", ")
        assert given == "198.51.100.7" and seen in entry.sources  # X-Forwarded-For appended by nginx
        assert get(client, address, "named.test", "/header?key=X-Forwarded-Proto")[1] == "http"
        xff = re.search(r"xff=(\S+) X-Forwarded-Proto=http", get(client, address, "mixed.test", "/foo")[1])
        assert xff is not None and xff.group(1) in entry.sources


def test_tls_with_a_certificate_the_client_verifies(ilab, entry, tmp_path):
    cafile = tmp_path / "ca.pem"
    cafile.write_text(ilab.ca.cert_pem)
    other_ca = tmp_path / "other.pem"
    other_ca.write_text(mint_ca("another CA").cert_pem)
    for client, address in entry:
        ok = curl_https(client, address, "secure.test", str(cafile))
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("a ") and "X-Forwarded-Proto=https" in ok.stdout
        assert curl_https(client, address, "secure.test", str(other_ca)).returncode == 60  # not trusted
        assert curl_https(client, address, "unknown.test", str(cafile)).returncode != 0  # no certificate: refused
        redirect = get(client, address, "secure.test", "/p?q=1")
        assert redirect[0] == 308 and redirect[2]["Location"] == "https://secure.test/p?q=1"


def test_requests_spread_over_replicas(ilab, entry):
    web = sorted(key.split("/", 1)[1] for key in ilab.api.running("demo", "app=web"))
    assert len(web) == WEB_REPLICAS
    for client, address in entry:
        seen = [who(get(client, address, "spread.test", "/hostname")) for _ in range(12)]
        counts = {name: seen.count(name) for name in web}
        # each nginx worker of each controller pod keeps its own round robin, and the kernel (and the SLB) decide
        # which worker gets a connection: per worker the pods' counts differ by at most one, so overall by at
        # most the number of workers; one worker with 3 requests already meets every pod
        balancers = len(ilab.controllers()) * (os.cpu_count() or 1)
        assert set(seen) == set(web) and max(counts.values()) - min(counts.values()) <= balancers, counts


def test_invalid_ingress_is_rejected_and_the_running_config_stays(ilab):
    before = ilab.generations()
    bad = ingress("bad", [rule("bad.test", ("/x;return 200", "Prefix", "a"))])
    ilab.api.apply(dump(bad))  # the API takes the path; nginx could not: the controller refuses the Ingress

    def rejected() -> list[dict]:
        return [e for e in ilab.api.get_json("events", "-n", "demo", "--field-selector",
                                             "involvedObject.name=bad,involvedObject.kind=Ingress")["items"]
                if e["reason"] == ingress_api.REJECTED]

    try:
        apilab.until(rejected, "a Rejected Event on the bad Ingress", DEADLINE, 0.2)
        (event,) = rejected()
        assert event["type"] == "Warning" and "spec.rules[0].http.paths[0].path" in event["message"]
        assert ilab.generations() == before and None not in before.values()  # nothing reloaded
        for entry in ilab.entries().values():
            for client, address in entry:
                assert who(get(client, address, "mixed.test", "/foo")) == "b"
                assert who(get(client, address, "bad.test", "/x;return%20200")) == "c"  # not served: the catch-all
    finally:
        ilab.api.delete(dump(bad))


def test_a_new_ingress_reloads_nginx_gracefully(ilab):
    nginx = ilab.nginx()
    masters = {key: pod.pid() for key, pod in nginx.items()}
    workers = {key: pod.workers(masters[key]) for key, pod in nginx.items()}
    assert all(len(w) == os.cpu_count() for w in workers.values())  # worker_processes auto
    reloads = {key: ilab.log().count(f"ingress pod {key}: nginx reloaded") for key in nginx}
    added = ingress("added", [rule("added.test", ("/", "Prefix", "b"))])
    ilab.api.apply(dump(added))
    try:
        # the controller says so once nginx serves the new generation and no old worker accepts any more
        apilab.until(lambda: all(ilab.log().count(f"ingress pod {key}: nginx reloaded") > n
                                 for key, n in reloads.items()), "both controller pods' nginx reloaded", DEADLINE)
        for key, pod in nginx.items():
            assert pod.pid() == masters[key]  # same master, new workers; the old ones accept no more connections
            assert not set(pod.workers(masters[key])) & set(workers[key])
            assert not any(ctl.still_accepting(w) for w in workers[key])
        assert ilab.everywhere("added.test", "/") == {"b"}
    finally:
        ilab.api.delete(dump(added))
    apilab.until(lambda: ilab.everywhere("added.test", "/") == {"c"}, "added.test gone: the catch-all", DEADLINE)


def test_nginx_t_refusal_keeps_the_running_config(ilab, tmp_path):
    """A certificate whose key does not match passes rendering but not ``nginx -t``: nothing is swapped, the
    controller retries, and serves again once the Secret is right."""
    before = ilab.generations()
    refusals = {key: ilab.log().count(f"ingress pod {key}: {REFUSED}") for key in before}
    cert, _ = mint_certificate(ilab.ca, ["secure.test"])
    _, other_key = mint_certificate(ilab.ca, ["secure.test"])
    ilab.api.apply(dump(tls_secret("demo", "secure-tls", cert, other_key)))
    after = ingress("after", [rule("after.test", ("/", "Prefix", "d"))])
    try:
        apilab.until(lambda: all(ilab.log().count(f"ingress pod {key}: {REFUSED}") > n
                                 for key, n in refusals.items()), "nginx -t to refuse in both controller pods",
                     DEADLINE)
        assert ilab.generations() == before
        cafile = tmp_path / "ca.pem"
        cafile.write_text(ilab.ca.cert_pem)
        for key, pod in ilab.nginx().items():
            assert not (pod.folder / "nginx.conf.new").exists() and before[key] in (
                pod.folder / "nginx.conf").read_text()
        for entry in ilab.entries().values():
            for client, address in entry:
                assert who(get(client, address, "mixed.test", "/foo")) == "b"
                ok = curl_https(client, address, "secure.test", str(cafile))  # still the matching pair
                assert ok.returncode == 0 and ok.stdout.startswith("a "), ok.stderr
    finally:
        ilab.api.apply(dump(ilab.secret))
    ilab.api.apply(dump(after))  # the controller has not given up: the next change is served
    try:
        apilab.until(lambda: ilab.everywhere("after.test", "/") == {"d"}, "after.test served", DEADLINE)
    finally:
        ilab.api.delete(dump(after))
