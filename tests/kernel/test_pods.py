"""Pods on the real kernel, per datapath: every interconnect with positive and negative (security group)
probes, TCP (HTTP) and UDP, declared ports only, convergence after a manifest change, nothing left after clean.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from acklab.k8s.realize.pod_agent import AgentHandle
from acklab.k8s.realize.pod_network import load_records
from netns.kernel.namespace import Namespace, alive, list_namespaces
from netns.model.names import mark
from tests import k8stools as k
from tests.labtools import ProbeServer, clean_lab, probe_tcp, wait_for

pytestmark = pytest.mark.kernel

NODE_IPS = {"node-1": "192.168.1.10", "node-2": "192.168.1.11"}
ECS3 = "192.168.2.10"


def vxlan_cluster(lab: str):
    return k.build_cluster(lab, "vxlan")


MANIFESTS = k.MANIFESTS + k.pinned_pod("a", "node-1") + k.pinned_pod("b", "node-1") + k.pinned_pod("c", "node-2")


def pods_by_name(lab: str):
    return {r.pod.name: r for r in load_records(lab).values()}


# What differs per datapath: the source an ECS sees from a pod (the SG rule must admit it), and whether the
# VPC routes pod addresses at all (an overlay's are not, so ECS → pod fails even with a rule).
SOURCE_SEEN_BY_ECS = {"vxlan": "node", "vpc-route": "pod", "terway-eniip": "pod"}
POD_SOURCES = {"vxlan": "192.168.1.0/24", "vpc-route": "10.244.0.0/16", "terway-eniip": k.POD_VSWITCH_CIDR}
VPC_ROUTES_PODS = {"vxlan": False, "vpc-route": True, "terway-eniip": True}


@pytest.mark.parametrize("datapath", ["terway-eniip", "vpc-route", "vxlan"])
def test_pod_interconnects(lab, datapath, root_unchanged):
    network, nodes, ecs3 = k.build_cluster(lab, datapath)
    changes = k.converge(network, MANIFESTS)
    assert any("pod demo/a" in c for c in changes)
    pods = pods_by_name(lab)
    a, b, c = pods["a"], pods["b"], pods["c"]
    if datapath == "vpc-route":
        # routed pod blocks are not members of the nodes' group: across nodes, pods need a rule for the pod
        # CIDR, which ACK adds to the cluster's group in this mode
        assert k.http_get(a.netns, c.ip, 8080, "/hostname", timeout=1) is None
        k.allow(lab, k.NODE_SG, "sgr-0000000f", "all", -1, "10.244.0.0/16")
    assert (a.node, b.node, c.node) == ("node-1", "node-1", "node-2")
    if datapath == "terway-eniip":
        assert a.ip in network.node("node-1").eni_ips and c.ip in network.node("node-2").eni_ips
    else:
        assert a.ip.startswith("10.244.0.") and c.ip.startswith("10.244.1.")
    mtu = 1450 if datapath == "vxlan" else 1500
    assert f"mtu {mtu} " in Namespace(a.netns).run(["ip", "-o", "link", "show", "eth0"]).stdout

    # pod ↔ pod, same node and other node: HTTP (TCP) and UDP; the source address is kept inside the cluster
    assert k.http_get(a.netns, b.ip, 8080, "/hostname") == "b"
    assert k.http_get(a.netns, c.ip, 8080, "/clientip").startswith(f"{a.ip}:")
    assert k.udp_ask(c.netns, a.ip, 8081) == "a"
    assert k.http_get(c.netns, b.ip, 8080, "/echo?msg=across") == "across"
    # node ↔ pod (own node and the other node)
    assert k.http_get(nodes[0].namespace.name, a.ip, 8080, "/hostname") == "a"
    assert k.http_get(nodes[1].namespace.name, a.ip, 8080, "/hostname") == "a"
    assert k.udp_ask(nodes[0].namespace.name, c.ip, 8081) == "c"
    # declared ports only
    assert k.http_get(a.netns, c.ip, 9090, "/hostname", timeout=1) is None
    assert k.udp_ask(a.netns, c.ip, 8080, timeout=0.5) is None

    with ProbeServer(ecs3.namespace.name, tcp=(80,), udp=(53,)):
        # pod → ECS in the same VPC: only where the ECS's group admits the source it sees
        assert not probe_tcp(a.netns, ECS3, 80)
        assert k.udp_ask(a.netns, ECS3, 53, timeout=0.5) is None
        k.allow(lab, k.ECS_SG, "sgr-00000001", "udp", 53, POD_SOURCES[datapath])
        k.allow(lab, k.ECS_SG, "sgr-00000003", "tcp", 80, POD_SOURCES[datapath])
        seen = NODE_IPS["node-1"] if SOURCE_SEEN_BY_ECS[datapath] == "node" else a.ip
        assert k.udp_ask(a.netns, ECS3, 53) == f"hello {seen}"
        assert probe_tcp(a.netns, ECS3, 80)
        k.revoke(lab, k.ECS_SG, "sgr-00000001")
        k.revoke(lab, k.ECS_SG, "sgr-00000003")
        assert k.udp_ask(a.netns, ECS3, 53, timeout=0.5) is None
        assert not probe_tcp(a.netns, ECS3, 80)

    # ECS → pod: only with a rule in the node's group (Terway: the ENI's groups), and only if the VPC routes pods
    assert k.http_get(ecs3.namespace.name, a.ip, 8080, "/hostname", timeout=1) is None
    assert k.udp_ask(ecs3.namespace.name, c.ip, 8081, timeout=0.5) is None
    k.allow(lab, k.NODE_SG, "sgr-00000002", "tcp", 8080, "192.168.2.0/24")
    k.allow(lab, k.NODE_SG, "sgr-00000004", "udp", 8081, "192.168.2.0/24")
    reachable = VPC_ROUTES_PODS[datapath]
    assert (k.http_get(ecs3.namespace.name, a.ip, 8080, "/clientip", timeout=1) or "").startswith(
        f"{ECS3}:") is reachable
    assert (k.udp_ask(ecs3.namespace.name, c.ip, 8081, timeout=0.5) == "c") is reachable
    k.revoke(lab, k.NODE_SG, "sgr-00000002")
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
    assert not alive(pid)
    assert not os.path.exists(f"/run/acklab/{lab}")


def test_status_exec_and_iperf3_in_pods(lab):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from acklab.k8s.realize.pod_network import start_iperf3, stop_iperf3

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
    wait_for(lambda: not alive(pid), "iperf3 to stop")


def test_a_pod_namespace_removed_behind_the_labs_back_is_repaired(lab):
    network, _, _ = k.build_cluster(lab, "terway-eniip")
    k.converge(network, MANIFESTS)
    pods = pods_by_name(lab)
    old_inode = Namespace(pods["a"].netns).inode()
    Namespace(pods["a"].netns).remove()  # (the kernel keeps it while the agent's sockets hold it)
    changes = k.converge(network, MANIFESTS)
    assert changes == [f"pod demo/a: {pods['a'].ip} on node-1", "node node-1: pod agent serves 3 pod(s)"]
    assert Namespace(pods["a"].netns).inode() not in (None, old_inode)
    listening = Namespace(pods["a"].netns).run(["ss", "-Hltn", "sport = :8080"]).stdout
    assert "0.0.0.0:8080" in listening  # the agent listens in the new namespace
    assert k.http_get(pods["c"].netns, pods["a"].ip, 8080, "/hostname") == "a"
    assert k.converge(network, MANIFESTS) == []


def test_pods_of_a_node_that_leaves_the_cluster_are_rescheduled(lab):
    network, _, _ = k.build_cluster(lab, "terway-eniip")
    manifests = k.MANIFESTS + k.pinned_pod("a", "node-1")
    k.converge(network, manifests)
    before = pods_by_name(lab)
    on_node2 = [name for name, r in before.items() if r.node == "node-2"]
    assert on_node2
    node2_agent = AgentHandle(lab, "node-2", network.node("node-2").netns)
    agent_pid = node2_agent.pid()

    smaller = dataclasses.replace(network, nodes=(network.node("node-1"),))
    changes = k.converge(smaller, manifests)
    assert "node node-2: left the cluster, pod agent stopped" in changes
    after = pods_by_name(lab)
    assert set(after) == set(before) and {r.node for r in after.values()} == {"node-1"}
    assert all(r.ip in network.node("node-1").eni_ips for r in after.values())
    wait_for(lambda: not alive(agent_pid), "the departed node's agent to stop")
    moved = after[on_node2[0]]
    assert k.http_get(after["a"].netns, moved.ip, 8080, "/hostname") == on_node2[0]
    assert k.converge(smaller, manifests) == []


def test_a_node_given_another_block_keeps_only_the_new_bridge_address(lab):
    """A node that left and joined again may get another podCIDR: cni0 then carries the new block's gateway only
    (flannel's bridge plugin would refuse the node instead)."""
    from acklab.k8s.realize.pod_network import BRIDGE, NodeNetwork

    network, _, _ = k.build_cluster(lab, "vpc-route")
    node = network.nodes[0]
    NodeNetwork(network, node).ensure_base()
    moved = dataclasses.replace(node, pod_cidr="10.244.7.0/24")
    NodeNetwork(dataclasses.replace(network, nodes=(moved,)), moved).ensure_base()
    out = Namespace(node.netns).run(["ip", "-4", "-o", "addr", "show", "dev", BRIDGE]).stdout
    assert [line.split()[3] for line in out.splitlines()] == ["10.244.7.1/24"]
