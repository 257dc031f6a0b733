"""Node agents on the real kernel against the lab's real control plane: two Terway nodes register, pods of a
Deployment get namespaces with pod-vSwitch addresses within seconds, scale, deletion, readiness probes and
EndpointSlices, and an agent killed with -9 converges again.

One cluster for the module (a control plane takes seconds to start); tests run in file order.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from acklab.k8s.model.kubelet import NodeIdentity
from acklab.k8s.model.pod_network import Network
from acklab.k8s.node_agent import NodeAgentConfig, ensure_node_agent, node_agent_pid
from netns.kernel.namespace import Namespace, alive, list_namespaces
from netns.model.names import mark
from netns.realize import control_plane as cp
from netns.realize.vpc import VpcRouter, VSwitch
from tests import k8stools as k
from tests.labtools import clean_lab, new_lab, wait_for

pytestmark = pytest.mark.kernel

VENV_BIN = Path(sys.executable).parent
CLUSTER = "c0000000d"
ZONE = "cn-hangzhou-h"
POD_VSWITCH = ipaddress.IPv4Network(k.POD_VSWITCH_CIDR)

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: [netexec, --http-port=80]
        ports: [{containerPort: 80}]
        readinessProbe: {httpGet: {path: /healthz, port: 80}, periodSeconds: 1}
        livenessProbe: {tcpSocket: {port: 80}, periodSeconds: 2}
"""

SLOW = """
apiVersion: v1
kind: Pod
metadata: {name: slow, namespace: default, labels: {app: slow}}
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 2
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    args: [netexec, --http-port=80, --delay-shutdown=30]
    ports: [{containerPort: 80}]
"""

UNREADY = """
apiVersion: v1
kind: Pod
metadata: {name: unready, namespace: default, labels: {app: web}}
spec:
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    ports: [{containerPort: 80}]
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"""


@dataclass
class Cluster:
    lab: str
    network: Network
    plane: cp.ControlPlane
    configs: dict[str, NodeAgentConfig]
    kubeconfigs: dict[str, str]

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([str(VENV_BIN / "kubectl"), "--kubeconfig", str(cp.kubeconfig_path(self.lab)), *args],
                                input=stdin, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def pods(self, selector: str = "app=web") -> list[dict]:
        return json.loads(self.kubectl("get", "pods", "-l", selector, "-o", "json"))["items"]

    def pod_namespaces(self) -> list[str]:
        return [ns.name for ns in list_namespaces(mark(self.lab)) if "-pod-" in ns.name]


def running(pod: dict) -> bool:
    status = pod.get("status", {})
    ready = {c["type"]: c["status"] for c in status.get("conditions", ())}.get("Ready") == "True"
    return status.get("phase") == "Running" and bool(status.get("podIP")) and ready and \
        not pod["metadata"].get("deletionTimestamp")


def web_running(cluster: Cluster, count: int) -> list[dict]:
    """The Deployment's pods when exactly ``count`` run ready and no other exists, else []."""
    pods = [p for p in cluster.pods() if p["metadata"]["name"].startswith("web-")]
    return pods if len(pods) == count and all(running(p) for p in pods) else []


@pytest.fixture(scope="module")
def cluster():
    tools = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
    missing = [t for t in tools if not (VENV_BIN / t).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not in {VENV_BIN}: run scripts/build-kube.sh (make test does)")
    if os.geteuid() != 0:
        pytest.skip("needs root: builds network namespaces")
    lab = new_lab()
    try:
        network, instances, _ = k.build_cluster(lab, "terway-eniip")
        plane = cp.ControlPlane(lab, CLUSTER)
        plane.ensure(VSwitch(VpcRouter(lab, "vpc-00000001"), "vsw-0000000a"))
        configs, kubeconfigs = {}, {}
        for node, instance in zip(network.nodes, instances, strict=True):
            identity = NodeIdentity(node.name, instance.instance_id, ZONE, "ecs.g7.large", node.ip,
                                    max_pods=len(node.eni_ips))
            configs[node.name] = NodeAgentConfig(lab, identity, node)
            kubeconfigs[node.name] = plane.client_kubeconfig(f"system:node:{node.name}", ("system:nodes",))
            ensure_node_agent(configs[node.name], kubeconfigs[node.name])
        yield Cluster(lab, network, plane, configs, kubeconfigs)
    finally:
        clean_lab(lab)


def test_nodes_register_ready_with_acks_labels_and_provider_id(cluster):
    def ready() -> bool:
        nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
        return len(nodes) == 2 and all({c["type"]: c["status"] for c in n["status"].get("conditions", ())}
                                       .get("Ready") == "True" for n in nodes)

    wait_for(ready, "both nodes Ready", timeout=30)
    node = json.loads(cluster.kubectl("get", "node", "node-1", "-o", "json"))
    assert {k: v for k, v in node["metadata"]["labels"].items() if "topology" in k or "instance-type" in k
            or k == "kubernetes.io/hostname"} == {
        "topology.kubernetes.io/zone": ZONE, "topology.kubernetes.io/region": "cn-hangzhou",
        "node.kubernetes.io/instance-type": "ecs.g7.large", "kubernetes.io/hostname": "node-1"}
    assert node["spec"]["providerID"] == "cn-hangzhou.i-00000001"
    assert {"type": "InternalIP", "address": "192.168.1.10"} in node["status"]["addresses"]
    assert node["status"]["allocatable"]["pods"] == "8"
    lease = json.loads(cluster.kubectl("get", "lease", "-n", "kube-node-lease", "node-1", "-o", "json"))
    assert lease["spec"]["holderIdentity"] == "node-1" and lease["spec"]["renewTime"]
    assert "Ready" in cluster.kubectl("get", "nodes")


def test_a_deployment_gets_reachable_pods_with_terway_addresses_within_seconds(cluster):
    begin = time.monotonic()
    cluster.kubectl("apply", "-f", "-", stdin=DEPLOYMENT)
    wait_for(lambda: web_running(cluster, 3), "3 web pods Running and Ready", timeout=30)
    print(f"\napply → 3 pods Running and Ready: {time.monotonic() - begin:.1f} s")
    pods = web_running(cluster, 3)
    for pod in pods:
        ip = pod["status"]["podIP"]
        assert ipaddress.IPv4Address(ip) in POD_VSWITCH
        assert pod["status"]["podIPs"] == [{"ip": ip}]
        node = cluster.network.node(pod["spec"]["nodeName"])
        assert ip in node.eni_ips and pod["status"]["hostIP"] == node.ip
        other = next(n for n in cluster.network.nodes if n.name != node.name)
        assert k.http_get(other.netns, ip, 80, "/hostname") == pod["metadata"]["name"]
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] and status["started"] and "running" in status["state"]
    assert len(cluster.pod_namespaces()) == 3
    wide = cluster.kubectl("get", "pods", "-A", "-o", "wide")
    assert wide.count("Running") == 3


def test_scale_up_and_down_adds_and_removes_namespaces(cluster):
    cluster.kubectl("scale", "deployment", "web", "--replicas=5")
    wait_for(lambda: web_running(cluster, 5) and len(cluster.pod_namespaces()) == 5, "5 pods", timeout=30)
    assert {p["spec"]["nodeName"] for p in web_running(cluster, 5)} == {"node-1", "node-2"}
    begin = time.monotonic()
    cluster.kubectl("scale", "deployment", "web", "--replicas=1")
    # terminationGracePeriodSeconds 5, netexec without --delay-shutdown: pods end at once
    wait_for(lambda: web_running(cluster, 1) and len(cluster.pod_namespaces()) == 1, "1 pod", timeout=30)
    print(f"\nscale 5 → 1, namespaces gone and objects deleted: {time.monotonic() - begin:.1f} s")


def test_a_deleted_pod_comes_back_with_a_new_address(cluster):
    (old,) = web_running(cluster, 1)
    cluster.kubectl("delete", "pod", old["metadata"]["name"], "--wait=false")
    wait_for(lambda: [p for p in web_running(cluster, 1) if p["metadata"]["uid"] != old["metadata"]["uid"]],
             "the ReplicaSet's replacement", timeout=30)
    (new,) = web_running(cluster, 1)
    assert new["metadata"]["name"] != old["metadata"]["name"]
    assert new["status"]["podIP"] != old["status"]["podIP"]
    assert k.http_get(cluster.network.nodes[0].netns, new["status"]["podIP"], 80, "/hostname") == \
        new["metadata"]["name"]
    wait_for(lambda: len(cluster.pod_namespaces()) == 1, "the old namespace to go")


def test_a_deleted_pod_serves_until_its_grace_period_ends(cluster):
    cluster.kubectl("apply", "-f", "-", stdin=SLOW)
    wait_for(lambda: [p for p in cluster.pods("app=slow") if running(p)], "the slow pod Running", timeout=30)
    (pod,) = cluster.pods("app=slow")
    ip, client = pod["status"]["podIP"], cluster.network.nodes[0].netns
    begin = time.monotonic()
    cluster.kubectl("delete", "pod", "slow", "--wait=false")
    assert k.http_get(client, ip, 80, "/hostname") == "slow"  # netexec --delay-shutdown serves on after SIGTERM
    # gone well before the 30 s its process would serve on (--delay-shutdown=30): killed when the grace ends
    wait_for(lambda: not cluster.pods("app=slow"), "the slow pod deleted", timeout=20)
    elapsed = time.monotonic() - begin
    assert elapsed >= 1.5, f"gone after {elapsed:.1f} s; terminationGracePeriodSeconds is 2"
    assert k.http_get(client, ip, 80, "/hostname", timeout=0.5) is None
    wait_for(lambda: len(cluster.pod_namespaces()) == 1, "its namespace to go")


def ready_endpoints(cluster: Cluster) -> dict[str, bool]:
    slices = json.loads(cluster.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o",
                                        "json"))["items"]
    return {address: bool(e.get("conditions", {}).get("ready")) for s in slices for e in s.get("endpoints") or ()
            for address in e["addresses"]}


def test_a_pod_failing_its_readiness_probe_is_running_but_not_in_the_endpoints(cluster):
    cluster.kubectl("apply", "-f", "-", stdin=UNREADY)
    (web,) = web_running(cluster, 1)

    def unready() -> dict | None:
        pod = json.loads(cluster.kubectl("get", "pod", "unready", "-o", "json"))
        return pod if pod["status"].get("phase") == "Running" and pod["status"].get("podIP") else None

    wait_for(unready, "the unready pod Running", timeout=30)
    pod = unready()
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Ready"] == "False" and conditions["ContainersReady"] == "False"
    assert k.http_get(cluster.network.nodes[0].netns, pod["status"]["podIP"], 80, "/hostname") == "unready"
    wait_for(lambda: ready_endpoints(cluster).get(web["status"]["podIP"]) is True, "the web pod in the slice")
    endpoints = ready_endpoints(cluster)
    assert endpoints.get(pod["status"]["podIP"]) is not True, endpoints
    cluster.kubectl("delete", "pod", "unready", "--wait=false")
    wait_for(lambda: pod["status"]["podIP"] not in ready_endpoints(cluster) and len(cluster.pod_namespaces()) == 1,
             "the unready pod gone", timeout=30)


def test_a_pod_namespace_deleted_behind_the_labs_back_is_made_again(cluster):
    (pod,) = web_running(cluster, 1)
    (netns,) = cluster.pod_namespaces()
    old_inode = Namespace(netns).inode()
    Namespace(netns).remove()
    wait_for(lambda: Namespace(netns).inode() not in (None, old_inode), "the namespace made again", timeout=15)
    other = next(n for n in cluster.network.nodes if n.name != pod["spec"]["nodeName"])

    def answers() -> bool:
        now = web_running(cluster, 1)
        return bool(now) and k.http_get(other.netns, now[0]["status"]["podIP"], 80, "/hostname") == \
            pod["metadata"]["name"]

    wait_for(answers, "the pod to answer again", timeout=15)
    (again,) = web_running(cluster, 1)
    assert (again["metadata"]["uid"], again["status"]["podIP"]) == (pod["metadata"]["uid"], pod["status"]["podIP"])


def test_an_agent_killed_with_9_converges_when_started_again(cluster):
    node = cluster.network.nodes[1]
    pid = node_agent_pid(cluster.lab, node.name)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), "the agent to die")
    (before,) = web_running(cluster, 1)
    cluster.kubectl("scale", "deployment", "web", "--replicas=4")  # some land on the node without its agent
    begin = time.monotonic()
    new_pid = ensure_node_agent(cluster.configs[node.name], cluster.kubeconfigs[node.name])
    assert new_pid != pid
    wait_for(lambda: web_running(cluster, 4) and len(cluster.pod_namespaces()) == 4, "4 pods", timeout=30)
    print(f"\nrestart → 4 pods Running: {time.monotonic() - begin:.1f} s")
    assert before["metadata"]["uid"] in {p["metadata"]["uid"] for p in web_running(cluster, 4)}
    assert ensure_node_agent(cluster.configs[node.name], cluster.kubeconfigs[node.name]) == new_pid  # idempotent
    for pod in web_running(cluster, 4):
        assert k.http_get(cluster.network.nodes[0].netns, pod["status"]["podIP"], 80, "/hostname") == \
            pod["metadata"]["name"]
