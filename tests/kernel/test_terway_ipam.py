"""Terway's live ENI IP management on the real kernel against the lab's control plane: one node of a
small-quota instance type (ecs.g7.large: 3 ENIs x 6 IPs, so 2 Terway ENIs x 5 pod addresses), a Deployment
scaled past one ENI's capacity gets a second ENI attached, past the quota the extra pod stays Pending with an
Event naming the reason, scale-down releases addresses beyond the warm pool, and the ENIs go with the node.

One cluster for the module; tests run in file order.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from acklab.inventory import read_lab
from acklab.k8s.model.ipam import TerwayConfig
from acklab.k8s.model.kubelet import NodeIdentity
from acklab.k8s.model.pod_network import Node
from acklab.k8s.node_agent import NodeAgentConfig, ensure_node_agent, stop_node_agent
from netns.kernel.namespace import list_namespaces
from netns.model.names import mark
from netns.realize import alias_addresses
from netns.realize import control_plane as cp
from netns.realize.vpc import VpcRouter, VSwitch
from tests import k8stools as k
from tests.labtools import clean_lab, new_lab, wait_for

pytestmark = pytest.mark.kernel

VENV_BIN = Path(sys.executable).parent
POD_VSWITCH = ipaddress.IPv4Network(k.POD_VSWITCH_CIDR)
MIN_POOL, MAX_POOL = 2, 3

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: [netexec, --http-port=80]
        ports: [{containerPort: 80}]
"""

PINNED = """
apiVersion: v1
kind: Pod
metadata: {name: extra, namespace: default, labels: {app: extra}}
spec:
  nodeName: node-1
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    ports: [{containerPort: 80}]
"""


@dataclass
class Cluster:
    lab: str
    router: VpcRouter
    instance: object
    client_netns: str

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([str(VENV_BIN / "kubectl"), "--kubeconfig", str(cp.kubeconfig_path(self.lab)), *args],
                                input=stdin, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def pods(self, selector: str = "app=web") -> list[dict]:
        return json.loads(self.kubectl("get", "pods", "-l", selector, "-o", "json"))["items"]

    def terway_enis(self) -> dict[str, dict[str, str]]:
        """The pod vSwitch's ENIs the node agent made (owner=terway), id → facts."""
        return {e: f for e, f in VSwitch(self.router, "vsw-0000000c").enis().items() if f.get("owner") == "terway"}


def running(pod: dict) -> bool:
    status = pod.get("status", {})
    return status.get("phase") == "Running" and bool(status.get("podIP")) and \
        not pod["metadata"].get("deletionTimestamp")


def web_running(cluster: Cluster, count: int) -> list[dict]:
    pods = cluster.pods()
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
        router, nodes, _ = k.build_vpc(lab)
        VSwitch(router, "vsw-0000000c").create(POD_VSWITCH, "cn-hangzhou-h", "vsw-pods")
        # two more pod vSwitches Terway must pass over: one of another zone, one of the node's zone with fewer free
        # addresses (Terway makes a node's ENIs in its zone, in the pod vSwitch with the most free addresses)
        VSwitch(router, "vsw-0000000d").create(ipaddress.IPv4Network("192.168.4.0/24"), "cn-hangzhou-i", "pods-i")
        VSwitch(router, "vsw-0000000e").create(ipaddress.IPv4Network("192.168.5.0/28"), "cn-hangzhou-h", "pods-h2")
        plane = cp.ControlPlane(lab, "c0000000e")
        plane.ensure(VSwitch(router, "vsw-0000000a"))
        instance = nodes[0]
        node = Node("node-1", instance.namespace.name, "192.168.1.10", None, "eth1", str(POD_VSWITCH[-3]), ())
        identity = NodeIdentity("node-1", instance.instance_id, "cn-hangzhou-h", "ecs.g7.large", node.ip)
        terway = TerwayConfig(router.vpc_id, ("vsw-0000000d", "vsw-0000000e", "vsw-0000000c"), (k.NODE_SG,),
                              MIN_POOL, MAX_POOL)
        config = NodeAgentConfig(lab, identity, node, terway=terway)
        ensure_node_agent(config, plane.client_kubeconfig("system:node:node-1", ("system:nodes",)))
        yield Cluster(lab, router, instance, nodes[1].namespace.name)
    finally:
        clean_lab(lab)
    assert not list_namespaces(mark(lab)), "acklab clean left namespaces of the lab"


def test_the_node_starts_with_a_warm_terway_eni_and_allocatable_pods_from_the_quota(cluster):
    def ready() -> dict | None:
        nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
        return nodes[0] if nodes else None

    wait_for(ready, "node-1 registered", timeout=30)
    node = ready()
    assert node["status"]["allocatable"]["pods"] == "10"  # (3 - 1) ENIs x (6 - 1) secondary IPs
    wait_for(lambda: len(cluster.terway_enis()) == 1, "the first Terway ENI")
    (facts,) = cluster.terway_enis().values()
    assert facts["instance"] == "i-00000001" and len(alias_addresses(facts)) == MIN_POOL


def test_past_one_enis_capacity_a_second_eni_is_attached_and_its_pods_answer(cluster):
    cluster.kubectl("apply", "-f", "-", stdin=DEPLOYMENT)
    wait_for(lambda: web_running(cluster, 6), "6 web pods Running", timeout=30)
    enis = cluster.terway_enis()
    assert len(enis) == 2, enis
    shown = [e for e in read_lab(cluster.lab).enis if e.owner == "terway"]  # what acklab status lists
    assert {(e.id, e.instance, e.device) for e in shown} == {(i, "i-00000001", f["device"]) for i, f in enis.items()}
    by_device = {f["device"]: set(alias_addresses(f)) for f in enis.values()}
    pods = web_running(cluster, 6)
    on_second = [p for p in pods if p["status"]["podIP"] in by_device["2"]]
    assert on_second, (by_device, [p["status"]["podIP"] for p in pods])
    print(f"\nTerway ENIs: {by_device}; pods on eth2: {[p['status']['podIP'] for p in on_second]}")
    for pod in pods:
        ip = pod["status"]["podIP"]
        assert ipaddress.IPv4Address(ip) in POD_VSWITCH
        assert k.http_get(cluster.client_netns, ip, 80, "/hostname") == pod["metadata"]["name"], ip


def events_of(cluster: Cluster, name: str) -> list[dict]:
    return json.loads(cluster.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}",
                                      "-o", "json"))["items"]


def test_past_the_quota_the_extra_pod_stays_pending_with_an_event_naming_the_reason(cluster):
    cluster.kubectl("scale", "deployment", "web", "--replicas=10")
    wait_for(lambda: web_running(cluster, 10), "10 web pods Running (the quota)", timeout=30)
    cluster.kubectl("apply", "-f", "-", stdin=PINNED)  # bound past the scheduler, as a DaemonSet pod is

    def refused() -> list[dict]:
        return [e for e in events_of(cluster, "extra") if e["reason"] == "FailedCreatePodSandBox"]

    wait_for(refused, "the sandbox event", timeout=15)
    (event,) = refused()
    print(f"\nevent on the extra pod: {event['reason']}: {event['message']}")
    assert "ecs.g7.large allows 3 ENIs x 6 IPs" in event["message"] and event["type"] == "Warning"
    (pod,) = cluster.pods("app=extra")
    assert pod["status"]["phase"] == "Pending" and not pod["status"].get("podIP")
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    assert len(cluster.terway_enis()) == 2  # no third ENI: the quota holds
    view = read_lab(cluster.lab)  # what `acklab status` shows: the API's Nodes and pods, joined with the kernel's
    assert view.api.startswith("https://127.0.0.1:"), view.api
    assert [(n.name, n.status, n.instance_id, n.instance_type) for n in view.nodes] == [
        ("node-1", "Ready", cluster.instance.instance_id, "ecs.g7.large")]
    shown = {f"{p.namespace}/{p.name}": p for p in view.pods}
    extra = shown["default/extra"]
    assert (extra.status, extra.ip, extra.netns, extra.node) == ("Pending", "-", "-", "node-1")
    for web in web_running(cluster, 10):  # the same addresses as kubectl's, each in a namespace of the kernel
        row = shown[f"default/{web['metadata']['name']}"]
        assert (row.status, row.ip) == ("Running", web["status"]["podIP"])
        assert os.path.exists(f"/run/netns/{row.netns}")
    # the scheduler sees the quota too: an 11th replica is not bound (allocatable pods = 10)
    cluster.kubectl("scale", "deployment", "web", "--replicas=11")

    def unschedulable() -> list[dict]:
        pending = [p for p in cluster.pods() if p["status"].get("phase") == "Pending"]
        return [e for p in pending for e in events_of(cluster, p["metadata"]["name"])
                if e["reason"] == "FailedScheduling" and "Too many pods" in e["message"]]

    wait_for(unschedulable, "the 11th replica unschedulable: Too many pods", timeout=15)


def test_the_waiting_pod_starts_when_an_address_frees_and_scale_down_releases_addresses(cluster):
    cluster.kubectl("scale", "deployment", "web", "--replicas=2")
    wait_for(lambda: [p for p in cluster.pods("app=extra") if running(p)], "the waiting pod Running", timeout=30)
    (extra,) = cluster.pods("app=extra")
    assert k.http_get(cluster.client_netns, extra["status"]["podIP"], 80, "/hostname") == "extra"
    wait_for(lambda: web_running(cluster, 2), "2 web pods", timeout=30)

    def assigned() -> int:
        return sum(len(alias_addresses(f)) for f in cluster.terway_enis().values())

    # 3 pods hold addresses; the warm pool keeps between min_pool_size and max_pool_size free ones, the rest
    # (of the 10 the quota allowed) went back to the vSwitch
    wait_for(lambda: 3 + MIN_POOL <= assigned() <= 3 + MAX_POOL, "secondary IPs released", timeout=15)
    print(f"\nafter scale-down: {assigned()} secondary IPs assigned for 3 pods")


def test_enis_are_made_in_the_nodes_zone_in_the_pod_vswitch_with_the_most_free_addresses(cluster):
    for other in ("vsw-0000000d", "vsw-0000000e"):
        assert not [f for f in VSwitch(cluster.router, other).enis().values() if f.get("owner") == "terway"], other
    assert len(cluster.terway_enis()) == 2  # both in vsw-0000000c (the tests before checked their pods answer)


def test_terway_enis_go_with_their_instance(cluster):
    stop_node_agent(cluster.lab, "node-1")
    cluster.instance.delete()
    assert cluster.terway_enis() == {}
