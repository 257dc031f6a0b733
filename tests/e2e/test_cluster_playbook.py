"""`ansible-playbook cluster.yml` turns a stack's ECS nodes into an API-driven cluster: the control plane on the
nodes' vSwitch with the cloud and ingress controllers, and on each node the node agent, upstream kube-proxy and
the NetworkPolicy agent. Then kubectl only: both Nodes Ready, a Deployment behind a ClusterIP Service answers from
a node and from a pod; a second run changes nothing; a killed kube-proxy is started again by the next run (one
change); `cluster_state=absent` takes the cluster down; destroy and `acklab clean` leave nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from acklab.k8s.realize.kube_proxy import KubeProxyDaemon
from acklab.k8s.realize.pod_network import load_records
from netns.kernel.namespace import list_namespaces
from netns.model.names import mark, netns_name
from netns.realize.control_plane import control_planes, kubeconfig_path
from tests import k8stools as k
from tests.ansibletools import ANSIBLE, recap
from tests.e2e.test_pulumi_up import VENV, Stack, temp_project
from tests.labtools import wait_for

pytestmark = pytest.mark.e2e



# Two ECS nodes tagged as ACK tags its nodes (the inventory's k8s_nodes group), a pod vSwitch for Terway's ENIs
# (named in the stack's `kubernetes` output, where the k8s_node role looks for it).
PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud
from pulumi_alicloud import ecs, vpc

network = vpc.Network("vpc", vpc_name="cluster-vpc", cidr_block="10.6.0.0/16")
nodes = vpc.Switch("vsw-nodes", vpc_id=network.id, cidr_block="10.6.0.0/24", zone_id="cn-hangzhou-h",
                   vswitch_name="nodes")
pods = vpc.Switch("vsw-pods", vpc_id=network.id, cidr_block="10.6.32.0/20", zone_id="cn-hangzhou-h",
                  vswitch_name="pods")
group = ecs.SecurityGroup("sg", vpc_id=network.id, security_group_name="cluster")
ecs.SecurityGroupRule("sg-vpc", security_group_id=group.id, type="ingress", ip_protocol="all",
                      port_range="-1/-1", cidr_ip="10.6.0.0/16")
instances = {name: ecs.Instance(name, instance_name=name, vswitch_id=nodes.id, private_ip=ip,
                                instance_type="ecs.g7.large", image_id="ubuntu_22_04_x64_20G_alibase_20240101.vhd",
                                security_groups=[group.id], tags={"ack.aliyun.com": "c-playbook"})
             for name, ip in (("node-1", "10.6.0.10"), ("node-2", "10.6.0.11"))}
pulumi.export("instances", {name: inst.id for name, inst in instances.items()})
pulumi.export("kubernetes", {"datapath": "terway-eniip", "pod_vswitch_ids": [pods.id]})
"""

WORKLOAD = """
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
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    args: [netexec, --http-port=8080]
    ports: [{containerPort: 8080}]
"""


def cluster_playbook(stack: Stack, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**stack.env, "ACKLAB_LAB": stack.name, "ACKLAB_PROJECT": str(stack.project),
           "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(stack.backend / "ansible-tmp"),
           "ANSIBLE_REMOTE_TEMP": str(stack.backend / "ansible-tmp")}
    start = time.monotonic()
    result = subprocess.run(["ansible-playbook", str(ANSIBLE / "cluster.yml"), *extra], cwd=ANSIBLE, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result, time.monotonic() - start


def kubectl(lab: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([str(VENV / "bin" / "kubectl"), "--kubeconfig", str(kubeconfig_path(lab)), *args],
                            input=stdin, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def ready_nodes(lab: str) -> list[str]:
    nodes = json.loads(kubectl(lab, "get", "nodes", "-o", "json"))["items"]
    return sorted(n["metadata"]["name"] for n in nodes
                  if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]))


def running_pods(lab: str) -> dict[str, dict]:
    pods = json.loads(kubectl(lab, "get", "pods", "-o", "json"))["items"]
    return {p["metadata"]["name"]: p for p in pods
            if p["status"].get("phase") == "Running" and p["status"].get("podIP")}


def acklab_clean(lab: str) -> None:
    subprocess.run([str(VENV / "bin" / "acklab"), "clean", "--lab", lab], capture_output=True, text=True,
                   timeout=120, check=True)


def test_cluster_playbook_nodes_ready_service_answers_idempotent(lab, tmp_path: Path, root_unchanged):
    stack = Stack(temp_project(tmp_path, PROGRAM), lab, tmp_path)
    stack.init()
    try:
        stack.run("up", "--yes")
        netns = {name: netns_name(lab, instance_id) for name, instance_id in stack.outputs()["instances"].items()}

        first, first_seconds = cluster_playbook(stack)
        totals = recap(first.stdout)
        assert totals["failed"] == 0 and totals["changed"] == 3, first.stdout  # the control plane, two nodes
        assert len(control_planes(lab)) == 1
        wait_for(lambda: ready_nodes(lab) == ["node-1", "node-2"], "node-1 and node-2 Ready", timeout=60)
        node = json.loads(kubectl(lab, "get", "node", "node-1", "-o", "json"))
        assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "ecs.g7.large"
        assert node["spec"]["providerID"].startswith("cn-hangzhou.i-")

        kubectl(lab, "apply", "-f", "-", stdin=WORKLOAD)
        wait_for(lambda: len(running_pods(lab)) == 3, "web-* and client Running", timeout=60)
        web = {n: p for n, p in running_pods(lab).items() if n.startswith("web-")}
        assert all(p["status"]["podIP"].startswith("10.6.") for p in web.values())  # Terway: the pod vSwitch
        cluster_ip = json.loads(kubectl(lab, "get", "service", "web", "-o", "json"))["spec"]["clusterIP"]
        answers: set[str] = set()

        def answered(source: str) -> bool:
            body = k.http_get(source, cluster_ip, 80, "/hostname")
            if body:
                answers.add(body)
            return bool(body)

        wait_for(lambda: answered(netns["node-1"]), "the ClusterIP Service from node-1", timeout=20)
        client = {r.pod.name: r for r in load_records(lab).values()}["client"]
        wait_for(lambda: answered(client.netns), "the ClusterIP Service from the client pod", timeout=20)
        assert answers <= set(web), answers

        second, second_seconds = cluster_playbook(stack)
        assert recap(second.stdout)["changed"] == 0, second.stdout
        print(f"\ncluster.yml: first run {first_seconds:.1f}s, second run {second_seconds:.1f}s (changed=0)")

        # a component that died is started again, and only that node reports a change
        proxy = KubeProxyDaemon(lab, "node-2", netns["node-2"])
        killed = proxy.pid()
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: proxy.pid() is None, "node-2's kube-proxy gone")
        third, _ = cluster_playbook(stack)
        assert recap(third.stdout)["changed"] == 1 and "changed: [node-2" in third.stdout, third.stdout
        assert proxy.pid() not in (None, killed)
        wait_for(lambda: answered(netns["node-2"]), "the ClusterIP Service from node-2", timeout=20)

        down, _ = cluster_playbook(stack, "-e", "cluster_state=absent")
        assert recap(down.stdout)["changed"] == 3, down.stdout
        assert control_planes(lab) == []
    finally:
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
        acklab_clean(lab)
    assert list_namespaces(mark(lab)) == []
