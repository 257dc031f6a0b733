"""Ingress test helpers shared by the kernel tests: manifests (Ingress, its rules and backends, Services), the
Kubernetes docs' path table, and HTTP(S) clients in a namespace that name the backend which answered.

Pure builders and clients only: what drives the cluster (the API with kubectl, tests/kernel/test_ingress.py; the
file-driven controller, tests/ingress_filelab.py) lives with its tests.
"""

from __future__ import annotations

import subprocess

from netns.kernel.namespace import Namespace
from tests.slbtools import http_get

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
    """A Service selecting ``app: name``; the file-driven plan names its ClusterIP, the API allocates one."""
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
