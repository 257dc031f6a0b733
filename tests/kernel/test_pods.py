"""Pods on the real kernel, per datapath: every interconnect with positive and negative (security group)
probes, TCP (HTTP) and UDP, declared ports only, convergence after a manifest change, nothing left after clean.
"""

from __future__ import annotations

import os

import pytest

from acklab.k8s.agent import AgentHandle, _alive
from acklab.k8s.plan import Network
from acklab.k8s.pods import load_records
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark
from tests import k8stools as k
from tests.labtools import ProbeServer, clean_lab, probe_tcp, wait_for

pytestmark = pytest.mark.kernel

NODE_IPS = {"node-1": "192.168.1.10", "node-2": "192.168.1.11"}
ECS3 = "192.168.2.10"


def vxlan_cluster(lab: str):
    _, nodes, ecs3 = k.build_vpc(lab)
    network = Network(lab, "vxlan", k.node_list(nodes, {"node-1": "10.244.0.0/24", "node-2": "10.244.1.0/24"}),
                      "10.244.0.0/16")
    return network, nodes, ecs3


MANIFESTS = k.MANIFESTS + k.pinned_pod("a", "node-1") + k.pinned_pod("b", "node-1") + k.pinned_pod("c", "node-2")


def pods_by_name(lab: str):
    return {r.pod.name: r for r in load_records(lab).values()}


def test_vxlan_pod_interconnects(lab, root_unchanged):
    network, nodes, ecs3 = vxlan_cluster(lab)
    changes = k.converge(network, MANIFESTS)
    assert any("pod demo/a" in c for c in changes)
    pods = pods_by_name(lab)
    a, b, c = pods["a"], pods["b"], pods["c"]
    assert (a.node, b.node, c.node) == ("node-1", "node-1", "node-2")
    assert a.ip.startswith("10.244.0.") and c.ip.startswith("10.244.1.")
    assert Namespace(a.netns).run(["ip", "-o", "link", "show", "eth0"]).stdout.count("mtu 1450") == 1

    # pod ↔ pod, same node and other node: HTTP (TCP) and UDP, source addresses kept inside the cluster
    assert k.http_get(a.netns, b.ip, 8080, "/hostname") == "b"
    assert k.http_get(a.netns, c.ip, 8080, "/clientip").startswith(f"{a.ip}:")
    assert k.udp_ask(c.netns, a.ip, 8081) == "a"
    assert k.http_get(c.netns, a.ip, 8080, "/echo?msg=over-vxlan") == "over-vxlan"
    # node ↔ pod
    assert k.http_get(nodes[1].namespace.name, a.ip, 8080, "/hostname") == "a"
    assert k.udp_ask(nodes[0].namespace.name, c.ip, 8081) == "c"
    # declared ports only
    assert k.http_get(a.netns, c.ip, 9090, "/hostname", timeout=1) is None
    assert k.udp_ask(a.netns, c.ip, 8080, timeout=0.5) is None

    with ProbeServer(ecs3.namespace.name, tcp=(80,), udp=(53,)):
        # pod → ECS: masqueraded to the node's address, so the ECS's group must admit the node
        assert not probe_tcp(a.netns, ECS3, 80)
        assert k.udp_ask(a.netns, ECS3, 53, timeout=0.5) is None
        k.allow(lab, k.ECS_SG, "sgr-00000001", "udp", 53, "192.168.1.0/24")
        k.allow(lab, k.ECS_SG, "sgr-00000003", "tcp", 80, "192.168.1.0/24")
        assert k.udp_ask(a.netns, ECS3, 53) == "hello 192.168.1.10"  # the node's address: flannel's ip-masq
        assert probe_tcp(a.netns, ECS3, 80)
        k.revoke(lab, k.ECS_SG, "sgr-00000001")
        k.revoke(lab, k.ECS_SG, "sgr-00000003")
        assert k.udp_ask(a.netns, ECS3, 53, timeout=0.5) is None
        assert not probe_tcp(a.netns, ECS3, 80)
    # ECS → pod: an overlay's pod addresses are not routed by the VPC, even with a rule
    k.allow(lab, k.NODE_SG, "sgr-00000002", "tcp", 8080, "0.0.0.0/0")
    assert k.http_get(ecs3.namespace.name, a.ip, 8080, "/hostname", timeout=1) is None


def test_changed_manifests_converge_and_second_run_changes_nothing(lab):
    network, _, _ = vxlan_cluster(lab)
    k.converge(network, MANIFESTS)
    assert k.converge(network, MANIFESTS) == []
    before = pods_by_name(lab)
    web = sorted(n for n in before if n.startswith("web-"))
    assert len(web) == 3

    scaled = MANIFESTS.replace("replicas: 3", "replicas: 1").replace(k.pinned_pod("b", "node-1"), "")
    changes = k.converge(network, scaled + k.pinned_pod("d", "node-2"))
    after = pods_by_name(lab)
    left = [n for n in after if n.startswith("web-")]
    assert len(left) == 1 and left[0] in web  # scaling down keeps one of the running pods
    assert "b" not in after and "d" in after
    assert not Namespace(before["b"].netns).exists()
    assert any("removed" in c for c in changes)
    assert after["a"].ip == before["a"].ip  # pods that stay keep their address
    a = after["a"]
    assert k.http_get(a.netns, after["d"].ip, 8080, "/hostname") == "d"
    assert k.http_get(a.netns, before["b"].ip, 8080, "/hostname", timeout=1) is None
    status = AgentHandle(lab, "node-1", network.node("node-1").netns).status()
    assert sorted(status["listening"]) == sorted(k for k, r in load_records(lab).items() if r.node == "node-1")
    assert k.converge(network, scaled + k.pinned_pod("d", "node-2")) == []


def test_clean_removes_pods_agents_and_state(lab):
    network, _, _ = vxlan_cluster(lab)
    k.converge(network, MANIFESTS)
    agent = AgentHandle(lab, "node-1", network.node("node-1").netns)
    pid = agent.pid()
    assert pid is not None
    assert any("-pod-" in ns.name for ns in list_namespaces(mark(lab)))
    clean_lab(lab)
    assert list_namespaces(mark(lab)) == []
    assert not _alive(pid)
    assert not os.path.exists(f"/run/acklab/{lab}")


def test_status_exec_and_iperf3_in_pods(lab):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from acklab.k8s.pods import start_iperf3, stop_iperf3

    network, _, _ = vxlan_cluster(lab)
    k.converge(network, MANIFESTS)
    acklab = str(Path(sys.executable).parent / "acklab")
    status = json.loads(subprocess.run([acklab, "status", "--lab", lab, "--json"], check=True, capture_output=True,
                                       text=True).stdout)
    pods = {f"{p['namespace']}/{p['name']}": p for p in status["pods"]}
    assert len(pods) == 6
    a = pods["demo/a"]
    assert (a["node"], a["labels"], a["netns"]) == ("node-1", {"app": "a"}, pods_by_name(lab)["a"].netns)
    assert a["ports"] == ["8080/TCP", "8081/UDP"]
    shown = subprocess.run([acklab, "exec", "--lab", lab, "demo/a", "--", "ip", "-o", "-4", "addr", "show", "eth0"],
                           check=True, capture_output=True, text=True).stdout
    assert f"inet {a['ip']}/24" in shown
    missing = subprocess.run([acklab, "exec", "--lab", lab, "demo/nope", "--", "true"], capture_output=True, text=True)
    assert missing.returncode == 1 and "no pod 'demo/nope'" in missing.stderr

    pid = start_iperf3(lab, a["netns"])
    try:
        result = Namespace(pods["demo/c"]["netns"]).run(["iperf3", "-c", a["ip"], "-t", "1", "-J"], timeout=30)
        assert json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"] > 1e8
    finally:
        stop_iperf3(lab, a["netns"])
    wait_for(lambda: not _alive(pid), "iperf3 to stop")
