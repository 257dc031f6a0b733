"""Terway's exclusive ENI mode (``terway-eni``) on the real kernel: two nodes of ecs.g7.large (3 ENIs: 2 pods
each) installed as the cluster's Ansible roles and ``cs.ManagedKubernetes`` install them (``cluster_install``),
workloads applied with kubectl. Each pod's eth0 is an ENI of its own, so the VPC reaches it straight with the
client's address kept; Services go through its veth1 and the node's kube-proxy, with the node masquerading as
Terway's policy container does; past the quota (the Node's allocatable pods) a pod waits for the scheduler; ENIs
given back return to their node; a restarted agent adopts its pods; a leaving node takes its ENIs.

One cluster for the module; tests run in file order.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from acklab.k8s import cloud_controller
from acklab.k8s.cluster_install import NodeSpec, PodNetworkSpec, install_control_plane, install_node, remove_node
from acklab.k8s.network_policy_agent import NetworkPolicyAgent
from acklab.k8s.node_agent import node_agent_pid, stop_node_agent
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark, pod_netns_name
from netns.realize import control_plane as cp
from netns.realize import slb
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch
from tests.k8stools import allow, http_get, terway_vpc, web_deployment
from tests.labtools import clean_lab, new_lab, require_cluster_tools, wait_for

pytestmark = pytest.mark.kernel

VENV_BIN = Path(sys.executable).parent
TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kube-proxy", "coredns")
N = ipaddress.IPv4Network
VPC, NODE_VSW, POD_VSW, CLIENT_VSW, GROUP = "vpc-0000e501", "vsw-0000e50a", "vsw-0000e50c", "vsw-0000e50d", \
    "sg-0000e50a"
NODE_IPS = ("10.0.16.10", "10.0.16.11")
CLIENT_IP = "10.0.32.10"

WEB = web_deployment(4) + """
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, nodePort: 30080}]
"""


@dataclass
class Cluster:
    lab: str
    router: VpcRouter
    nodes: list[NodeSpec]
    client: EcsInstance

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([str(VENV_BIN / "kubectl"), "--kubeconfig", str(cp.kubeconfig_path(self.lab)), *args],
                                input=stdin, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def pods(self) -> list[dict]:
        return json.loads(self.kubectl("get", "pods", "-l", "app=web", "-o", "json"))["items"]

    def running(self) -> list[dict]:
        return [p for p in self.pods() if p["status"].get("phase") == "Running" and p["status"].get("podIP")
                and not p["metadata"].get("deletionTimestamp")]

    def terway_enis(self) -> dict[str, dict[str, str]]:
        return {e: f for e, f in VSwitch(self.router, POD_VSW).enis().items() if f.get("owner") == "terway"}

    def netns_of(self, pod: dict) -> str:
        return pod_netns_name(self.lab, "default", pod["metadata"]["name"])


def links(netns: str) -> dict[str, dict]:
    found = json.loads(Namespace(netns).run(["ip", "-j", "-d", "address", "show"]).stdout)
    return {link["ifname"]: link for link in found}


def addresses(link: dict) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet"}


@pytest.fixture(scope="module")
def cluster():
    require_cluster_tools(TOOLS)
    lab = new_lab()
    try:
        router, nodes_vsw = terway_vpc(lab, VPC, NODE_VSW, POD_VSW, GROUP)
        client_vsw = VSwitch(router, CLIENT_VSW)
        client_vsw.create(N("10.0.32.0/24"), "cn-hangzhou-h", "clients")
        client = EcsInstance(lab, "i-0000e509", "eni-0000e509")
        client.create(client_vsw, CLIENT_IP, "client", "client", (GROUP,))
        plane = install_control_plane(lab, NODE_VSW, network=PodNetworkSpec("terway-eni"))
        assert plane.state is not None
        specs = []
        for number, ip in enumerate(NODE_IPS, start=1):
            instance = EcsInstance(lab, f"i-0000e50{number}", f"eni-0000e50{number}")
            instance.create(nodes_vsw, ip, f"node-{number}", f"node-{number}", (GROUP,))
            spec = NodeSpec(lab, f"node-{number}", instance.instance_id, instance.namespace.name, ip, "ecs.g7.large",
                            NODE_VSW, (POD_VSW,), (GROUP,), network=PodNetworkSpec("terway-eni"))
            install_node(spec)
            specs.append(spec)
        yield Cluster(lab, router, specs, client)
    finally:
        clean_lab(lab)
    assert not list_namespaces(mark(lab)), "acklab clean left namespaces of the lab"


def test_each_pod_runs_on_an_eni_of_its_own(cluster):
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert sorted(n["status"]["allocatable"]["pods"] for n in nodes) == ["2", "2"]  # ENIs - 1, as ACK counts
    cluster.kubectl("apply", "-f", "-", stdin=WEB)
    wait_for(lambda: len(cluster.running()) == 4, "4 web pods", timeout=40)
    pods = cluster.running()
    enis = cluster.terway_enis()
    by_ip = {facts["ip"]: facts for facts in enis.values()}
    instances = {f"node-{n}": f"i-0000e50{n}" for n in (1, 2)}
    for pod in pods:
        ip = pod["status"]["podIP"]
        assert by_ip[ip]["instance"] == instances[pod["spec"]["nodeName"]], pod["metadata"]["name"]
        inside = links(cluster.netns_of(pod))
        assert addresses(inside["eth0"]) == {f"{ip}/32"} and addresses(inside["veth1"]) == {f"{ip}/32"}
        assert inside["eth0"]["linkinfo"]["info_kind"] == "veth"  # the lab's ENI: a veth to its vSwitch port
        node_netns = next(n.netns for n in cluster.nodes if n.name == pod["spec"]["nodeName"])
        assert f"eth{by_ip[ip]['device']}" not in links(node_netns)  # the device is the pod's, not the node's
    assert not [n for n in cluster.nodes if NetworkPolicyAgent(cluster.lab, n.name, n.netns).running()]


def test_the_vpc_reaches_pods_through_their_enis_with_the_clients_address(cluster):
    pods = cluster.running()
    for pod in pods:
        seen = http_get(cluster.client.namespace.name, pod["status"]["podIP"], 80, "/clientip")
        assert seen is not None and seen.split(":")[0] == CLIENT_IP, pod["metadata"]["name"]
    first, other = pods[0], next(p for p in pods if p["spec"]["nodeName"] != pods[0]["spec"]["nodeName"])
    seen = http_get(cluster.netns_of(first), other["status"]["podIP"], 80, "/clientip")
    assert seen is not None and seen.split(":")[0] == first["status"]["podIP"]


def test_services_answer_through_veth1_and_the_nodes_kube_proxy(cluster):
    cluster_ip = cluster.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
    pods = cluster.running()
    names = {p["metadata"]["name"] for p in pods}
    client_pod = cluster.netns_of(pods[0])
    seen: set[str] = set()

    def every_backend() -> bool:
        seen.add(http_get(client_pod, cluster_ip, 80, "/hostname") or "")
        return names <= seen

    wait_for(every_backend, "the ClusterIP answering from a pod with every backend, local and remote", timeout=30)
    seen.clear()

    def every_backend_by_node_port() -> bool:
        seen.add(http_get(cluster.client.namespace.name, NODE_IPS[0], 30080, "/hostname") or "")
        return names <= seen

    wait_for(every_backend_by_node_port, "the NodePort answering from the VPC with every backend", timeout=30)
    via_node = http_get(cluster.client.namespace.name, NODE_IPS[0], 30080, "/clientip")
    assert via_node is not None and via_node.split(":")[0] != CLIENT_IP  # masqueraded (terway-masq), as on ACK
    node_to_pod = http_get(cluster.nodes[0].netns, pods[0]["status"]["podIP"], 80, "/clientip")
    assert node_to_pod is not None  # the node's own traffic (the kubelet's probes) through the veth


def test_past_the_quota_a_pod_waits_and_enis_given_back_return_to_their_node(cluster):
    cluster.kubectl("scale", "deployment", "web", "--replicas=5")

    def waiting() -> bool:  # the Nodes' allocatable pods (ENIs - 1) keep the scheduler from placing it
        events = json.loads(cluster.kubectl("get", "events", "-o", "json"))["items"]
        return len(cluster.pods()) == 5 and any(e.get("reason") == "FailedScheduling" and "Too many pods" in
                                                e.get("message", "") for e in events)

    wait_for(waiting, "the fifth pod to wait with the scheduler's event naming the quota", timeout=30)
    assert len(cluster.running()) == 4
    cluster.kubectl("scale", "deployment", "web", "--replicas=1")
    wait_for(lambda: len(cluster.pods()) == 1 and len(cluster.running()) == 1, "1 web pod", timeout=40)
    held = cluster.running()[0]["status"]["podIP"]
    enis = cluster.terway_enis()
    assert held in {f["ip"] for f in enis.values()}
    for facts in enis.values():  # kept for the next pods (max_pool_size 5), their devices back on their node
        if facts["ip"] == held:
            continue
        node = next(n for n in cluster.nodes if n.instance_id == facts["instance"])
        assert f"eth{facts['device']}" in links(node.netns), facts
    wait_for(lambda: [n.name for n in list_namespaces(mark(cluster.lab)) if "-pod-" in n.name] == [
        cluster.netns_of(cluster.running()[0])], "the deleted pods' namespaces to go", timeout=20)


def test_a_restarted_agent_adopts_its_pod_and_a_leaving_node_takes_its_enis(cluster):
    pod = cluster.running()[0]
    ip, name = pod["status"]["podIP"], pod["metadata"]["name"]
    node = next(n for n in cluster.nodes if n.name == pod["spec"]["nodeName"])
    before = node_agent_pid(cluster.lab, node.name)
    stop_node_agent(cluster.lab, node.name, keep_files=True)
    install_node(node)  # the agent again: it finds the pod on its ENI and keeps it (no new sandbox)
    assert node_agent_pid(cluster.lab, node.name) not in (None, before)
    wait_for(lambda: http_get(cluster.client.namespace.name, ip, 80, "/hostname") == name, "the pod answering")
    assert [p["status"]["podIP"] for p in cluster.running()] == [ip]
    assert links(cluster.netns_of(pod))["eth0"]["addr_info"][0]["local"] == ip

    remove_node(cluster.lab, node.name, node.netns, node.ip)  # drained: the pod's ENI back on the node first
    assert not Namespace(cluster.netns_of(pod)).exists()
    mine = [f for f in cluster.terway_enis().values() if f["instance"] == node.instance_id]
    assert mine and all(f"eth{f['device']}" in links(node.netns) for f in mine)
    EcsInstance(cluster.lab, node.instance_id, f"eni-{node.instance_id[2:]}").delete()
    assert not [f for f in cluster.terway_enis().values() if f["instance"] == node.instance_id]


ENI_BACKED = """
apiVersion: v1
kind: Service
metadata:
  name: web-eni
  namespace: default
  annotations: {service.beta.kubernetes.io/backend-type: eni}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: false
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80}]
"""


def test_an_eni_backed_load_balancer_reaches_the_pods_straight_with_the_clients_address(cluster):
    """ACK's ``backend-type: eni``: the SLB's backends are the pods' ENIs at their own port, no NodePort; an
    internet client's address reaches the pod; backends follow ``kubectl scale``."""
    wait_for(lambda: len(cluster.running()) == 1, "the web pod on the node left", timeout=40)
    # the pods' ENIs are in the group: it admits the SLB's clients and its health checks (100.64.0.0/10), as
    # docs/slb.md says for any backend in a group
    allow(cluster.lab, GROUP, "sgr-0000e501", "tcp", 80, "203.0.113.0/24")
    allow(cluster.lab, GROUP, "sgr-0000e502", "tcp", 80, "100.64.0.0/10")
    cluster.kubectl("apply", "-f", "-", stdin=ENI_BACKED)

    def address() -> str:
        ingress = json.loads(cluster.kubectl("get", "service", "web-eni", "-o", "json"))["status"]
        return ((ingress.get("loadBalancer") or {}).get("ingress") or [{}])[0].get("ip", "")

    wait_for(address, "the Service's external IP", timeout=30)
    internet = f"{mark(cluster.lab)}internet"

    def backends() -> set[str]:
        lb_id = next(r.lb_id for r in cloud_controller.load_records(cluster.lab).values() if r.name == "web-eni")
        return {f"{s['server_id']}/{s.get('ip')}" for s in slb.backend_servers(cluster.lab, lb_id) or []}

    def pods_as_backends() -> bool:
        enis = {f["ip"]: e for e, f in cluster.terway_enis().items()}
        return backends() == {f"{enis[p['status']['podIP']]}/{p['status']['podIP']}" for p in cluster.running()}

    wait_for(pods_as_backends, "the pod's ENI as the SLB's backend", timeout=20)
    wait_for(lambda: http_get(internet, address(), 80, "/clientip"), "an answer through the SLB", timeout=30)
    seen = http_get(internet, address(), 80, "/clientip") or ""
    assert seen.split(":")[0].startswith("203.0.113."), seen  # the internet client itself, no node in between
    cluster.kubectl("scale", "deployment", "web", "--replicas=2")
    wait_for(lambda: len(cluster.running()) == 2 and pods_as_backends(), "both pods as backends", timeout=40)
    names = {p["metadata"]["name"] for p in cluster.running()}
    answered: set[str] = set()
    wait_for(lambda: names <= (answered.add(http_get(internet, address(), 80, "/hostname") or "") or answered),
             "both pods answering through the SLB", timeout=30)
