"""The ingress controller on the API, on the real kernel: with kubectl only, ACK's nginx-ingress-controller add-on
(IngressClass, controller Deployment in kube-system, its LoadBalancer Service) and an Ingress route host/path to a
Deployment's pods through nginx in the controller pods; scaling the backend changes nginx's upstreams within 2 s
of the EndpointSlice with no failed request and no reload; the Ingress's status gets the address; a bad Ingress
gets an Event while the others serve; deleting the Ingress stops its routing.

One cluster for the module (two Terway nodes with node agents, the control plane, the controller); tests run in
file order and share it. Requests come from node-2's namespace to the controller pods' addresses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from acklab.k8s import ingress_controller
from acklab.k8s.model.kubelet import NodeIdentity
from acklab.k8s.node_agent import NodeAgentConfig, ensure_node_agent
from acklab.k8s.realize.ingress import NginxPod, Options
from acklab.k8s.realize.pod_network import PodRecord, load_records
from netns.kernel.namespace import Namespace
from netns.realize import control_plane as cp
from netns.realize.vpc import VpcRouter, VSwitch
from tests import k8stools as k
from tests.labtools import clean_lab, new_lab, wait_for

pytestmark = pytest.mark.kernel

VENV_BIN = Path(sys.executable).parent
CLUSTER = "c0000000e"
ZONE = "cn-hangzhou-h"
DEADLINE = 60.0
UPSTREAM = "default-web-80"

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: [netexec, --http-port=8080, --delay-shutdown=3]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


def ingress_yaml(name: str, host: str, path: str = "/hostname", tls_secret: str | None = None) -> str:
    tls = f"  tls: [{{hosts: [{host}], secretName: {tls_secret}}}]\n" if tls_secret else ""
    return f"""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: default}}
spec:
  ingressClassName: nginx
{tls}  rules:
  - host: {host}
    http:
      paths:
      - {{path: {path}, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"""


def poll(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> float:
    """Seconds until ``predicate`` holds; fails after ``timeout``."""
    return wait_for(predicate, what, timeout)


def get(netns: str, address: str, host: str, path: str, timeout: float = 3.0) -> tuple[int, str] | None:
    """(status, body) of a GET with ``Host: host`` from ``netns``; None when the connection failed."""
    s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((address, 80))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    except OSError:
        return None
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body.decode(errors="replace")
    except (IndexError, ValueError):
        return None


@dataclass
class Lab:
    lab: str
    client: str  # node-2's namespace

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([str(VENV_BIN / "kubectl"), "--kubeconfig", str(cp.kubeconfig_path(self.lab)),
                                 *args], input=stdin, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", stdin=manifest)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def controller_pods(self) -> list[dict]:
        return [p for p in self.get_json("pods", "-n", "kube-system", "-l", "app=ingress-nginx")["items"]
                if ingress_controller.is_running_controller(p)]

    def controllers(self) -> list[PodRecord]:
        return [r for key, r in sorted(load_records(self.lab).items()) if key.startswith("kube-system/")]

    def answers(self, host: str, path: str = "/hostname") -> list[tuple[int, str] | None]:
        """The answer of each controller pod."""
        return [get(self.client, p["status"]["podIP"], host, path) for p in self.controller_pods()]

    def upstreams(self) -> list[set[str]]:
        """The web upstream each controller's nginx workers use (the endpoints file, once they loaded it)."""
        out = []
        for record in self.controllers():
            nginx = NginxPod(self.lab, record)
            try:
                text = (nginx.folder / "endpoints").read_text()
            except FileNotFoundError:
                out.append(set())
                continue
            version = text.split("\n", 1)[0].removeprefix("version ")
            if nginx.endpoints_version(Options().status) != version:
                out.append(set())
                continue
            line = next((x for x in text.splitlines() if x.startswith(f"upstream {UPSTREAM} ")), "")
            out.append(set(line.split()[2].split(",")) if line else set())
        return out

    def nginx_processes(self) -> dict[str, tuple[int | None, list[int], str | None]]:
        """Per controller pod: nginx's master, its workers and the generation it serves (a reload changes the
        workers)."""
        found = {}
        for record in self.controllers():
            nginx = NginxPod(self.lab, record)
            master = nginx.pid()
            found[record.pod.key] = (master, sorted(nginx.workers(master)) if master else [],
                                     nginx.generation(Options().status))
        return found


def ready_web_endpoints(discovery: Any) -> set[str]:
    """The ready addresses of the web Service's EndpointSlices, as ``ip:port``."""
    out = set()
    for s in discovery.list_namespaced_endpoint_slice("default", label_selector="kubernetes.io/service-name=web").items:
        port = next((p.port for p in s.ports or [] if p.name == "http"), None)
        for e in s.endpoints or []:
            if port and (e.conditions is None or e.conditions.ready is not False):
                out |= {f"{a}:{port}" for a in e.addresses}
    return out


@pytest.fixture(scope="module")
def lab():
    tools = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
    missing = [t for t in tools if not (VENV_BIN / t).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not in {VENV_BIN}: run scripts/build-kube.sh (make test does)")
    if os.geteuid() != 0:
        pytest.skip("needs root: builds network namespaces")
    name = new_lab()
    try:
        network, instances, _ = k.build_cluster(name, "terway-eniip")
        plane = cp.ControlPlane(name, CLUSTER)
        plane.ensure(VSwitch(VpcRouter(name, "vpc-00000001"), "vsw-0000000a"))
        for node, instance in zip(network.nodes, instances, strict=True):
            identity = NodeIdentity(node.name, instance.instance_id, ZONE, "ecs.g7.large", node.ip,
                                    max_pods=len(node.eni_ips))
            ensure_node_agent(NodeAgentConfig(name, identity, node),
                              plane.client_kubeconfig(f"system:node:{node.name}", ("system:nodes",)))
        begin = time.monotonic()
        ingress_controller.ensure(name, timeout=60)
        print(f"\ningress controller listed its objects in {time.monotonic() - begin:.1f} s")
        yield Lab(name, network.nodes[1].netns)
    finally:
        clean_lab(name)


@pytest.fixture(scope="module")
def discovery(lab):
    from kubernetes import client, config

    return client.DiscoveryV1Api(config.new_client_from_config(config_file=str(cp.kubeconfig_path(lab.lab))))


def test_an_ingress_routes_host_and_path_through_the_controller_pods(lab):
    lab.apply(ingress_controller.addon_manifests(2))
    lab.apply(WEB)
    begin = time.monotonic()
    lab.apply(ingress_yaml("web", "web.test"))

    def served() -> bool:
        answers = lab.answers("web.test")
        return len(answers) == 2 and all(a is not None and a[0] == 200 and a[1].startswith("web-") for a in answers)

    poll(served, "both controller pods to route web.test/hostname to a web pod", timeout=90)
    print(f"\napply → routed through both controller pods: {time.monotonic() - begin:.1f} s")
    assert all(a is not None and a[0] == 404 for a in lab.answers("web.test", "/other"))  # no rule for the path
    assert all(a is not None and a[0] == 404 for a in lab.answers("unknown.test"))  # the catch-all server
    # the node agent left the controller pods' ports to nginx: port 80 is nginx's (its catch-all 404 above)
    assert len(lab.controllers()) == 2 and all(m for m, _, _ in lab.nginx_processes().values())


def test_the_ingress_status_gets_the_nodes_addresses(lab):
    wanted = sorted({p["status"]["hostIP"] for p in lab.controller_pods()})

    def status() -> list[str]:
        ing = lab.get_json("ingress", "web", "-n", "default")
        return sorted(i.get("ip") for i in ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])

    poll(lambda: status() == wanted, f"the Ingress's status to say {wanted}")
    assert "192.168.1." in lab.kubectl("get", "ingress", "web", "-n", "default")  # ADDRESS column


def test_scaling_the_backend_changes_upstreams_without_a_reload_or_a_failed_request(lab, discovery):
    poll(lambda: len(ready_web_endpoints(discovery)) == 2 and all(
        u == ready_web_endpoints(discovery) for u in lab.upstreams()), "2 web endpoints in nginx")
    before = lab.nginx_processes()
    stop = threading.Event()
    results: list[tuple[int, str] | None] = []
    addresses = [p["status"]["podIP"] for p in lab.controller_pods()]

    def loop() -> None:
        n = 0
        while not stop.is_set():
            results.append(get(lab.client, addresses[n % len(addresses)], "web.test", "/hostname"))
            n += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    lags = []
    try:
        for replicas in (4, 1):
            begin = time.monotonic()
            lab.kubectl("scale", "deployment", "web", f"--replicas={replicas}")
            seen: dict[str, float] = {}

            def converged(want: int = replicas, marks: dict[str, float] = seen) -> bool:
                slices = ready_web_endpoints(discovery)
                now = time.monotonic()
                if len(slices) != want:
                    marks.pop("slice", None)
                    return False
                marks.setdefault("slice", now)
                return all(u == slices for u in lab.upstreams())

            poll(converged, f"{replicas} web endpoints in the EndpointSlice and in nginx", timeout=90)
            done = time.monotonic()
            lags.append(done - seen["slice"])
            print(f"\nscale to {replicas}: EndpointSlice after {seen['slice'] - begin:.2f} s, nginx's upstreams "
                  f"{done - seen['slice']:.2f} s later ({done - begin:.2f} s in all)")
        time.sleep(0.5)  # requests keep flowing to the one pod left
    finally:
        stop.set()
        thread.join(timeout=10)
    failed = [r for r in results if r is None or r[0] != 200 or not r[1].startswith("web-")]
    assert len(results) > 50 and failed == [], (len(results), failed[:5])
    assert len({r[1] for r in results if r}) >= 4  # the added pods answered too
    assert max(lags) <= 2.0, lags
    assert lab.nginx_processes() == before  # same master, same workers, same generation: no reload


def test_a_bad_ingress_gets_an_event_and_the_others_still_serve(lab):
    before = lab.nginx_processes()
    lab.apply(ingress_yaml("bad", "bad.test", tls_secret="missing"))

    def rejected() -> list[dict]:
        return [e for e in lab.get_json("events", "-n", "default", "--field-selector",
                                        "involvedObject.name=bad,involvedObject.kind=Ingress")["items"]
                if e["reason"] == ingress_controller.REJECTED]

    poll(rejected, "a Rejected Event on the bad Ingress")
    (event,) = rejected()
    assert event["type"] == "Warning" and "no Secret 'missing'" in event["message"]
    assert event["source"]["component"] == ingress_controller.COMPONENT
    assert all(a is not None and a[0] == 200 for a in lab.answers("web.test"))
    assert all(a is not None and a[0] == 404 for a in lab.answers("bad.test"))  # not served
    assert lab.nginx_processes() == before  # the configuration did not change
    synced = lab.get_json("events", "-n", "default", "--field-selector", "involvedObject.name=web")["items"]
    assert any(e["reason"] == ingress_controller.SYNCED for e in synced)


def test_the_controller_configmap_reconfigures_nginx(lab):
    def configs() -> list[str]:
        return [(NginxPod(lab.lab, r).folder / "nginx.conf").read_text() for r in lab.controllers()]

    def generations() -> list[str | None]:
        return [NginxPod(lab.lab, r).generation(Options().status) for r in lab.controllers()]

    before = generations()
    lab.apply("""
apiVersion: v1
kind: ConfigMap
metadata: {name: nginx-configuration, namespace: kube-system}
data: {proxy-body-size: 8m}
""")
    took = poll(lambda: all("client_max_body_size 8m;" in c for c in configs())
                and all(g is not None and g not in before for g in generations()),
                "every controller's nginx to serve the ConfigMap's body size")
    print(f"\nConfigMap → nginx reloaded: {took:.2f} s")
    assert all(a is not None and a[0] == 200 for a in lab.answers("web.test"))
    lab.kubectl("delete", "configmap", "nginx-configuration", "-n", "kube-system")
    poll(lambda: all("client_max_body_size 8m;" not in c and "client_max_body_size 1m;" in c for c in configs()),
         "upstream's default body size again")


def test_deleting_the_ingress_stops_routing(lab):
    lab.kubectl("delete", "ingress", "web", "-n", "default")
    took = poll(lambda: all(a is not None and a[0] == 404 for a in lab.answers("web.test")),
                "web.test to answer 404 on every controller pod")
    print(f"\ndelete → not routed: {took:.2f} s")
    assert ingress_controller.pid(lab.lab) is not None
