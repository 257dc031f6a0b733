"""Pulumi up, then the Ansible playbook builds the pods: inventory from the stack, tasks in node namespaces,
a second run changes nothing, a changed manifest converges, destroy + clean leave nothing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from acklab.k8s.pods import load_records
from netns.kernel.namespace import list_namespaces
from netns.model.names import mark
from tests import k8stools as k
from tests.e2e.test_pulumi_up import PROJECT, Stack, temp_project
from tests.labtools import clean_lab

pytestmark = pytest.mark.e2e

ANSIBLE = PROJECT / "ansible"


def playbook(stack: Stack, manifests: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.env, "ACKLAB_LAB": stack.name, "ACKLAB_PROJECT": str(stack.project),
           "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(stack.backend / "ansible-tmp"),
           "ANSIBLE_REMOTE_TEMP": str(stack.backend / "ansible-tmp")}
    result = subprocess.run(["ansible-playbook", str(ANSIBLE / "site.yml"), "-e",
                             f"acklab_manifests={manifests}", *extra], cwd=ANSIBLE, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def recap(output: str) -> dict[str, int]:
    """Totals of the PLAY RECAP."""
    totals: dict[str, int] = {}
    for key, value in re.findall(r"(\w+)=(\d+)", output.split("PLAY RECAP", 1)[1]):
        totals[key] = totals.get(key, 0) + int(value)
    return totals


def lab_stack(lab: str, tmp_path: Path, datapath: str, cluster: str = "playbook"):
    """The default program on a stack of its own, with the given datapath, its pods built by site.yml (the
    file-driven playbook: `acklab:cluster playbook`; `make up`'s API-driven way is tests/e2e/test_make_up.py's),
    or with ``cluster="api"`` by cluster.yml and the API (tests/e2e/test_ssh_mode.py)."""
    project = temp_project(tmp_path, (PROJECT / "__main__.py").read_text())
    stack = Stack(project, lab, tmp_path)
    stack.init()
    stack.run("config", "set", "acklab:datapath", datapath)
    stack.run("config", "set", "acklab:cluster", cluster)
    return stack


@pytest.fixture
def datapath_stack(request, lab, tmp_path):
    stack = lab_stack(lab, tmp_path, request.param)
    try:
        yield stack
    finally:
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
        clean_lab(lab)


@pytest.mark.parametrize("datapath_stack", ["terway-eniip", "vpc-route", "vxlan"], indirect=True)
def test_playbook_builds_pods_idempotently_and_converges(datapath_stack, lab, tmp_path, root_unchanged):
    stack = datapath_stack
    stack.run("up", "--yes")
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    source = (PROJECT / "labs" / "vxlan" / "k8s" / "demo.yaml").read_text()
    (manifests / "demo.yaml").write_text(source)

    inventory = subprocess.run(["ansible-inventory", "--list"], cwd=ANSIBLE, capture_output=True, text=True,
                               env={**stack.env, "ACKLAB_LAB": lab, "ACKLAB_PROJECT": str(stack.project)},
                               check=True)
    # inventory values come back tagged as untrusted ({"__ansible_unsafe": value})
    hosts = json.loads(inventory.stdout, object_hook=lambda d: d.get("__ansible_unsafe", d))
    assert sorted(hosts["k8s_nodes"]["hosts"]) == ["ecs-1", "ecs-2"]
    assert hosts["ecs"]["hosts"] == ["ecs-3"]
    assert hosts["_meta"]["hostvars"]["ecs-1"]["acklab_netns"].startswith(mark(lab))

    first = playbook(stack, manifests)
    # per node: its pods (pod_network) and kube-proxy's base chains (kube_proxy; the manifests have no Service)
    assert recap(first.stdout)["changed"] == 4 and recap(first.stdout)["failed"] == 0
    pods = {r.pod.name: r for r in load_records(lab).values()}
    assert pods["client-1"].node == "ecs-1" and pods["client-2"].node == "ecs-2"
    web = sorted(n for n in pods if n.startswith("web-"))
    assert len(web) == 3
    assert k.http_get(pods["client-1"].netns, pods["client-2"].ip, 8080, "/hostname") == "client-2"
    assert k.udp_ask(pods["client-2"].netns, pods[web[0]].ip, 8081) == web[0]

    # the connection plugin runs ad-hoc tasks inside each node's namespace
    adhoc = subprocess.run(["ansible", "k8s_nodes", "-m", "ansible.builtin.command", "-a", "ip -o -4 addr show eth0"],
                           cwd=ANSIBLE, capture_output=True, text=True, check=True,
                           env={**stack.env, "ACKLAB_LAB": lab, "ACKLAB_PROJECT": str(stack.project)})
    assert "inet 192.168.1.10/24" in adhoc.stdout and "inet 192.168.1.11/24" in adhoc.stdout

    second = playbook(stack, manifests)
    assert recap(second.stdout)["changed"] == 0

    (manifests / "demo.yaml").write_text(source.replace("replicas: 3", "replicas: 1"))
    third = playbook(stack, manifests)
    assert recap(third.stdout)["changed"] >= 1
    assert len([r for r in load_records(lab).values() if r.pod.name.startswith("web-")]) == 1
    assert recap(playbook(stack, manifests).stdout)["changed"] == 0

    stack.run("destroy", "--yes")
    clean_lab(lab)
    assert list_namespaces(mark(lab)) == []


@pytest.mark.parametrize("datapath_stack", ["vxlan"], indirect=True)
def test_bad_manifest_fails_the_play_with_a_clear_error(datapath_stack, lab, tmp_path):
    vxlan_stack = datapath_stack
    vxlan_stack.run("up", "--yes")
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    (manifests / "bad.yaml").write_text(k.MANIFESTS.replace("protocol: UDP", "protocol: ICMP"))
    env = {**vxlan_stack.env, "ACKLAB_LAB": lab, "ACKLAB_PROJECT": str(vxlan_stack.project),
           "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg")}
    result = subprocess.run(["ansible-playbook", str(ANSIBLE / "site.yml"), "-e", f"acklab_manifests={manifests}"],
                            cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Deployment 'demo/web' (bad.yaml): spec.template.spec.containers[0].ports[1].protocol: 'ICMP' must be " \
        "one of TCP, UDP, SCTP" in result.stdout
    assert not any("-pod-" in ns.name for ns in list_namespaces(mark(lab)))
