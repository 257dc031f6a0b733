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
"agent" (8080) is the pod agent's agnhost netexec (/hostname, /header?key=), as the Deployment web's pods. The lab
is tests/ingresstools.ingress_lab, shared with tests/kernel/test_ingress_annotations.py.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator

import pytest

from acklab.k8s import ingress_controller
from acklab.k8s.certs import mint_ca, mint_certificate, tls_secret
from acklab.k8s.realize import ingress as ctl
from netns.kernel.namespace import Namespace
from netns.model import slb as slb_model
from tests import apilab
from tests.ingresstools import (
    DEADLINE,
    DOCS_TABLE,
    WEB_REPLICAS,
    Entry,
    IngressLab,
    base_workloads,
    curl_https,
    docs_table_ingresses,
    dump,
    get,
    ingress,
    ingress_lab,
    rule,
    who,
)

pytestmark = pytest.mark.kernel

REFUSED = "nginx -t refused the configuration, the running one is kept"


def workloads(secret: dict) -> list[dict]:
    """What the user applies: the shared backends, Services, TLS Secret, catch-all and secure.test
    (``ingresstools.base_workloads``), another controller's IngressClass and the scenarios' Ingresses (the add-on's
    IngressClass ``nginx`` is ACK's)."""
    return [*base_workloads(secret),
            {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "alb"},
             "spec": {"controller": "ingress.k8s.alibabacloud/alb"}},  # ACK's ALB Ingress controller, not ours
            *docs_table_ingresses(),
            ingress("mixed", [rule("mixed.test", ("/foo", "Prefix", "a"), ("/foo", "Exact", "b"))]),
            ingress("hosts", [rule("*.wild.test", ("/", "Prefix", "a")), rule("x.wild.test", ("/", "Prefix", "b")),
                              rule("named.test", ("/", "Prefix", "a", "named")),
                              rule("spread.test", ("/", "Prefix", "web"))]),
            ingress("other-class", [rule("other.test", ("/", "Prefix", "b"))], cls="alb")]


@pytest.fixture(scope="module")
def api() -> Iterator[apilab.ApiLab]:
    yield from apilab.lab_fixture("terway-eniip", ingress_addon=True)


@pytest.fixture(scope="module")
def ilab(api: apilab.ApiLab) -> Iterator[IngressLab]:
    yield from ingress_lab(api, workloads, ("r0.paths.test", "/x", "a"))


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
                if e["reason"] == ingress_controller.REJECTED]

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
