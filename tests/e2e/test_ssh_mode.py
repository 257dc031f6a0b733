"""SSH mode: the default program on a stack of its own, every node running sshd in its namespace, the
playbook run from the controller namespace with ansible_connection=ssh, then the connectivity matrix with
testinfra's ssh backend (tests/ssh_matrix.py), all over the lab's management segment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from acklab import sshmode
from acklab.k8s.pods import load_records
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark
from tests.e2e.test_k8s_ansible import ANSIBLE, lab_stack, recap
from tests.e2e.test_pulumi_up import PROJECT
from tests.labtools import clean_lab

pytestmark = pytest.mark.e2e

PYTHON = Path(sys.executable)


def sshmode_cli(stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**stack.env, "ACKLAB_PROJECT": str(stack.project), "ANSIBLE_LOCAL_TEMP": str(stack.project / "tmp"),
           "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg")}
    return subprocess.run([str(PYTHON), "-m", "acklab.sshmode", *args], cwd=ANSIBLE, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def playbook_over_ssh(stack, lab: str, manifests: Path) -> subprocess.CompletedProcess[str]:
    result = sshmode_cli(stack, "exec", "--lab", lab, "--", str(PYTHON.parent / "ansible-playbook"),
                         str(ANSIBLE / "site.yml"), "-e", f"acklab_manifests={manifests}")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


# The default lab's datapath in `make test`; ACKLAB_SSH_DATAPATHS=terway-eniip,vpc-route,vxlan runs every one.
DATAPATHS = os.environ.get("ACKLAB_SSH_DATAPATHS", "terway-eniip").split(",")


@pytest.fixture(params=DATAPATHS)
def ssh_lab(request, lab, tmp_path):
    stack = lab_stack(lab, tmp_path, request.param)
    try:
        stack.run("up", "--yes")
        yield stack
    finally:
        sshmode_cli(stack, "down", "--lab", lab)
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
        clean_lab(lab)


def test_playbook_and_matrix_over_ssh(ssh_lab, lab, tmp_path, root_unchanged):
    stack = ssh_lab
    up = sshmode_cli(stack, "up", "--lab", lab)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "sshd on 198.18.0.11" in up.stdout and "sshd on 198.18.0.12" in up.stdout
    lab_ssh = sshmode.load(lab)
    assert [n.name for n in lab_ssh.nodes] == ["ecs-1", "ecs-2"]
    for node in lab_ssh.nodes:  # each sshd runs inside its node's namespace, none in the host's
        pid = int((sshmode.ssh_dir(lab) / node.name / "sshd.pid").read_text())
        assert pid in Namespace(node.netns).pids()
    assert sshmode_cli(stack, "up", "--lab", lab).stdout.strip().splitlines()[:-1] == []  # idempotent

    manifests = tmp_path / "k8s"
    manifests.mkdir()
    (manifests / "demo.yaml").write_text((PROJECT / "labs" / "default" / "k8s" / "demo.yaml").read_text())
    first = playbook_over_ssh(stack, lab, manifests)
    # every node converged its pods (and kube-proxy's rules for the manifests' Services) over SSH
    assert recap(first.stdout)["failed"] == 0 and recap(first.stdout)["changed"] >= 2
    assert "changed: [ecs-1]" in first.stdout and "changed: [ecs-2]" in first.stdout
    for node in lab_ssh.nodes:  # the tasks came in over SSH, from the controller's address
        log = (sshmode.ssh_dir(lab) / node.name / "sshd.log").read_text()
        assert f"Accepted publickey for root from {sshmode.controller_address()}" in log
    assert recap(playbook_over_ssh(stack, lab, manifests).stdout)["changed"] == 0

    records = load_records(lab)
    assert {r.node for r in records.values()} == {"ecs-1", "ecs-2"}
    spec = {"lab": lab,
            "nodes": [{"name": n.name, "netns": n.netns, "address": n.address,
                       "ip": {"ecs-1": "192.168.1.10", "ecs-2": "192.168.1.11"}[n.name]} for n in lab_ssh.nodes],
            "pods": [{"name": r.pod.name, "node": r.node, "ip": r.ip, "netns": r.netns} for r in records.values()]}
    (tmp_path / "matrix.json").write_text(json.dumps(spec))
    matrix = subprocess.run(
        [str(PYTHON), "-m", "acklab.sshmode", "exec", "--lab", lab, "--", str(PYTHON), "-m", "pytest", "-q",
         "-p", "no:cacheprovider", str(PROJECT / "tests" / "ssh_matrix.py")],
        cwd=PROJECT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ACKLAB_SSH_MATRIX": str(tmp_path / "matrix.json"), "ACKLAB_TESTINFRA_BACKEND": "ssh"})
    assert matrix.returncode == 0, matrix.stdout + matrix.stderr
    assert " passed" in matrix.stdout and "skipped" not in matrix.stdout

    down = sshmode_cli(stack, "down", "--lab", lab)
    assert down.returncode == 0, down.stderr
    assert not Namespace(sshmode.controller_netns(lab)).exists()
    assert not sshmode.ssh_dir(lab).exists()
    assert not [ns for ns in list_namespaces(mark(lab)) if ns.name.endswith("-mgmt")]
