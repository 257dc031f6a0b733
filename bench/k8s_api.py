"""Benchmark: the API-driven cluster (issues 18/19) — pods, memory, NetworkPolicy, Ingress and kube-proxy figures.

One lab of this run (``acklab-b<hex>-``), installed with ``acklab/k8s/cluster_install.py`` (the one installer of
an API-driven cluster): a VPC, two ECS nodes of type ecs.g7.xlarge (Terway's quota: 3 pod ENIs x 14 = 42 pods a
node, so 50 replicas fit on two) with the node agent (Terway's live IPAM), upstream kube-proxy (iptables) and
the NetworkPolicy agent; the control plane, the cloud controller and the ingress controller. Then, with kubectl
and the API only, printing a line per measurement:

1. ``kubectl apply`` of a 50-replica Deployment (agnhost netexec, readinessProbe) → all 50 Ready (target
   <= 15 s); ``kubectl scale --replicas=0`` → no pod object and no pod namespace left.
2. Resident memory (VmRSS) of the control plane's processes, each node agent, kube-proxy and NetworkPolicy
   agent, the ingress and cloud controllers.
3. NetworkPolicy: ``kubectl apply`` of a default deny → a probe's new connection denied, ``kubectl delete`` →
   allowed again (median of 5 each; target <= 2 s).
4. Ingress: ``kubectl scale`` of the backend → the new endpoints in every controller pod's nginx upstreams
   (median of 5; target <= 2 s from the command), also the part after the EndpointSlice changed.
5. kube-proxy at N service ports (1k and 5k by default): selectorless Services + EndpointSlices (2 endpoints)
   created through the API; kube-proxy's own metric for the syncs after the last object; a full sync from a node
   without kube-proxy's rules (kube-proxy restarted after ``--cleanup``, ``kubeproxy_sync_full_proxy_rules``);
   raw ``iptables-restore --noflush`` of exactly kube-proxy's rules (taken from the node with ``iptables-save``)
   into a scratch namespace; acklab's compiler (``NodeProxier.sync``) of the same service ports there. The
   Service CIDR (ACK's 172.21.0.0/20) holds 4093 ClusterIPs, so above ~4000 service ports the Services carry
   several ports each: kube-proxy's rules are per service port (one KUBE-SVC chain each).

The lab is removed in ``finally``; nothing is made in the root namespace (the control plane's loopback relay is
the lab's own). Reports: ``reports/bench/k8s_api.{json,md}``; the exit status is non-zero if a target is missed.

    python -m bench.k8s_api [--services 1000 5000 [10000]] [--skip-ingress]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import json
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acklab.k8s import cloud_controller, ingress_controller, network_policy_agent
from acklab.k8s.cluster_install import NodeSpec, install_control_plane, install_node
from acklab.k8s.model.kube_proxy import METRICS_PORT
from acklab.k8s.model.kube_proxy_rules import Endpoint, ServicePortInfo
from acklab.k8s.node_agent import node_agent_pid
from acklab.k8s.realize import kube_proxy
from acklab.k8s.realize.ingress import NginxPod, Options
from acklab.k8s.realize.kube_proxy_rules import NodeProxier
from acklab.k8s.realize.pod_network import load_records
from bench.ecs_scale import REPORT_DIR, git_commit, new_lab, remove_lab
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.errors import LabError
from netns.model.names import mark, netns_name
from netns.model.security_group import Group
from netns.realize import cleanup
from netns.realize import security_group as sg
from netns.realize.control_plane import ControlPlane, binary, kubeconfig_path
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch

N = ipaddress.IPv4Network
DEFAULT_SERVICES = (1000, 5000)
TARGET_READY_S = 15.0  # issue 18: kubectl apply of 50 replicas → all Ready
TARGET_POLICY_S = 2.0  # issue 19: a NetworkPolicy applied denies within 2 s, deleted allows again
TARGET_INGRESS_S = 2.0  # issue 19: kubectl scale → the Ingress's upstreams within 2 s
REPLICAS = 50
ROUNDS = 5
INSTANCE_TYPE = "ecs.g7.xlarge"  # 4 ENIs x 15 IPs: 42 Terway pods a node
ZONE = "cn-hangzhou-h"
VPC, NODE_VSW, POD_VSW, GROUP = "vpc-0000be01", "vsw-0000be0a", "vsw-0000be0c", "sg-0000be0a"
# ACK's usual 10.0.0.0/8 plan (an ENI's secondary IPs now fit its alias in any plan: they are packed as runs).
VPC_CIDR, NODE_CIDR, POD_CIDR = "10.0.0.0/16", "10.0.16.0/24", "10.0.0.0/22"
SCRATCH = "i-0000bfff"  # a namespace of the lab (so the lab's removal takes it) for the raw restore
SVC_NAMESPACE = "svcbench"
MAX_SERVICES = 4000  # of the /20's 4093 ClusterIPs, leaving room for the lab's own Services
ENDPOINTS = ("192.168.200.10", "192.168.200.11")  # the slices' two endpoints (kube-proxy never checks them)
THREADS = 8


# --- the lab ------------------------------------------------------------------------------------------------

@dataclass
class Cluster:
    lab: str
    cluster_id: str
    nodes: list[NodeSpec]
    timings: dict[str, float] = field(default_factory=dict)

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        result = subprocess.run([binary("kubectl"), "--kubeconfig", str(kubeconfig_path(self.lab)), *args],
                                input=stdin, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", stdin=manifest)

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)


def build(lab: str) -> Cluster:
    """VPC, node and pod vSwitches, two ECS nodes; then the cluster through ``cluster_install`` (untimed)."""
    router = VpcRouter(lab, VPC)
    router.create(N(VPC_CIDR))
    sg.create_group(lab, Group(GROUP, VPC, "normal", "Accept"))  # intra-group access: nodes, pods, probes
    nodes_vsw = VSwitch(router, NODE_VSW)
    nodes_vsw.create(N(NODE_CIDR), ZONE, "nodes")
    VSwitch(router, POD_VSW).create(N(POD_CIDR), ZONE, "pods")
    specs = []
    for i in (1, 2):
        instance = EcsInstance(lab, f"i-0000be0{i}", f"eni-0000be0{i}")
        ip = str(N(NODE_CIDR)[9 + i])
        instance.create(nodes_vsw, ip, f"node-{i}", f"node-{i}", (GROUP,))
        specs.append(NodeSpec(lab, f"node-{i}", instance.instance_id, instance.namespace.name, ip, INSTANCE_TYPE,
                              NODE_VSW, (POD_VSW,), (GROUP,)))
    begin = time.monotonic()
    plane = install_control_plane(lab, NODE_VSW)
    cluster = Cluster(lab, plane.cluster_id, specs)
    cluster.timings["control plane + controllers installed"] = round(time.monotonic() - begin, 2)
    for spec in specs:
        install_node(spec)
    cluster.timings["cluster installed"] = round(time.monotonic() - begin, 2)
    progress(f"cluster installed in {cluster.timings['cluster installed']} s (control plane {plane.cluster_id})")
    return cluster


def api(lab: str) -> Any:
    """An ApiClient on the admin kubeconfig, with a connection pool for the creating threads."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig_path(lab)), client_configuration=configuration)
    configuration.connection_pool_maxsize = THREADS * 2
    return client.ApiClient(configuration)


def progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def until(predicate: Callable[[], Any], what: str, timeout: float, poll: float = 0.05) -> float:
    """Seconds until ``predicate`` holds (polled); RuntimeError after ``timeout``."""
    begin = time.monotonic()
    while time.monotonic() - begin < timeout:
        if predicate():
            return time.monotonic() - begin
        time.sleep(poll)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def http_get(netns: str, address: str, port: int, path: str, timeout: float, host: str | None = None
             ) -> tuple[int, str] | None:
    """(status, body) of a GET from ``netns``; None when the connection failed or timed out."""
    s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((address, port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or address}\r\nConnection: close\r\n\r\n".encode())
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


def pod_namespaces(lab: str) -> int:
    return sum(1 for ns in list_namespaces(mark(lab)) if "-pod-" in ns.name)


# --- 1. 50 replicas ------------------------------------------------------------------------------------------

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: fifty, namespace: default}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: fifty}}}}
  template:
    metadata: {{labels: {{app: fifty}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: [netexec, --http-port=80]
        ports: [{{containerPort: 80}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: 80}}, periodSeconds: 1}}
"""


def ready(pod: Any) -> bool:
    conditions = {c.type: c.status for c in (pod.status.conditions or [])}
    return pod.status.phase == "Running" and conditions.get("Ready") == "True" and not pod.metadata.deletion_timestamp


def measure_deployment(cluster: Cluster, core: Any) -> dict[str, Any]:
    """apply → 50 Ready; scale to 0 → no pod object and no pod namespace."""
    baseline = pod_namespaces(cluster.lab)

    def pods() -> list[Any]:
        return core.list_namespaced_pod("default", label_selector="app=fifty").items

    begin = time.monotonic()
    cluster.apply(DEPLOYMENT.format(replicas=REPLICAS))
    until(lambda: sum(map(ready, pods())) == REPLICAS, f"{REPLICAS} pods Ready", 180, 0.2)
    ready_s = time.monotonic() - begin  # from before the apply: kubectl's own time counts
    spread = {n: sum(1 for p in pods() if p.spec.node_name == n) for n in ("node-1", "node-2")}
    progress(f"apply of {REPLICAS} replicas → all Ready: {ready_s:.2f} s (per node {spread})")
    memory = measure_memory(cluster)  # with 50 pods running: the agents at their busiest
    begin = time.monotonic()
    cluster.kubectl("scale", "deployment", "fifty", "--replicas=0")
    until(lambda: not pods(), "every pod object deleted", 180, 0.2)
    objects_s = time.monotonic() - begin
    until(lambda: pod_namespaces(cluster.lab) == baseline, "every pod namespace removed", 180, 0.2)
    gone_s = time.monotonic() - begin
    progress(f"scale to 0 → pod objects gone {objects_s:.2f} s, namespaces gone {gone_s:.2f} s")
    cluster.kubectl("delete", "deployment", "fifty")
    return {"replicas": REPLICAS, "apply_to_ready_s": round(ready_s, 2), "per_node": spread,
            "scale0_objects_gone_s": round(objects_s, 2), "scale0_namespaces_gone_s": round(gone_s, 2),
            "memory_with_50_pods_mib": memory, "met": ready_s <= TARGET_READY_S}


# --- 2. memory ---------------------------------------------------------------------------------------------

def rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def measure_memory(cluster: Cluster) -> dict[str, float | None]:
    """VmRSS in MiB of every component the lab runs (control plane from ``ControlPlane.rss``)."""
    out: dict[str, float | None] = {
        f"control plane: {name}": round(size / 2**20, 1)
        for name, size in ControlPlane(cluster.lab, cluster.cluster_id).rss().items()}
    out["ingress controller"] = rss_mib(ingress_controller.pid(cluster.lab))
    out["cloud controller"] = rss_mib(cloud_controller.CloudController(cluster.lab).pid())
    for n in cluster.nodes:
        out[f"{n.name}: node agent"] = rss_mib(node_agent_pid(cluster.lab, n.name))
        out[f"{n.name}: kube-proxy"] = rss_mib(kube_proxy.KubeProxyDaemon(cluster.lab, n.name, n.netns).pid())
        out[f"{n.name}: NetworkPolicy agent"] = rss_mib(
            network_policy_agent.NetworkPolicyAgent(cluster.lab, n.name, n.netns).pid())
    plane = sum(v or 0 for k, v in out.items() if k.startswith("control plane"))
    progress(f"RSS: control plane {plane:.0f} MiB; " + ", ".join(f"{k} {v}" for k, v in out.items()
                                                                  if not k.startswith("control plane")))
    out["control plane total"] = round(plane, 1)
    out["lab total"] = round(sum(v or 0 for k, v in out.items() if k != "control plane total"), 1)
    return out


# --- 3. NetworkPolicy --------------------------------------------------------------------------------------

POLICY_PODS = """
apiVersion: v1
kind: Namespace
metadata: {name: np}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: np, labels: {app: server}}
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 1
  containers:
  - {name: netexec, image: registry.k8s.io/e2e-test-images/agnhost:2.47, args: [netexec, --http-port=80],
     ports: [{containerPort: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: np, labels: {app: client}}
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 1
  containers:
  - {name: netexec, image: registry.k8s.io/e2e-test-images/agnhost:2.47, args: [netexec, --http-port=80],
     ports: [{containerPort: 80}]}
"""
DENY_ALL = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: np}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""


def measure_policy(cluster: Cluster, core: Any) -> dict[str, Any]:
    """Median of ROUNDS: apply default-deny → client's new connection to the server fails; delete → passes."""
    cluster.apply(POLICY_PODS)

    def running() -> dict[str, str]:
        return {p.metadata.name: p.status.pod_ip for p in core.list_namespaced_pod("np").items
                if p.status.phase == "Running" and p.status.pod_ip}

    until(lambda: len(running()) == 2, "the policy pods Running", 60, 0.2)
    server = running()["server"]
    client = next(r.netns for r in load_records(cluster.lab).values() if r.pod.key == "np/client")

    def passes(timeout: float = 0.15) -> bool:
        answer = http_get(client, server, 80, "/hostname", timeout)
        return answer is not None and answer[1] == "server"

    until(passes, "the client to reach the server", 30)
    deny, allow = [], []
    for i in range(ROUNDS):
        begin = time.monotonic()
        cluster.apply(DENY_ALL)
        until(lambda: not passes(0.1), "the flow denied", 30, 0.01)
        deny.append(time.monotonic() - begin)
        time.sleep(0.5)  # let the agents settle (both nodes' applies) before the next change
        begin = time.monotonic()
        cluster.kubectl("delete", "networkpolicy", "default-deny", "-n", "np")
        until(passes, "the flow allowed", 30, 0.01)
        allow.append(time.monotonic() - begin)
        time.sleep(0.5)
        progress(f"policy round {i + 1}/{ROUNDS}: apply → denied {deny[-1]:.2f} s, delete → allowed "
                 f"{allow[-1]:.2f} s")
    cluster.kubectl("delete", "namespace", "np", "--wait=false")
    med_deny, med_allow = statistics.median(deny), statistics.median(allow)
    return {"apply_to_denied_s": [round(x, 2) for x in deny], "delete_to_allowed_s": [round(x, 2) for x in allow],
            "median_apply_to_denied_s": round(med_deny, 2), "median_delete_to_allowed_s": round(med_allow, 2),
            "met": med_deny <= TARGET_POLICY_S and med_allow <= TARGET_POLICY_S}


# --- 4. Ingress --------------------------------------------------------------------------------------------

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
      terminationGracePeriodSeconds: 1
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: [netexec, --http-port=8080]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: default}
spec:
  ingressClassName: nginx
  rules:
  - host: web.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""
UPSTREAM = "default-web-80"


def ready_endpoints(discovery: Any) -> set[str]:
    """The web Service's ready endpoints, ``ip:port``, from its EndpointSlices."""
    out = set()
    for s in discovery.list_namespaced_endpoint_slice("default", label_selector="kubernetes.io/service-name=web").items:
        port = next((p.port for p in s.ports or [] if p.name == "http"), None)
        for e in s.endpoints or []:
            if port and (e.conditions is None or e.conditions.ready is not False):
                out |= {f"{a}:{port}" for a in e.addresses}
    return out


def upstreams(lab: str) -> list[set[str]]:
    """The web upstream each controller pod's nginx workers use: the endpoints file, once they loaded its
    version (as tests/kernel/test_ingress_api.py reads it)."""
    out = []
    for record in (r for key, r in sorted(load_records(lab).items()) if key.startswith("kube-system/")):
        nginx = NginxPod(lab, record)
        try:
            text = (nginx.folder / "endpoints").read_text()
        except FileNotFoundError:
            out.append(set())
            continue
        if nginx.endpoints_version(Options().status) != text.split("\n", 1)[0].removeprefix("version "):
            out.append(set())
            continue
        line = next((x for x in text.splitlines() if x.startswith(f"upstream {UPSTREAM} ")), "")
        out.append(set(line.split()[2].split(",")) if line else set())
    return out


def measure_ingress(cluster: Cluster, discovery: Any) -> dict[str, Any]:
    """ACK's add-on (2 controller pods) and a web backend; ROUNDS of kubectl scale 2↔3 → nginx's upstreams."""
    cluster.apply(ingress_controller.addon_manifests(2))
    cluster.apply(WEB)

    def converged(want: int, marks: dict[str, float]) -> bool:
        slices = ready_endpoints(discovery)
        if len(slices) != want:
            marks.pop("slice", None)
            return False
        marks.setdefault("slice", time.monotonic())
        ups = upstreams(cluster.lab)
        return len(ups) == 2 and all(u == slices for u in ups)

    until(lambda: converged(2, {}), "2 web endpoints in both controllers' nginx", 120, 0.2)
    total, after_slice = [], []
    for i in range(ROUNDS):
        want = 3 if i % 2 == 0 else 2
        marks: dict[str, float] = {}
        begin = time.monotonic()
        cluster.kubectl("scale", "deployment", "web", f"--replicas={want}")
        until(lambda w=want, m=marks: converged(w, m), f"{want} endpoints in nginx", 60, 0.02)
        done = time.monotonic()
        total.append(done - begin)
        after_slice.append(done - marks["slice"])
        progress(f"ingress round {i + 1}/{ROUNDS}: scale to {want} → nginx upstreams {total[-1]:.2f} s "
                 f"({after_slice[-1]:.2f} s after the EndpointSlice)")
        time.sleep(1.5)  # the scaled-down pod's namespace goes before the next round
    med = statistics.median(total)
    return {"scale_to_nginx_s": [round(x, 2) for x in total], "slice_to_nginx_s": [round(x, 2) for x in after_slice],
            "median_scale_to_nginx_s": round(med, 2), "median_slice_to_nginx_s":
            round(statistics.median(after_slice), 2), "met": med <= TARGET_INGRESS_S}


# --- 5. kube-proxy at scale --------------------------------------------------------------------------------

@dataclass
class Services:
    """The service ports created so far (with their ClusterIPs, for acklab's compiler)."""

    services: int = 0
    ports: list[ServicePortInfo] = field(default_factory=list)


def service_bodies(name: str, count: int) -> tuple[dict, dict]:
    """A selectorless Service with ``count`` ports and its EndpointSlice (two ready endpoints)."""
    ports = [{"name": f"p{j}", "port": 80 + j, "protocol": "TCP", "targetPort": 8080 + j} for j in range(count)]
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"type": "ClusterIP", "ports": ports}}
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name,
                                                             "endpointslice.kubernetes.io/managed-by": "bench.acklab"}},
              "addressType": "IPv4", "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": "TCP"}
                                               for p in ports],
              "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ENDPOINTS]}
    return service, slice_


def plan_increment(have: Services, target: int) -> list[tuple[str, int]]:
    """(name, ports) of the Services to add so that ``target`` service ports exist, within the ClusterIP range:
    one port each while they fit, several when the range would run out."""
    missing = target - len(have.ports)
    room = MAX_SERVICES - have.services
    if missing <= 0:
        return []
    if room <= 0:
        raise RuntimeError(f"no ClusterIP left for {missing} more service ports")
    per = math.ceil(missing / room)
    out = []
    for i in range(math.ceil(missing / per)):
        out.append((f"s{have.services + i:05d}", min(per, missing - i * per)))
    return out


def create_services(cluster: Cluster, client: Any, have: Services, target: int) -> float:
    """Create Services and slices up to ``target`` service ports (threads against the API); the seconds taken."""
    from kubernetes import client as k8s

    core, discovery = k8s.CoreV1Api(client), k8s.DiscoveryV1Api(client)
    wanted = plan_increment(have, target)

    def create(item: tuple[str, int]) -> list[ServicePortInfo]:
        service, slice_ = service_bodies(*item)
        made = core.create_namespaced_service(SVC_NAMESPACE, service)
        discovery.create_namespaced_endpoint_slice(SVC_NAMESPACE, slice_)
        return [ServicePortInfo(SVC_NAMESPACE, item[0], p.name, "TCP", made.spec.cluster_ip, p.port,
                                endpoints=tuple(Endpoint(ip, p.target_port) for ip in ENDPOINTS))
                for p in made.spec.ports]

    begin = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        for ports in pool.map(create, wanted):
            have.ports += ports
    have.services += len(wanted)
    return time.monotonic() - begin


def metrics(netns: str) -> dict[str, float]:
    """kube-proxy's Prometheus metrics without labels (its metrics address, 127.0.0.1:10249 in the node's
    namespace). HTTP/1.0: no chunked encoding to undo."""
    s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    data = b""
    try:
        s.connect(("127.0.0.1", METRICS_PORT))
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        while chunk := s.recv(65536):
            data += chunk
    except OSError as exc:
        raise RuntimeError(f"kube-proxy's metrics in {netns} did not answer: {exc}") from exc
    finally:
        s.close()
    out = {}
    for line in data.decode(errors="replace").partition("\r\n\r\n")[2].splitlines():
        # no label, or only ip_family (newer kube-proxies label per family); histogram buckets (le=) left out
        if line.startswith("kubeproxy_sync_") and "le=" not in line:
            name, _, value = line.rpartition(" ")
            family = name.partition("{")[2]
            if family in ("", 'ip_family="IPv4"}'):
                with contextlib.suppress(ValueError):
                    out[name.partition("{")[0]] = float(value)
    return out


SYNC = "kubeproxy_sync_proxy_rules_duration_seconds"
FULL = "kubeproxy_sync_full_proxy_rules_duration_seconds"


def clusterip_rules(netns: str) -> int:
    """ClusterIP rules in KUBE-SERVICES (one per service port): listing one chain stays cheap at 10k."""
    text = Namespace(netns).run(["iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES"], timeout=120).stdout
    return sum(1 for line in text.splitlines() if " -d " in line and "cluster IP" in line)


def kube_proxy_rules(netns: str) -> str:
    """kube-proxy's rules on the node, as ``iptables-restore --noflush`` input: its KUBE-* chains and the jumps
    into them from the built-in chains (the node's other rules, policy and security groups, are not its)."""
    saved = Namespace(netns).run(["iptables-save"], timeout=300).stdout

    def kube_proxys(line: str) -> bool:
        return line.startswith(("*", "COMMIT", ":KUBE-", "-A KUBE-")) or (
            line.startswith("-A ") and " -j KUBE-" in line)

    def portable(line: str) -> str:  # an nfacct match needs kube-proxy's counter object, absent in the scratch
        return re.sub(r" -m nfacct --nfacct-name +\S+", "", line)

    return "\n".join(map(portable, filter(kube_proxys, saved.splitlines()))) + "\n"


def flush(namespace: Namespace) -> None:
    namespace.run(["iptables-restore", "--wait"], input="*filter\nCOMMIT\n*nat\nCOMMIT\n*mangle\nCOMMIT\n")


def restore_s(namespace: Namespace, text: str) -> float:
    flush(namespace)
    begin = time.perf_counter()
    result = namespace.run(["iptables-restore", "--noflush", "--wait"], input=text, timeout=900, check=False)
    elapsed = time.perf_counter() - begin
    if result.returncode != 0:
        (REPORT_DIR / "k8s_api.refused.txt").write_text(text)  # to read what was refused
        raise RuntimeError(f"iptables-restore refused kube-proxy's rules: {result.stderr.strip()[:500]}")
    return elapsed


def acklab_s(proxier: NodeProxier, ports: list[ServicePortInfo]) -> float:
    """acklab's compiler: compile + read + apply from a node without rules (forgotten state, as a first sync)."""
    flush(proxier.namespace)
    proxier.forget()
    begin = time.perf_counter()
    proxier.sync(ports)
    return time.perf_counter() - begin


def full_sync(cluster: Cluster, node: NodeSpec) -> tuple[float, float]:
    """Restart kube-proxy on ``node`` after upstream's ``--cleanup``: its first sync is a full one from a node
    without its rules (it waits for its Service and EndpointSlice informers first). Returns (the sync's own
    seconds from its metric, wall seconds from the start to that sync observed)."""
    daemon = kube_proxy.KubeProxyDaemon(cluster.lab, node.name, node.netns)
    daemon.stop(flush_rules=True)
    begin = time.monotonic()
    kube_proxy.install(cluster.lab, node.name, node.netns, node.ip, "iptables", POD_CIDR, timeout=600)
    values: dict[str, float] = {}

    def synced() -> bool:  # /healthz may answer before the first sync: wait for its histogram
        values.update(metrics(node.netns))
        return values.get(f"{FULL}_count", 0) >= 1

    until(synced, "kube-proxy's first full sync", 600, 0.1)
    wall = time.monotonic() - begin
    if values[f"{FULL}_count"] != 1:
        raise RuntimeError(f"expected one full sync after the restart, metrics say {values[f'{FULL}_count']}")
    return values[f"{FULL}_sum"], wall


def measure_size(cluster: Cluster, client: Any, have: Services, target: int, scratch: Namespace,
                 repeats: int = 3) -> dict[str, Any]:
    node = cluster.node("node-1")
    before, ports_before = clusterip_rules(node.netns), len(have.ports)
    created_s = create_services(cluster, client, have, target)
    snapshot, after_last = metrics(node.netns), time.monotonic()
    want = before + len(have.ports) - ports_before
    until(lambda: clusterip_rules(node.netns) >= want, f"{target} service ports in kube-proxy's rules", 900, 0.1)
    rules_s = time.monotonic() - after_last
    time.sleep(2)  # kube-proxy's minSyncPeriod is 1 s: the syncs the last objects caused are done
    now = metrics(node.netns)
    syncs = now.get(f"{SYNC}_count", 0) - snapshot.get(f"{SYNC}_count", 0)
    last_sync = (now[f"{SYNC}_sum"] - snapshot.get(f"{SYNC}_sum", 0)) / syncs if syncs else float("nan")
    progress(f"{target} service ports ({have.services} Services) created in {created_s:.1f} s; in kube-proxy's "
             f"rules {rules_s:.1f} s after the last object ({int(syncs)} syncs since, mean {last_sync:.3f} s)")
    upstream_s, restart_s = full_sync(cluster, node)
    text = kube_proxy_rules(node.netns)
    restore_s(scratch, text)  # warm-up, untimed: the first big restore into a namespace pays one-time costs
    proxier = NodeProxier(cluster.lab, "scratch", scratch.name)
    raw: list[float] = []
    ours: list[float] = []
    for r in range(repeats):  # alternate which goes first: neither always pays for a warmer cache
        if r % 2:
            ours.append(acklab_s(proxier, have.ports))
        raw.append(restore_s(scratch, text))
        if not r % 2:
            ours.append(acklab_s(proxier, have.ports))
    flush(scratch)
    row = {"service_ports": len(have.ports), "services": have.services, "restore_lines": text.count("\n"),
           "create_s": round(created_s, 1), "last_object_to_rules_s": round(rules_s, 2),
           "syncs_after_last_object": int(syncs), "sync_after_last_object_s": round(last_sync, 3),
           "upstream_full_sync_s": round(upstream_s, 3), "upstream_restart_to_synced_s": round(restart_s, 2),
           "raw_restore_s": round(statistics.median(raw), 3), "acklab_sync_s": round(statistics.median(ours), 3)}
    row["upstream_over_raw"] = round(upstream_s / row["raw_restore_s"], 2)
    row["acklab_over_raw"] = round(row["acklab_sync_s"] / row["raw_restore_s"], 2)
    progress(f"{target} service ports: upstream full sync {upstream_s:.3f} s, raw iptables-restore "
             f"{row['raw_restore_s']:.3f} s ({row['upstream_over_raw']}x), acklab compile+apply "
             f"{row['acklab_sync_s']:.3f} s ({row['acklab_over_raw']}x)")
    return row


def measure_services(cluster: Cluster, client: Any, sizes: list[int]) -> list[dict[str, Any]]:
    cluster.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {SVC_NAMESPACE}}}\n")
    scratch = Namespace(netns_name(cluster.lab, SCRATCH))
    scratch.create()
    have = Services()
    return [measure_size(cluster, client, have, n, scratch) for n in sorted(sizes)]


# --- run and report ----------------------------------------------------------------------------------------

def step(report: dict[str, Any], name: str, work: Callable[[], Any]) -> None:
    """Run one measurement; a failure is recorded (and fails the run) without losing the others."""
    try:
        report[name] = work()
    except Exception as exc:
        report["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
        progress(f"{name} failed: {exc}")


def run(sizes: list[int], skip_ingress: bool) -> dict[str, Any]:
    from kubernetes import client as k8s

    lab = new_lab()
    report: dict[str, Any] = {
        "benchmark": "k8s_api", "lab": lab, "commit": git_commit(), "kernel": platform.release(),
        "cpus": os.cpu_count(), "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "targets": {"apply_to_ready_s": TARGET_READY_S, "policy_s": TARGET_POLICY_S, "ingress_s": TARGET_INGRESS_S},
        "errors": []}
    progress(f"lab {lab}: building the cluster (untimed) ...")
    try:
        cluster = build(lab)
        report["install"] = cluster.timings
        client = api(lab)
        core, discovery = k8s.CoreV1Api(client), k8s.DiscoveryV1Api(client)
        until(lambda: len([n for n in core.list_node().items if any(
            c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])]) == 2,
            "both nodes Ready", 60, 0.2)
        step(report, "deployment", lambda: measure_deployment(cluster, core))
        step(report, "policy", lambda: measure_policy(cluster, core))
        if skip_ingress:
            report["ingress"] = {"skipped": "--skip-ingress"}
        else:
            step(report, "ingress", lambda: measure_ingress(cluster, discovery))
        step(report, "memory", lambda: measure_memory(cluster))
        step(report, "services", lambda: measure_services(cluster, client, sizes))
        step(report, "memory_after_services", lambda: measure_memory(cluster))
    except BaseException as exc:  # SIGTERM, Ctrl-C, a failed build: the report says the run is incomplete
        report["errors"].append(f"interrupted: {type(exc).__name__}: {exc}")
    finally:
        progress(f"removing lab {lab} ...")
        with contextlib.suppress(Exception):
            cleanup.clean_lab(lab)  # the lab's processes (control plane, agents, kube-proxy) and namespaces
        left = remove_lab(lab)  # safety net: whatever namespace or state is left
        if left:
            report["removed_leftovers"] = left
        report["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    report["met"] = not report["errors"] and all(
        report.get(k, {}).get("met", True) for k in ("deployment", "policy", "ingress"))
    return report


def memory_lines(memory: dict[str, float | None] | None, title: str) -> list[str]:
    if not memory:
        return []
    return ["", f"### {title}", "", "| process | RSS MiB |", "|---|---:|",
            *(f"| {k} | {v if v is not None else 'not running'} |" for k, v in memory.items())]


def markdown(r: dict[str, Any]) -> str:
    lines = ["# The API-driven cluster (issues 18/19)", "",
             f"{r['started']} · commit {r['commit']} · {r['cpus']} CPUs · kernel {r['kernel']} · lab {r['lab']}. "
             "Two Terway nodes (ecs.g7.xlarge), node agent + upstream kube-proxy (iptables) + NetworkPolicy agent "
             "each; control plane, cloud controller, ingress controller. A shared machine: figures are noisy.", ""]
    d = r.get("deployment")
    if d:
        lines += ["## Pods", "", f"- `kubectl apply` of {d['replicas']} replicas → all Ready: **{d['apply_to_ready_s']}"
                  f" s** (target ≤ {TARGET_READY_S} s: {'met' if d['met'] else 'NOT met'}); per node {d['per_node']}",
                  f"- `kubectl scale --replicas=0` → pod objects gone {d['scale0_objects_gone_s']} s, pod namespaces "
                  f"gone {d['scale0_namespaces_gone_s']} s"]
    p = r.get("policy")
    if p:
        lines += ["", f"## NetworkPolicy (median of {ROUNDS})", "",
                  f"- apply default-deny → denied: **{p['median_apply_to_denied_s']} s** {p['apply_to_denied_s']}",
                  f"- delete → allowed: **{p['median_delete_to_allowed_s']} s** {p['delete_to_allowed_s']}",
                  f"- target ≤ {TARGET_POLICY_S} s: {'met' if p['met'] else 'NOT met'}"]
    i = r.get("ingress")
    if i and "skipped" in i:
        lines += ["", f"## Ingress: skipped ({i['skipped']})"]
    elif i:
        lines += ["", f"## Ingress (median of {ROUNDS}, scale 2↔3)", "",
                  f"- `kubectl scale` → new endpoints in both controllers' nginx: **{i['median_scale_to_nginx_s']} s**"
                  f" {i['scale_to_nginx_s']}",
                  f"- EndpointSlice changed → nginx: {i['median_slice_to_nginx_s']} s {i['slice_to_nginx_s']}",
                  f"- target ≤ {TARGET_INGRESS_S} s: {'met' if i['met'] else 'NOT met'}"]
    rows = r.get("services")
    if rows:
        lines += ["", "## kube-proxy (iptables) at scale, same run", "",
                  "| service ports (Services) | restore lines | create via API | last object → rules | syncs after "
                  "| their mean | upstream full sync (restart → synced) | raw iptables-restore | upstream/raw "
                  "| acklab compile+apply | acklab/raw |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in rows:
            lines.append(f"| {s['service_ports']} ({s['services']}) | {s['restore_lines']} | {s['create_s']} s | "
                         f"{s['last_object_to_rules_s']} s | {s['syncs_after_last_object']} | "
                         f"{s['sync_after_last_object_s']} s | {s['upstream_full_sync_s']} s "
                         f"({s['upstream_restart_to_synced_s']} s) | {s['raw_restore_s']} s "
                         f"| {s['upstream_over_raw']}x | {s['acklab_sync_s']} s | {s['acklab_over_raw']}x |")
        lines += ["", "Upstream full sync: `kubeproxy_sync_full_proxy_rules_duration_seconds` of kube-proxy's first "
                  "sync after a restart with `--cleanup` (a node without its rules). Raw: `iptables-restore "
                  "--noflush` of exactly kube-proxy's rules (`iptables-save` of the node, KUBE-* chains and jumps) "
                  "into an empty scratch namespace, median of 3. acklab: `NodeProxier.sync` of the same service "
                  "ports from an empty namespace (compile + read + apply), median of 3."]
    lines += memory_lines((d or {}).get("memory_with_50_pods_mib"), "Resident memory with 50 pods running")
    lines += memory_lines(r.get("memory"), "Resident memory, idle (after the policy and Ingress rounds)")
    lines += memory_lines(r.get("memory_after_services"), "Resident memory with the Services above")
    if r["errors"]:
        lines += ["", "## Errors", "", *(f"- {e}" for e in r["errors"])]
    lines += ["", f"Targets: {'all met' if r['met'] else 'NOT all met'}."]
    return "\n".join(lines) + "\n"


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through run's finally, which removes the lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.k8s_api", description=__doc__.splitlines()[0])
    parser.add_argument("--services", nargs="+", type=int, default=list(DEFAULT_SERVICES), metavar="N",
                        help="service-port counts for kube-proxy (default 1000 5000; add 10000 for the issue's third)")
    parser.add_argument("--skip-ingress", action="store_true", help="leave out the Ingress rounds")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    try:
        for tool in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kube-proxy"):
            binary(tool)
    except LabError as exc:
        parser.error(str(exc))
    signal.signal(signal.SIGTERM, _terminate)
    report = run(args.services, args.skip_ingress)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "k8s_api.json").write_text(json.dumps(report, indent=2) + "\n")
    (REPORT_DIR / "k8s_api.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
