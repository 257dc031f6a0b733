"""Ingress test helpers shared by the kernel tests: manifests (Ingress, its rules and backends, Services), the
Kubernetes docs' path table, HTTP(S) clients in a namespace that name the backend which answered, and the one lab
both tests/kernel/test_ingress.py and tests/kernel/test_ingress_annotations.py build (:func:`ingress_lab`).

The lab goes through the Kubernetes API with kubectl only (tests/apilab.py with ACK's nginx-ingress-controller
add-on): backends a-d are pods that answer every path with their name (tests/slbtools.HttpBackend on port 9000
inside the pod's network namespace, undeclared: Services target it by number); their declared port "agent" (8080)
is the pod agent's agnhost netexec (/hostname, /header?key=), as the Deployment web's pods.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from acklab.k8s import ingress_controller
from acklab.k8s.certs import Ca, mint_ca, mint_certificate, tls_secret
from acklab.k8s.realize import ingress as ctl
from netns.kernel.namespace import Namespace
from netns.model import slb as slb_model
from netns.model.security_group import parse_rule
from netns.realize import security_group as sg
from netns.realize import slb as slb_realize
from netns.realize.slb import InternetSegment
from tests import apilab
from tests import k8stools as k
from tests.slbtools import HttpBackend, http_get

ECS3 = "192.168.2.10"  # the VPC's client ECS, in another vSwitch than the nodes (tests/k8stools.build_vpc)

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


def ns(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(name: str, ports: list[dict], cluster_ip: str | None = None, namespace: str = "demo") -> dict:
    """A Service selecting ``app: name``; ``cluster_ip`` pins its ClusterIP, else the API allocates one."""
    spec: dict = {"selector": {"app": name}, "ports": ports}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


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


def docs_table_ingresses() -> list[dict]:
    """One Ingress per row of the docs' table, host ``r<row>.paths.test``, default backend d."""
    return [ingress(f"docs-{n}", [rule(f"r{n}.paths.test", *[(p, kind, s) for p, s in zip(paths, "abc",
                                                                                          strict=False)])],
                    default=backend("d"))
            for n, (kind, paths, _, _) in enumerate(DOCS_TABLE)]


def get(client: str, address: str, host: str, path: str, headers: dict | None = None):
    return http_get(client, address, 80, path, headers={"Host": host, **(headers or {})})


def who(answer) -> str | None:
    """The answering backend's name (the first word of a 200's body), else the status; None: no answer."""
    if answer is None:
        return None
    return answer[1].split()[0] if answer[0] == 200 else str(answer[0])


def curl_https(client: str, address: str, host: str, cafile: str, path: str = "/") -> subprocess.CompletedProcess:
    """curl from ``client`` to ``https://host`` at ``address`` (SNI ``host``), trusting only ``cafile``."""
    return Namespace(client).run(["curl", "-sS", "--max-time", "5", "--cacert", cafile, "--resolve",
                                  f"{host}:443:{address}", f"https://{host}{path}"], check=False)


# --- the lab through the API (tests/apilab.py with the ingress add-on) --------------------------------------------

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
BACKENDS = {"a": "node-1", "b": "node-2", "c": "node-1", "d": "node-2"}
WEB_REPLICAS = 3
LB = ("kube-system", ingress_controller.PUBLISH_SERVICE.split("/")[1])
STATUS = ctl.Options().status
DEADLINE = 60.0  # for what the controller, the node agents and the SLB's health checks do asynchronously


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


def base_workloads(secret: dict) -> list[dict]:
    """What every Ingress lab has: the namespace demo, the TLS Secret ``secure-tls``, the Deployment web and its
    Service, backends a-d with their Services (``plain`` 80 → 9000, ``named`` 8000 → ``agent``), the catch-all
    (default backend c) and ``secure.test`` with TLS (backend a)."""
    docs = [ns("demo"), secret, web_deployment(WEB_REPLICAS),
            service("web", [{"name": "http", "port": 80, "targetPort": "http"}])]
    for name, node in BACKENDS.items():
        docs.append(backend_pod(name, node))
        docs.append(service(name, [{"name": "plain", "port": 80, "targetPort": 9000},
                                   {"name": "named", "port": 8000, "targetPort": "agent"}]))
    return [*docs, ingress("catch-all", default=backend("c")),
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
        path = ingress_controller.IngressController(self.name).log
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


def ingress_lab(api: apilab.ApiLab, workloads: Callable[[dict], list[dict]],
                ready: tuple[str, str, str]) -> Iterator[IngressLab]:
    """For a module-scoped fixture on ``apilab.lab_fixture(..., ingress_addon=True)``: ``yield from
    ingress_lab(api, workloads, (host, path, backend))``. Applies ``workloads(secret)`` (at least
    :func:`base_workloads`; ``secret`` is ``secure-tls`` signed by the lab's CA) with kubectl, starts the backends'
    servers, waits for the add-on's SLB and its health checks, and until ``host``/``path`` answers ``backend``
    through every entry point; the backends' servers end afterwards (the lab with ``api``)."""
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
        host, path, answer = ready  # served through both controller pods and the SLB
        api.timings["Ingresses served"] = apilab.until(lambda: lab.everywhere(host, path) == {answer},
                                                       f"{host}{path} through every entry point", DEADLINE, 0.2)
        yield lab
    finally:
        for server in lab.backends:
            server.kill()
