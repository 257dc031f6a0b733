"""Pulumi up, then the playbook's network_policy role enforces the lab's policies after pod_network: policies
from the manifests folder, a second run changes nothing, an invalid policy fails the play with a clear error
and changes nothing."""

from __future__ import annotations

import subprocess

import pytest

from acklab.k8s.pods import load_records
from tests import netpoltools as t
from tests.e2e.test_k8s_ansible import ANSIBLE, PROJECT, lab_stack, playbook, recap
from tests.labtools import clean_lab

pytestmark = pytest.mark.e2e

POLICY = t.k8s("web-from-clients", "demo", """
podSelector: {matchLabels: {app: web}}
ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: http}]}]""")
BAD = t.calico("GlobalNetworkPolicy", "bad", "selector: app == 'web'\ningress: [{action: Allow, protocol: TCP, "
               "destination: {ports: ['9000:80']}}]")


@pytest.fixture
def terway_stack(lab, tmp_path):
    stack = lab_stack(lab, tmp_path, "terway-eniip")
    try:
        yield stack
    finally:
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
        clean_lab(lab)


def task_results(output: str, task: str = "network_policy : Enforce the network policies on this node") -> dict:
    """host → ok/changed/failed for one task of a playbook run."""
    block = output.split(f"TASK [{task}]", 1)[1].split("\nTASK [", 1)[0].split("\nPLAY", 1)[0]
    return {line.split("[", 1)[1].split("]", 1)[0]: line.split(":", 1)[0]
            for line in block.splitlines() if line.startswith(("ok: [", "changed: [", "fatal: ["))}


def reachability(lab: str) -> dict[str, bool]:
    pods = {r.pod.name: r for r in load_records(lab).values()}
    web = sorted(n for n in pods if n.startswith("web-"))
    return {"client → web http": t.probe(pods["client-1"].netns, pods[web[0]].ip, "TCP", 8080),
            "client → web udp": t.probe(pods["client-2"].netns, pods[web[1]].ip, "UDP", 8081),
            "web → web http": t.probe(pods[web[1]].netns, pods[web[0]].ip, "TCP", 8080),
            "web → client http": t.probe(pods[web[0]].netns, pods["client-2"].ip, "TCP", 8080)}


def test_playbook_enforces_policies_idempotently(terway_stack, lab, tmp_path):
    terway_stack.run("up", "--yes")
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    (manifests / "demo.yaml").write_text((PROJECT / "labs" / "vxlan" / "k8s" / "demo.yaml").read_text())
    (manifests / "policy.yaml").write_text(POLICY)
    first = playbook(terway_stack, manifests)
    assert task_results(first.stdout) == {"ecs-1": "changed", "ecs-2": "changed"}
    enforced = {"client → web http": True, "client → web udp": False, "web → web http": False,
                "web → client http": True}
    assert reachability(lab) == enforced
    assert recap(playbook(terway_stack, manifests).stdout)["changed"] == 0

    (manifests / "bad.yaml").write_text(BAD)
    env = {**terway_stack.env, "ACKLAB_LAB": lab, "ACKLAB_PROJECT": str(terway_stack.project),
           "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg")}
    result = subprocess.run(["ansible-playbook", str(ANSIBLE / "site.yml"), "-e", f"acklab_manifests={manifests}"],
                            cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    # validated once on the controller: the play stops there, no node is touched
    assert "fatal: [ecs-1 -> localhost]" in result.stdout
    assert "TASK [network_policy : Enforce the network policies on this node]" not in result.stdout
    assert ("projectcalico.org/v3 GlobalNetworkPolicy 'bad': spec.ingress[0].destination.ports[0]: '9000:80' must "
            "be a range 'a:b' with 1 <= a <= b <= 65535") in result.stdout
    assert reachability(lab) == enforced

    (manifests / "bad.yaml").unlink()
    (manifests / "policy.yaml").unlink()
    assert task_results(playbook(terway_stack, manifests).stdout) == {"ecs-1": "changed", "ecs-2": "changed"}
    assert all(reachability(lab).values())
