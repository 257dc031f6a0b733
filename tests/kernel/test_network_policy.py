"""NetworkPolicy on the real kernel: truth tables over namespaces x, y, z times pods a, b, c (the upstream netpol e2e
layout), per datapath. Each case applies its policies (replacing the previous case's), probes every pod pair at
once, and compares the matrix with the reference evaluator's and, where given, with a hand-written expectation.

Pods a and c run on node-1, b on node-2: every matrix has same-node and cross-node pairs.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from acklab.k8s.netpol_kernel import read_applied
from netns.kernel.namespace import Namespace
from netns.model.errors import ValidationError
from tests import k8stools as k
from tests import netpoltools as t
from tests.labtools import clean_lab, new_lab
from tests.netpoltools import CASES, DENY_ALL_X, Rule, calico, k8s, ns

pytestmark = pytest.mark.kernel

SUBSET = ("deny-all-ingress", "pod-and-namespace-selector", "named-port", "egress-ip-block-except",
          "calico-pass-skips-k8s-deny")


def fill(h: t.Harness, text: str) -> str:
    """@ns/pod@ → the pod's address, @cidr@ → a block holding every pod."""
    for key, record in h.records.items():
        text = text.replace(f"@{key}@", record.ip)
    return text.replace("@cidr@", "192.168.0.0/16" if h.network.datapath == "terway-eniip" else "10.244.0.0/16")


def _cluster(datapath: str):
    lab = new_lab()
    try:
        network, _, _ = k.build_cluster(lab, datapath)
        if datapath == "vpc-route":  # routed pod blocks need the group rule ACK adds in this mode
            k.allow(lab, k.NODE_SG, "sgr-0000000f", "all", -1, "10.244.0.0/16")
        h = t.Harness(lab, network)
        h.setup_pods()
        yield h
    finally:
        clean_lab(lab)


@pytest.fixture(scope="module")
def harness():
    """The terway-eniip cluster every case runs on."""
    yield from _cluster("terway-eniip")


@pytest.fixture(scope="module", params=["vpc-route", "vxlan"])
def bridged(request):
    """The bridge datapaths, where a subset of the cases runs."""
    yield from _cluster(request.param)


def check(h: t.Harness, policies: str, protocol: str, port: int, rule: Rule | None) -> None:
    got = h.matrix(protocol, port)
    expected = h.expected(policies, protocol, port)
    assert got == expected, f"{protocol}/{port} probed:\n{t.show(got)}\nevaluator:\n{t.show(expected)}"
    if rule is not None:
        by_hand = t.hand(rule)
        assert expected == by_hand, f"{protocol}/{port} evaluator:\n{t.show(expected)}\nby hand:\n{t.show(by_hand)}"


def run_case(h: t.Harness, case) -> None:
    policies = fill(h, case.policies)
    h.apply(policies)
    assert h.apply(policies) == []  # no-op when unchanged
    for protocol, port, rule in case.probes:
        check(h, policies, protocol, port, rule)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_truth_table(harness, case):
    run_case(harness, case)


BRIDGED_CASES = [c for c in CASES if c.name in SUBSET]


@pytest.mark.parametrize("case", BRIDGED_CASES, ids=[c.name for c in BRIDGED_CASES])
def test_truth_table_on_bridge_datapaths(bridged, case):
    run_case(bridged, case)


def test_policy_updates_and_deletion(harness):
    allow81 = k8s("allow-port", "x", "podSelector: {matchLabels: {pod: a}}\ningress: [{ports: [{port: 81}]}]")
    harness.apply(allow81)
    check(harness, allow81, "TCP", 80, lambda s, d: d != "x/a")
    allow80 = allow81.replace("port: 81", "port: 80")  # the same policy, updated
    assert harness.apply(allow80)
    check(harness, allow80, "TCP", 80, lambda s, d: True)
    check(harness, allow80, "TCP", 81, lambda s, d: d != "x/a")
    assert harness.apply("") == [f"node {n}: no network policy left, policy chains and ipsets removed"
                                 for n in ("node-1", "node-2")]
    check(harness, "", "TCP", 81, lambda s, d: True)
    applied = read_applied(Namespace(harness.network.node("node-1").netns))
    assert (applied.chains, applied.sets, applied.jump) == ({}, {}, False)  # nothing of ours is left
    assert harness.apply("") == []


def test_namespace_label_update(harness):
    policies = k8s("allow-team", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]""")
    harness.namespace_labels = None
    harness.apply(policies)
    check(harness, policies, "TCP", 80, lambda s, d: d != "x/a")
    harness.namespace_labels = {"y": {"team": "blue"}}
    try:
        assert harness.apply(policies)
        check(harness, policies, "TCP", 80, lambda s, d: d != "x/a" or ns(s) == "y")
    finally:
        harness.namespace_labels = None


def test_pod_label_update(harness):
    policies = k8s("x-a-allows-b", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]""")
    harness.apply(policies)
    check(harness, policies, "TCP", 80, lambda s, d: d != "x/a" or s == "x/b")
    try:
        harness.pod_labels = {"x/b": {"pod": "bb"}, "x/c": {"pod": "b"}}
        assert any("pod x/b" in c for c in harness.setup_pods())  # the pod network re-records the pods
        assert harness.records["x/b"].pod.labels == {"pod": "bb"}
        assert harness.apply(policies)  # the selected set follows the labels
        check(harness, policies, "TCP", 80, lambda s, d: d != "x/a" or s == "x/c")
    finally:
        harness.pod_labels = None
        harness.setup_pods()
    harness.apply(policies)
    check(harness, policies, "TCP", 80, lambda s, d: d != "x/a" or s == "x/b")


def _request(conn: socket.socket) -> bool:
    try:
        conn.sendall(b"GET /hostname HTTP/1.1\r\nHost: p\r\n\r\n")
        return conn.recv(4096).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _open(h: t.Harness, src: str, dst: str) -> socket.socket:
    records = h.records
    conn = Namespace(records[src].netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.settimeout(1.5)
    conn.connect((records[dst].ip, 80))
    return conn


def test_established_flows_a_new_policy_forbids_stop(harness):
    harness.apply("")  # no policy: no rules of ours, so the node does not even track this flow
    untracked = _open(harness, "y/c", "x/a")
    allow_all = k8s("allow-all", "x", "podSelector: {}\ningress: [{}]")
    harness.apply(allow_all)  # tracked from now on
    cut, kept, across = _open(harness, "y/a", "x/a"), _open(harness, "x/b", "x/a"), _open(harness, "z/a", "y/b")
    try:
        policies = allow_all.replace("podSelector: {}", "podSelector: {matchLabels: {pod: b}}") + k8s("only-x", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{podSelector: {}}]}]""") + k8s("deny-egress", "z", "podSelector: {}\npolicyTypes: [Egress]")
        changes = harness.apply(policies)
        assert any("established flow(s) now forbidden were cut" in c for c in changes), changes
        assert not _request(cut)  # y/a → x/a: the new ingress policy forbids it
        assert not _request(across)  # z/a (node-1) → y/b (node-2): the source's new egress policy forbids it
        assert not _request(untracked)  # its next packet is a new flow to the node, and forbidden
        assert _request(kept)  # x/b → x/a: still allowed, still flows
    finally:
        for conn in (cut, kept, across, untracked):
            conn.close()


def test_invalid_policy_changes_nothing(harness):
    good = DENY_ALL_X
    harness.apply(good)
    before = read_applied(Namespace(harness.network.node("node-1").netns))
    bad = good + k8s("bad", "y", "podSelector: {}\ningress: [{ports: [{port: 80, endPort: 70}]}]")
    with pytest.raises(ValidationError, match=r"NetworkPolicy 'y/bad': spec.ingress\[0\].ports\[0\].endPort: 70 "
                                              r"must be >= port 80"):
        harness.apply(bad)
    bad_calico = good + calico("GlobalNetworkPolicy", "bad", "selector: pod == b\ningress: [{action: Allow}]")
    with pytest.raises(ValidationError, match=r"spec\.selector: 'pod == b'"):
        harness.apply(bad_calico)
    assert read_applied(Namespace(harness.network.node("node-1").netns)) == before
    assert harness.apply(good) == []


def test_coexists_with_kube_proxy_chains(harness):
    """Another component's chains and jumps stay; ours is put back first in FORWARD, like Felix does."""
    node = Namespace(harness.network.node("node-1").netns)
    harness.apply(DENY_ALL_X)
    node.run(["iptables", "-N", "KUBE-FORWARD"])
    try:
        node.run(["iptables", "-A", "KUBE-FORWARD", "-m", "mark", "--mark", "0x4000/0x4000", "-j", "ACCEPT"])
        node.run(["iptables", "-I", "FORWARD", "1", "-j", "KUBE-FORWARD"])  # kube-proxy prepends its jumps
        assert harness.apply(DENY_ALL_X)  # our jump is no longer first: put back
        forward = [r for r in node.run(["iptables", "-S", "FORWARD"]).stdout.splitlines() if r.startswith("-A")]
        assert forward == ["-A FORWARD -j cali-FORWARD", "-A FORWARD -j KUBE-FORWARD"]
        assert harness.apply(DENY_ALL_X) == []
        check(harness, DENY_ALL_X, "TCP", 80, lambda s, d: ns(d) != "x")
        harness.apply("")
        assert node.run(["iptables", "-S", "FORWARD"]).stdout.splitlines()[1:] == ["-A FORWARD -j KUBE-FORWARD"]
        assert "-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT" in node.run(
            ["iptables", "-S", "KUBE-FORWARD"]).stdout
    finally:
        node.run(["iptables", "-D", "FORWARD", "-j", "KUBE-FORWARD"], check=False)
        node.run(["iptables", "-X", "KUBE-FORWARD"], check=False)


SERVICE = """
---
apiVersion: v1
kind: Service
metadata: {name: to-x-a, namespace: x}
spec:
  type: NodePort
  selector: {pod: a}
  ports: [{port: 80, targetPort: serve-80-tcp, nodePort: 30080}]
"""


def test_policies_apply_to_service_traffic_after_dnat(harness):
    """kube-proxy DNATs in PREROUTING, so the policy chains see the pod, and the client's own address (SNAT
    comes after FORWARD). Our jump stays before KUBE-FORWARD, which would accept NodePort traffic unchecked."""
    from acklab.k8s import apiserver
    from acklab.k8s.kube_proxy_sync import cluster_pods, sync_node

    nodes = {n.name: n for n in harness.network.nodes}

    def sync(text: str) -> str:
        cluster = harness.cluster(text)
        allocations = apiserver.allocate(harness.lab, cluster.services)
        services = apiserver.with_status(cluster.services, allocations)
        pods = cluster_pods(harness.lab)
        for node in nodes.values():
            sync_node(harness.lab, node.name, node.netns, services, pods, node.ip, k.POD_VSWITCH_CIDR)
        return allocations.cluster_ips.get("x/to-x-a", "")

    def reach(src_netns: str, address: str, port: int) -> bool:
        return t.probe(src_netns, address, "TCP", port, timeout=1.0)

    records = harness.records
    node2 = nodes["node-2"].netns
    only_b = k8s("x-a-allows-b", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]""")
    harness.apply(only_b)
    cluster_ip = sync(SERVICE)
    try:
        assert harness.apply(only_b)  # kube-proxy prepended its jumps on its first sync: ours is put back first
        sync(SERVICE)  # kube-proxy only checks that its jumps exist: it leaves ours first
        forward = Namespace(nodes["node-1"].netns).run(["iptables", "-S", "FORWARD"]).stdout.splitlines()
        assert forward[1] == "-A FORWARD -j cali-FORWARD" and any(r.endswith("-j KUBE-FORWARD") for r in forward[2:])
        assert harness.apply(only_b) == []
        assert reach(records["x/b"].netns, cluster_ip, 80)
        assert not reach(records["y/a"].netns, cluster_ip, 80)
        assert not reach(node2, nodes["node-1"].ip, 30080)  # NodePort from another node: the node is no pod b
        with_nodes = only_b.replace("[{podSelector: {matchLabels: {pod: b}}}]",
                                    "[{podSelector: {matchLabels: {pod: b}}}, {ipBlock: {cidr: 192.168.1.0/24}}]")
        harness.apply(with_nodes)
        assert reach(node2, nodes["node-1"].ip, 30080)  # the client's address, seen before SNAT
        assert not reach(records["y/a"].netns, cluster_ip, 80)
    finally:
        sync("")


SECOND_AGENT = ["FORWARD", "-m", "comment", "--comment", "second-agent"]  # no target: counts packets, decides nothing
ONLY_X_B = k8s("x-a-allows-b", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]""")


def _keep_trying(h: t.Harness, src: str, dst: str, timeout: float, stop: threading.Event) -> list[bool]:
    """New connections from ``src`` to ``dst`` one after another until ``stop``; whether each was established."""
    results = []
    while not stop.is_set():
        results.append(t.probe(h.records[src].netns, h.records[dst].ip, "TCP", 80, timeout=timeout))
    return results


def test_moving_the_jump_back_first_lets_no_forbidden_connection_through(harness):
    """A second agent prepends a rule to FORWARD before every apply, so every apply moves our jump back first,
    while new connections the policy forbids are tried without pause: none may be established meanwhile, and the
    allowed one always is. Moving the jump with two commands (delete, then insert) opened a gap between them
    in which FORWARD had no jump and forwarded everything."""
    harness.apply(ONLY_X_B)
    node = Namespace(harness.network.node("node-1").netns)  # x/a's node: its ingress policy is enforced there
    forbidden = ["y/a", "x/c", "y/b"]  # same node, same namespace, across nodes
    stop = threading.Event()
    rounds = prepended = 0
    try:
        with ThreadPoolExecutor(max_workers=8 * len(forbidden) + 1) as pool:
            # a dropped SYN is not sent again within 0.15 s: each try is one packet, about 150 of them a second
            tries = [pool.submit(_keep_trying, harness, src, "x/a", 0.15, stop) for src in forbidden * 8]
            allowed = pool.submit(_keep_trying, harness, "x/b", "x/a", 2.0, stop)
            try:
                deadline = time.monotonic() + 4.0
                while time.monotonic() < deadline:
                    node.run(["iptables", "-I", SECOND_AGENT[0], "1", *SECOND_AGENT[1:]])
                    prepended += 1
                    assert harness.apply(ONLY_X_B)  # our jump is no longer first: moved back
                    rounds += 1
            finally:
                stop.set()
            leaked = sum(sum(f.result()) for f in tries)
            attempts = sum(len(f.result()) for f in tries)
            allowed_results = allowed.result()
        forward = [r for r in node.run(["iptables", "-S", "FORWARD"]).stdout.splitlines() if r.startswith("-A")]
        assert forward[0] == "-A FORWARD -j cali-FORWARD" and forward.count(forward[0]) == 1
    finally:
        for _ in range(prepended):
            node.run(["iptables", "-D", *SECOND_AGENT], check=False)
    assert rounds >= 5, f"only {rounds} apply round(s) in 4 s"
    assert leaked == 0, f"{leaked} of {attempts} forbidden connection(s) established over {rounds} rounds"
    assert allowed_results and all(allowed_results), f"allowed x/b -> x/a: {allowed_results}"
    check(harness, ONLY_X_B, "TCP", 80, lambda s, d: d != "x/a" or s == "x/b")
