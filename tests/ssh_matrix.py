"""The SSH mode's connectivity matrix, run with testinfra's ssh backend from inside a lab's controller
namespace (tests/e2e/test_ssh_mode.py starts it; the name keeps plain `pytest tests` from collecting it).

Input: ``ACKLAB_SSH_MATRIX``, a JSON file with the lab, its nodes (name, netns, ip, address) and its pods
(name, node, ip, netns). ``ACKLAB_TESTINFRA_BACKEND`` (default ``ssh`` here) selects the backend.
"""

from __future__ import annotations

import json
import os
from itertools import permutations
from pathlib import Path

import pytest

from acklab.sshmode import controller_address
from tests.sshtools import node_shell

SPEC = json.loads(Path(os.environ["ACKLAB_SSH_MATRIX"]).read_text()) if "ACKLAB_SSH_MATRIX" in os.environ else {}
os.environ.setdefault("ACKLAB_TESTINFRA_BACKEND", "ssh")
LAB = SPEC.get("lab", "")
NODES = {n["name"]: n for n in SPEC.get("nodes", [])}
PODS = {p["name"]: p for p in SPEC.get("pods", [])}

pytestmark = pytest.mark.skipif(not SPEC, reason="run by tests/e2e/test_ssh_mode.py (needs ACKLAB_SSH_MATRIX)")


def shell(node: str):
    return node_shell(LAB, node, NODES[node]["netns"])


def pairs(same_node: bool) -> list[tuple[str, str]]:
    return [(a, b) for a, b in permutations(sorted(PODS), 2)
            if (PODS[a]["node"] == PODS[b]["node"]) == same_node][:4]


@pytest.mark.parametrize("node", sorted(NODES))
def test_node_is_reached_over_ssh_from_the_controller(node):
    host = shell(node).host
    assert host.backend.NAME == "ssh"
    assert host.check_output("printenv SSH_CONNECTION").split()[0] == controller_address()
    assert f"inet {NODES[node]['ip']}/" in host.check_output("ip -o -4 addr show eth0")


@pytest.mark.parametrize(("src", "dst"), pairs(same_node=True))
def test_pod_to_pod_same_node(src, dst):
    body = shell(PODS[src]["node"]).http_get(PODS[dst]["ip"], 8080, "/hostname", netns=PODS[src]["netns"])
    assert body == dst


@pytest.mark.parametrize(("src", "dst"), pairs(same_node=False))
def test_pod_to_pod_other_node(src, dst):
    body = shell(PODS[src]["node"]).http_get(PODS[dst]["ip"], 8080, "/hostname", netns=PODS[src]["netns"])
    assert body == dst


@pytest.mark.parametrize(("node", "pod"), [(n, p) for n in sorted(NODES) for p in sorted(PODS)][:6])
def test_node_to_pod(node, pod):
    assert shell(node).http_get(PODS[pod]["ip"], 8080, "/hostname") == pod


def test_undeclared_port_is_closed():
    pod = sorted(PODS)[0]
    other = next(n for n in sorted(NODES) if n != PODS[pod]["node"])
    assert shell(other).http_get(PODS[pod]["ip"], 8099, "/hostname", deadline=0) is None


def test_nodes_do_not_meet_on_the_management_segment():
    first, second = sorted(NODES)[:2]
    node = shell(first)
    assert node.run(f"ping -c1 -W1 {NODES[second]['ip']}").rc == 0  # through the VPC
    assert node.run(f"ping -c1 -W1 {NODES[second]['address']}").rc != 0  # isolated bridge ports
