"""SSH mode on the API way: the default program on a stack of its own (its cluster on the API), the control plane
built from the host (`cluster.yml --tags control_plane`: ACK's managed part is not on the user's hosts), every node
running sshd in its namespace, then the nodes' part of cluster.yml run from the controller namespace with
ansible_connection=ssh: the k8s_node role runs ON each node (inside its namespace) and reaches the API server
through the VPC. Idempotent second run; workloads through `kubectl apply`; the connectivity matrix with testinfra's
ssh backend (tests/ssh_matrix.py); a node taken down and joined again over SSH; all over the lab's management
segment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from acklab import sshmode
from acklab.k8s.cluster_install import VPC_ADMIN_KUBECONFIG
from acklab.k8s.realize.pod_network import load_records
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark
from netns.realize.control_plane import control_planes, kubeconfig_path
from tests.ansibletools import ANSIBLE, default_stack, recap
from tests.e2e.test_pulumi_up import PROJECT, VENV
from tests.labtools import clean_lab, wait_for

pytestmark = pytest.mark.e2e

PYTHON = Path(sys.executable)
PLAYBOOK = str(PYTHON.parent / "ansible-playbook")
NODE_IPS = {"ecs-1": "192.168.1.10", "ecs-2": "192.168.1.11"}  # the default program's Kubernetes nodes


def ansible_env(stack) -> dict[str, str]:
    return {**stack.env, "ACKLAB_LAB": stack.name, "ACKLAB_PROJECT": str(stack.project),
            "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(stack.project / "tmp")}


def sshmode_cli(stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PYTHON), "-m", "acklab.sshmode", *args], cwd=ANSIBLE, env=ansible_env(stack),
                          capture_output=True, text=True, timeout=timeout, check=False)


def cluster_from_host(stack, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """cluster.yml from the host (the acklab.lab.netns connection), as `make up` runs it."""
    result = subprocess.run([PLAYBOOK, str(ANSIBLE / "cluster.yml"), *extra], cwd=ANSIBLE, env=ansible_env(stack),
                            capture_output=True, text=True, timeout=300, check=False)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def cluster_over_ssh(stack, lab: str, *extra: str,
                     check: bool = True) -> tuple[subprocess.CompletedProcess[str], float]:
    """cluster.yml from the controller namespace (ACKLAB_CONNECTION=ssh); with ``check``, it must succeed."""
    start = time.monotonic()
    result = sshmode_cli(stack, "exec", "--lab", lab, "--", PLAYBOOK, str(ANSIBLE / "cluster.yml"), *extra)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result, time.monotonic() - start


def kubectl(lab: str, *args: str) -> str:
    """kubectl through the lab's kubeconfig on the host (the user's view of the cluster)."""
    result = subprocess.run([str(VENV / "bin" / "kubectl"), "--kubeconfig", str(kubeconfig_path(lab)), *args],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def ready_nodes(lab: str) -> list[str]:
    nodes = json.loads(kubectl(lab, "get", "nodes", "-o", "json"))["items"]
    return sorted(n["metadata"]["name"] for n in nodes
                  if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", [])))


def demo_pods(lab: str) -> dict[str, dict]:
    """The demo namespace's pods, Running with an address (through the host's kubeconfig)."""
    pods = json.loads(kubectl(lab, "get", "pods", "-n", "demo", "-o", "json"))["items"]
    return {p["metadata"]["name"]: p for p in pods
            if p["status"].get("phase") == "Running" and p["status"].get("podIP")}


# The default lab's datapath in `make test`; ACKLAB_SSH_DATAPATHS=terway-eniip,vpc-route,vxlan runs every one.
DATAPATHS = os.environ.get("ACKLAB_SSH_DATAPATHS", "terway-eniip").split(",")


@pytest.fixture(params=DATAPATHS)
def ssh_lab(request, lab, tmp_path):
    stack = default_stack(lab, tmp_path, request.param)
    try:
        stack.run("up", "--yes")
        yield stack
    finally:
        sshmode_cli(stack, "down", "--lab", lab)
        cluster_from_host(stack, "-e", "cluster_state=absent", check=False)
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
        clean_lab(lab)


def test_cluster_nodes_over_ssh_and_matrix(ssh_lab, lab, tmp_path, root_unchanged):
    stack = ssh_lab
    # ACK's managed part from the host: the control plane in the nodes' vSwitch, no node yet
    control = cluster_from_host(stack, "--tags", "control_plane")
    assert recap(control.stdout)["changed"] == 1, control.stdout
    (plane,) = control_planes(lab)
    assert ready_nodes(lab) == []

    up = sshmode_cli(stack, "up", "--lab", lab)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "sshd on 198.18.0.11" in up.stdout and "sshd on 198.18.0.12" in up.stdout
    lab_ssh = sshmode.load(lab)
    assert [n.name for n in lab_ssh.nodes] == ["ecs-1", "ecs-2"]
    for node in lab_ssh.nodes:  # each sshd runs inside its node's namespace, none in the host's
        pid = int((sshmode.ssh_dir(lab) / node.name / "sshd.pid").read_text())
        assert pid in Namespace(node.netns).pids()
    assert sshmode_cli(stack, "up", "--lab", lab).stdout.strip().splitlines()[:-1] == []  # idempotent

    # the nodes' part over SSH: the module runs on each node (not delegated to the controller), inside its
    # namespace, and reaches the API server through the VPC with an in-VPC admin kubeconfig
    first, first_seconds = cluster_over_ssh(stack, lab, "--limit", "k8s_nodes")
    totals = recap(first.stdout)
    assert totals["failed"] == 0 and totals["changed"] == 2, first.stdout
    assert "changed: [ecs-1]" in first.stdout and "changed: [ecs-2]" in first.stdout, first.stdout
    assert "-> localhost" not in first.stdout
    for node in lab_ssh.nodes:  # the tasks came in over SSH, from the controller's address
        log = (sshmode.ssh_dir(lab) / node.name / "sshd.log").read_text()
        assert f"Accepted publickey for root from {sshmode.controller_address()}" in log
    vpc_admin = yaml.safe_load((plane.root / VPC_ADMIN_KUBECONFIG).read_text())
    assert vpc_admin["clusters"][0]["cluster"]["server"] == f"https://{plane.read().address}:6443"
    wait_for(lambda: ready_nodes(lab) == ["ecs-1", "ecs-2"], "ecs-1 and ecs-2 Ready", timeout=60)

    second, second_seconds = cluster_over_ssh(stack, lab, "--limit", "k8s_nodes")
    assert recap(second.stdout)["changed"] == 0, second.stdout
    print(f"\ncluster.yml over SSH: first run {first_seconds:.1f}s, second run {second_seconds:.1f}s (changed=0)")

    # the control plane is never built over SSH: its play fails at once in the controller namespace
    whole, _ = cluster_over_ssh(stack, lab, check=False)
    assert whole.returncode != 0 and "installed from the host" in whole.stdout, whole.stdout + whole.stderr

    # workloads through the API; the pods' records come from the node agents
    kubectl(lab, "apply", "-f", str(PROJECT / "labs" / "default" / "k8s" / "demo.yaml"))
    wait_for(lambda: len(demo_pods(lab)) == 5, "the demo pods Running", timeout=90)
    wait_for(lambda: len([r for r in load_records(lab).values() if r.ip]) == 5, "5 pod records", timeout=30)
    records = load_records(lab)
    assert {r.node for r in records.values()} == {"ecs-1", "ecs-2"}
    spec = {"lab": lab,
            "nodes": [{"name": n.name, "netns": n.netns, "address": n.address, "ip": NODE_IPS[n.name]}
                      for n in lab_ssh.nodes],
            "pods": [{"name": r.pod.name, "node": r.node, "ip": r.ip, "netns": r.netns} for r in records.values()]}
    (tmp_path / "matrix.json").write_text(json.dumps(spec))
    matrix = subprocess.run(
        [str(PYTHON), "-m", "acklab.sshmode", "exec", "--lab", lab, "--", str(PYTHON), "-m", "pytest", "-q",
         "-p", "no:cacheprovider", str(PROJECT / "tests" / "ssh_matrix.py")],
        cwd=PROJECT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ACKLAB_SSH_MATRIX": str(tmp_path / "matrix.json"), "ACKLAB_TESTINFRA_BACKEND": "ssh"})
    assert matrix.returncode == 0, matrix.stdout + matrix.stderr
    assert " passed" in matrix.stdout and "skipped" not in matrix.stdout

    # a node leaves over SSH (drained, its components stopped, its Node deleted through the VPC), then joins again
    leave, _ = cluster_over_ssh(stack, lab, "--limit", "ecs-2", "-e", "cluster_state=absent")
    assert recap(leave.stdout)["changed"] == 1 and "changed: [ecs-2]" in leave.stdout, leave.stdout
    wait_for(lambda: "ecs-2" not in kubectl(lab, "get", "nodes", "-o", "name"), "Node ecs-2 deleted", timeout=20)
    assert not any(r.node == "ecs-2" for r in load_records(lab).values())
    join, _ = cluster_over_ssh(stack, lab, "--limit", "ecs-2")
    assert recap(join.stdout)["changed"] == 1 and "changed: [ecs-2]" in join.stdout, join.stdout
    wait_for(lambda: ready_nodes(lab) == ["ecs-1", "ecs-2"], "ecs-2 Ready again", timeout=60)
    assert recap(cluster_over_ssh(stack, lab, "--limit", "k8s_nodes")[0].stdout)["changed"] == 0

    down = sshmode_cli(stack, "down", "--lab", lab)
    assert down.returncode == 0, down.stderr
    assert not Namespace(sshmode.controller_netns(lab)).exists()
    assert not sshmode.ssh_dir(lab).exists()
    assert not [ns for ns in list_namespaces(mark(lab)) if ns.name.endswith("-mgmt")]
