"""Ingress on the real kernel: nginx in two ingress-nginx controller pods (kube-system), configured from
networking.k8s.io/v1 Ingresses, proxying to backend pods; requests from an ECS in another vSwitch.

Scenarios: the Kubernetes docs' path table against real nginx, Exact/Prefix precedence, hosts and one-label
wildcards, default backends and 404, ingress classes, TLS a client verifies (SNI) with the HTTP → HTTPS redirect,
service port by name, X-Forwarded-For/Proto, spread over replicas, invalid Ingress rejected with the running
configuration kept, idempotent sync, and scaling the backend under a request loop with zero failed requests.

Entry points (``entry``, every scenario runs through each): an ECS of the VPC talking to the controller pods' IPs
directly, and a client on the lab's internet through an internet SLB → NodePort → kube-proxy → controller pods (the
controllers' Service of type LoadBalancer, as ACK deploys ingress-nginx; the SLB is realized directly here, as
the program's CCM part would make it).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import pytest
import yaml

from acklab.k8s import apiserver
from acklab.k8s import ingress_controller as ctl
from acklab.k8s.certs import mint_ca, mint_certificate, tls_secret
from acklab.k8s.kube_proxy_sync import cluster_pods, sync_node
from acklab.k8s.model import parse_documents
from acklab.k8s.pods import load_records
from netns.kernel.namespace import Namespace
from netns.model import slb as slb_model
from netns.model.errors import LabError, ValidationError
from netns.model.security_group import parse_rule
from netns.realize import security_group as sg
from netns.realize import slb as slb_realize
from tests import k8stools as k
from tests.labtools import clean_lab, new_lab, wait_for
from tests.slbtools import HttpBackend, http_get

pytestmark = pytest.mark.kernel

ECS3 = "192.168.2.10"
# Pods answering every path with their name (HttpBackend on port 9000, undeclared: Services target it by
# number); their declared port "agent" (8080) is the pod agent's (netexec: /hostname, /header?key=).
BACKENDS = ("a", "b", "c", "d")


def ns(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def controller_deployment(replicas: int = 2) -> dict:
    labels = {"app": "ingress-nginx"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx-ingress-controller", "namespace": "kube-system"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                         "name": "nginx-ingress-controller",
                         "image": "registry.k8s.io/ingress-nginx/controller:v1.11.2",
                         "ports": [{"name": "http", "containerPort": 80},
                                   {"name": "https", "containerPort": 443}]}]}}}}


def web_deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                         "name": "netexec", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
                         "ports": [{"name": "http", "containerPort": 8080}]}]}}}}


def backend_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "demo",
                                                             "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "echo", "image": "echo",
                                                       "ports": [{"name": "agent", "containerPort": 8080}]}]}}


def service(name: str, ports: list[dict], cluster_ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "demo"},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": name}, "ports": ports}}


def backend(svc: str, port: int | str = 80) -> dict:
    return {"service": {"name": svc, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def rule(host: str | None, *paths: tuple[str, str, str] | tuple[str, str, str, int | str]) -> dict:
    r: dict = {"http": {"paths": [{"path": p[0], "pathType": p[1], "backend": backend(*p[2:])} for p in paths]}}
    if host:
        r["host"] = host
    return r


def ingress(name: str, rules: list | None = None, default: dict | None = None, tls: list | None = None,
            cls: str = "nginx") -> dict:
    spec: dict = {"ingressClassName": cls}
    if rules:
        spec["rules"] = rules
    if default:
        spec["defaultBackend"] = default
    if tls:
        spec["tls"] = tls
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": "demo"},
            "spec": spec}


# The Kubernetes docs' table (kind, paths → backends a, b, c in order; request; expected backend, d = default)
DOCS_TABLE = [
    ("Prefix", ["/"], "/anything", "a"),
    ("Exact", ["/foo"], "/foo", "a"),
    ("Exact", ["/foo"], "/bar", "d"),
    ("Exact", ["/foo"], "/foo/", "d"),
    ("Exact", ["/foo/"], "/foo", "d"),
    ("Prefix", ["/foo"], "/foo", "a"),
    ("Prefix", ["/foo"], "/foo/", "a"),
    ("Prefix", ["/foo/"], "/foo", "a"),
    ("Prefix", ["/foo/"], "/foo/", "a"),
    ("Prefix", ["/aaa/bb"], "/aaa/bbb", "d"),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb", "a"),
    ("Prefix", ["/aaa/bbb/"], "/aaa/bbb", "a"),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb/", "a"),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb/ccc", "a"),
    ("Prefix", ["/aaa/bbb"], "/aaabbb", "d"),
    ("Prefix", ["/", "/aaa"], "/aaa/ccc", "b"),
    ("Prefix", ["/", "/aaa", "/aaa/bbb"], "/aaa/bbb", "c"),
    ("Prefix", ["/", "/aaa", "/aaa/bbb"], "/ccc", "a"),
    ("Prefix", ["/aaa"], "/ccc", "d"),
]


def manifests(web_replicas: int, secret: dict, extra: tuple[dict, ...] = ()) -> list[dict]:
    docs = [ns("demo"), ns("kube-system"),
            {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
             "spec": {"controller": "k8s.io/ingress-nginx"}},
            controller_deployment(), web_deployment(web_replicas), secret, CONTROLLER_LB,
            service("web", [{"name": "http", "port": 80, "targetPort": "http"}], "172.21.0.10")]
    for i, (name, node) in enumerate(zip(BACKENDS, ("node-1", "node-2", "node-1", "node-2"), strict=True)):
        docs.append(backend_pod(name, node))
        docs.append(service(name, [{"name": "plain", "port": 80, "targetPort": 9000},
                                   {"name": "named", "port": 8000, "targetPort": "agent"}], f"172.21.0.{20 + i}"))
    for n, (kind, paths, _, _) in enumerate(DOCS_TABLE):
        docs.append(ingress(f"docs-{n}", [rule(f"r{n}.paths.test", *[(p, kind, s) for p, s in zip(paths, "abc",
                                                                                                  strict=False)])],
                            default=backend("d")))
    docs += [
        ingress("mixed", [rule("mixed.test", ("/foo", "Prefix", "a"), ("/foo", "Exact", "b"))]),
        ingress("hosts", [rule("*.wild.test", ("/", "Prefix", "a")), rule("x.wild.test", ("/", "Prefix", "b")),
                          rule("named.test", ("/", "Prefix", "a", "named")),
                          rule("spread.test", ("/", "Prefix", "web"))]),
        ingress("catch-all", default=backend("c")),
        ingress("other-class", [rule("other.test", ("/", "Prefix", "b"))], cls="alb"),
        ingress("secure", [rule("secure.test", ("/", "Prefix", "a"))],
                tls=[{"hosts": ["secure.test"], "secretName": "secure-tls"}]),
        *extra,
    ]
    return docs


def apply(network, docs: list[dict]) -> list[str]:
    """What the playbook does: drain (sync), converge the pods, kube-proxy's rules, sync again."""
    cluster = parse_documents([(d, "test.yaml") for d in docs])
    changes = ctl.sync(network.lab, cluster)
    changes += k.converge(network, yaml.safe_dump_all(docs))
    services = apiserver.with_status(cluster.services, apiserver.allocate(network.lab, cluster.services))
    pods = cluster_pods(network.lab)
    for node in network.nodes:
        sync_node(network.lab, node.name, node.netns, services, pods, node.ip, k.POD_VSWITCH_CIDR)
    changes += ctl.sync(network.lab, cluster)
    return changes


CONTROLLER_LB = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingress-lb", "namespace": "kube-system"},
                 "spec": {"type": "LoadBalancer", "selector": {"app": "ingress-nginx"},
                          "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                    {"name": "https", "port": 443, "targetPort": "https"}]}}
SLB_ID = "lb-0000e001"


class Lab:
    def __init__(self, name: str, extra: tuple[dict, ...] = ()) -> None:
        self.name = name
        self.extra = extra  # more manifests (tests/kernel/test_ingress_annotations.py)
        self.backends: list[HttpBackend] = []
        self.network, self.nodes, self.ecs3 = k.build_cluster(self.name, "terway-eniip")
        for rule_id, port in (("sgr-00000080", 80), ("sgr-00000443", 443)):  # the ECS's vSwitch may reach pods
            k.allow(self.name, k.NODE_SG, rule_id, "tcp", port, "192.168.2.0/24")
        self.ca = mint_ca()
        cert, key = mint_certificate(self.ca, ["secure.test"])
        self.secret = tls_secret("demo", "secure-tls", cert, key)
        self.changes = apply(self.network, manifests(3, self.secret, extra))
        for name in BACKENDS:
            record = self.pod(name)
            self.backends.append(HttpBackend(record.netns, name, 9000))
        self.slb_address = self._slb()

    def _slb(self) -> str:
        """An internet SLB in front of the controllers' LoadBalancer Service: a tcp listener per port to its
        NodePort on both nodes, which admit on node ports the SLB's health checks from 100.64.0.0/10 and the
        clients themselves (a tcp listener forwards in the kernel: the node sees the client's own address)."""
        for rule_id, cidr in (("sgr-0000e001", "100.64.0.0/10"), ("sgr-0000e002", str(slb_model.INTERNET))):
            sg.add_rule(self.name, k.NODE_SG, parse_rule("test", rule_id, type="ingress", ip_protocol="tcp",
                                                         port_range="30000/32767", cidr_ip=cidr))
        allocations = apiserver.allocate(self.name, [CONTROLLER_LB])
        lb = slb_realize.SlbInstance(self.name, SLB_ID)
        address = lb.create("internet", None, None, "test slb", "ingress")
        refs = tuple(slb_model.BackendRef(i.instance_id, 100) for i in self.nodes)
        slb_realize.put_backend_servers(self.name, SLB_ID, refs, "test backends")
        for port in (80, 443):
            node_port = allocations.node_ports[f"kube-system/ingress-lb:{'http' if port == 80 else 'https'}/TCP"]
            args = {"frontend_port": port, "protocol": "tcp", "backend_port": node_port, "health_check_interval": 1,
                    "health_check_timeout": 1, "healthy_threshold": 2, "unhealthy_threshold": 2}
            slb_realize.put_listener(self.name, slb_model.parse_listener("test listener", SLB_ID, args), args,
                                     "test listener")

        def healthy() -> bool:
            rows = [r for listener in lb.backend_health().values() for r in listener]
            return len(rows) == 4 and all(r["status"] == "normal" for r in rows)

        wait_for(healthy, "both nodes healthy behind the SLB on 80 and 443", timeout=30)
        return address

    def pod(self, name: str):
        return next(r for r in load_records(self.name).values() if r.pod.name == name)

    def controllers(self):
        return ctl.controller_pods(self.name)

@pytest.fixture(scope="module")
def ilab():
    name = new_lab()
    lab = None
    try:
        lab = Lab(name)
        yield lab
    finally:  # also when building the lab failed half-way
        for backend in lab.backends if lab else ():
            backend.kill()
        clean_lab(name)


class Entry(list):
    """(client netns, address) pairs that reach the ingress controllers, and the client addresses nginx sees."""

    def __init__(self, pairs: list[tuple[str, str]], sources: set[str]) -> None:
        super().__init__(pairs)
        self.sources = sources


@pytest.fixture(params=["vpc-ecs-to-pod-ips", "internet-via-slb"])
def entry(request, ilab):
    if request.param == "vpc-ecs-to-pod-ips":
        return Entry([(ilab.ecs3.namespace.name, c.ip) for c in ilab.controllers()], {ECS3})
    # SLB (kernel DNAT, client kept) → NodePort → kube-proxy (masquerade, externalTrafficPolicy Cluster): nginx
    # sees a node
    nodes = {n.ip for n in ilab.network.nodes}
    return Entry([(slb_realize.InternetSegment(ilab.name).namespace.name, ilab.slb_address)], nodes)


def get(client: str, address: str, host: str, path: str, headers: dict | None = None):
    return http_get(client, address, 80, path, headers={"Host": host, **(headers or {})})


def who(answer) -> str | None:
    if answer is None:
        return None
    return answer[1].split()[0] if answer[0] == 200 else str(answer[0])


def test_controller_pods_run_nginx_and_the_agent_leaves_their_ports(ilab):
    controllers = ilab.controllers()
    assert len(controllers) == 2 and {c.node for c in controllers} == {"node-1", "node-2"}
    assert sum("nginx started" in c for c in ilab.changes) == 2
    for record in controllers:
        nginx = ctl.NginxPod(ilab.name, record)
        pid = nginx.pid()
        assert pid is not None and pid in Namespace(record.netns).pids()
        listening = Namespace(record.netns).run(["ss", "-Hltnp"]).stdout
        assert "0.0.0.0:80 " in listening and "0.0.0.0:443 " in listening and "nginx" in listening
        assert "python" not in listening  # not the pod agent
        assert (nginx.folder / "nginx.conf").read_text().startswith("# acklab ingress-nginx")


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


def curl_https(client: str, address: str, host: str, cafile: str, path: str = "/") -> subprocess.CompletedProcess:
    return Namespace(client).run(["curl", "-sS", "--max-time", "5", "--cacert", cafile, "--resolve",
                                  f"{host}:443:{address}", f"https://{host}{path}"], check=False)


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
    web = sorted(r.pod.name for r in load_records(ilab.name).values() if r.pod.name.startswith("web-"))
    assert len(web) == 3
    for client, address in entry:
        seen = [who(get(client, address, "spread.test", "/hostname")) for _ in range(12)]
        counts = {name: seen.count(name) for name in web}
        # each nginx worker of each controller pod keeps its own round robin, and the kernel (and the SLB) decide
        # which worker gets a connection: per worker the pods' counts differ by at most one, so overall by at
        # most the number of workers; one worker with 3 requests already meets every pod
        balancers = len(ilab.controllers()) * (os.cpu_count() or 1)
        assert set(seen) == set(web) and max(counts.values()) - min(counts.values()) <= balancers, counts


def test_invalid_ingress_is_rejected_and_the_running_config_stays(ilab, entry):
    before = {c.pod.key: ctl.NginxPod(ilab.name, c).generation(ctl.Options().status) for c in ilab.controllers()}
    bad = ingress("bad", [rule("bad.test", ("/x;return 200", "Prefix", "a"))])
    cluster = parse_documents([(d, "t") for d in manifests(3, ilab.secret, (bad,))])
    with pytest.raises(ValidationError) as err:
        ctl.sync(ilab.name, cluster)
    assert err.value.resource == "Ingress 'demo/bad'" and err.value.field == "spec.rules[0].http.paths[0].path"
    after = {c.pod.key: ctl.NginxPod(ilab.name, c).generation(ctl.Options().status) for c in ilab.controllers()}
    assert after == before and None not in after.values()
    for client, address in entry:
        assert who(get(client, address, "mixed.test", "/foo")) == "b"
    # a second sync of the good manifests changes nothing
    good = parse_documents([(d, "t") for d in manifests(3, ilab.secret)])
    assert ctl.sync(ilab.name, good) == []


def test_ingress_change_reloads_gracefully_and_is_verified(ilab, entry):
    controller = ilab.controllers()[0]
    nginx = ctl.NginxPod(ilab.name, controller)
    master = nginx.pid()
    workers = nginx.workers(master)
    assert len(workers) == os.cpu_count()  # worker_processes auto
    added = ingress("added", [rule("added.test", ("/", "Prefix", "b"))])
    changes = ctl.sync(ilab.name, parse_documents([(d, "t") for d in manifests(3, ilab.secret, (added,))]))
    assert len(changes) == 2 and all("nginx reloaded" in c for c in changes)
    assert nginx.pid() == master  # same master, new workers; the old ones accept no more connections
    assert not set(nginx.workers(master)) & set(workers)
    assert not any(ctl.still_accepting(w) for w in workers)
    for client, address in entry:
        assert who(get(client, address, "added.test", "/")) == "b"
    ctl.sync(ilab.name, parse_documents([(d, "t") for d in manifests(3, ilab.secret)]))
    for client, address in entry:
        assert who(get(client, address, "added.test", "/")) == "c"  # gone again: the catch-all


def test_scaling_the_backend_under_a_request_loop_fails_no_request(ilab, entry):
    stop = threading.Event()
    results: list[str | None] = []

    def loop() -> None:
        n = 0
        while not stop.is_set():
            client, address = entry[n % len(entry)]
            n += 1
            results.append(who(get(client, address, "spread.test", "/hostname")))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    client, address = entry[0]  # and wrk over kept-alive connections
    wrk = subprocess.Popen(["nsenter", f"--net=/run/netns/{client}", "wrk", "-t1", "-c4", "-d8s", "-H",
                            "Host: spread.test", f"http://{address}/hostname"], stdout=subprocess.PIPE, text=True)
    workers = {c.pod.key: ctl.NginxPod(ilab.name, c).workers(ctl.NginxPod(ilab.name, c).pid())
               for c in ilab.controllers()}
    try:
        time.sleep(0.5)
        up = apply(ilab.network, manifests(5, ilab.secret))
        assert sum("endpoints updated without a reload" in c for c in up) == 2 and "reloaded" not in str(up)
        time.sleep(0.5)
        down = apply(ilab.network, manifests(1, ilab.secret))
        assert any("removed" in c for c in down) and "reloaded" not in str(down)
        # drained before the pods went: the first sync already took them out of nginx
        assert all("endpoints updated" in c for c in down[:2]) and "removed" in " ".join(down[2:])
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=10)
        wrk_out = wrk.communicate(timeout=30)[0]
    failed = [r for r in results if r is None or not r.startswith("web-")]
    web = sorted(r.pod.name for r in load_records(ilab.name).values() if r.pod.name.startswith("web-"))
    assert len(results) > 50 and failed == [], (len(results), failed[:5])
    assert len(set(results)) >= 5  # requests reached the added pods too
    assert set(results[-5:]) == set(web) and len(web) == 1
    assert "requests in" in wrk_out and "Non-2xx" not in wrk_out and "Socket errors" not in wrk_out, wrk_out
    assert workers == {c.pod.key: ctl.NginxPod(ilab.name, c).workers(ctl.NginxPod(ilab.name, c).pid())
                       for c in ilab.controllers()}  # the same worker processes throughout: no reload


def test_nginx_t_refusal_keeps_the_running_config(ilab, entry):
    """A certificate whose key does not match passes rendering but not ``nginx -t``: nothing is swapped."""
    before = {c.pod.key: ctl.NginxPod(ilab.name, c).generation(ctl.Options().status) for c in ilab.controllers()}
    cert, _ = mint_certificate(ilab.ca, ["secure.test"])
    _, other_key = mint_certificate(ilab.ca, ["secure.test"])
    mismatched = tls_secret("demo", "secure-tls", cert, other_key)
    cluster = parse_documents([(d, "t") for d in manifests(3, mismatched)])
    with pytest.raises(LabError, match="nginx -t refused the configuration, the running one is kept"):
        ctl.sync(ilab.name, cluster)
    after = {c.pod.key: ctl.NginxPod(ilab.name, c).generation(ctl.Options().status) for c in ilab.controllers()}
    assert after == before
    for controller in ilab.controllers():
        folder = ctl.NginxPod(ilab.name, controller).folder
        assert not (folder / "nginx.conf.new").exists() and before[controller.pod.key] in (
            folder / "nginx.conf").read_text()
    for client, address in entry:
        assert who(get(client, address, "mixed.test", "/foo")) == "b"


def test_watch_applies_manifest_changes_and_survives_bad_ones(ilab, entry, tmp_path, capsys):
    folder = tmp_path / "k8s"
    folder.mkdir()
    docs = manifests(3, ilab.secret)
    (folder / "lab.yaml").write_text(yaml.safe_dump_all(docs))
    ctl.watch(ilab.name, folder, interval=0, rounds=1)
    assert capsys.readouterr().out == ""  # the same configuration: nothing reloaded
    watched = ingress("watched", [rule("watched.test", ("/", "Prefix", "d"))])
    (folder / "lab.yaml").write_text(yaml.safe_dump_all([*docs, watched]))
    ctl.watch(ilab.name, folder, interval=0, rounds=1)
    assert capsys.readouterr().out.count("nginx reloaded") == 2
    for client, address in entry:
        assert who(get(client, address, "watched.test", "/")) == "d"
    (folder / "lab.yaml").write_text(yaml.safe_dump_all([*docs, watched, ingress("x", [rule("BAD", ("/", "Prefix",
                                                                                                   "a"))])]))
    ctl.watch(ilab.name, folder, interval=0, rounds=1)
    # the invalid Ingress alone is left out (reported); the others are served
    assert "Ingress rejected, not served: Ingress 'demo/x'" in capsys.readouterr().err
    for client, address in entry:
        assert who(get(client, address, "watched.test", "/")) == "d"
    (folder / "lab.yaml").write_text(yaml.safe_dump_all(docs))
    ctl.watch(ilab.name, folder, interval=0, rounds=1)
    for client, address in entry:
        assert who(get(client, address, "watched.test", "/")) == "c"
