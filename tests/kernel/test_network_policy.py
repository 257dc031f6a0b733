"""NetworkPolicy on the real kernel: truth tables over namespaces x, y, z times pods a, b, c (the upstream netpol e2e
layout), per datapath. Each case applies its policies (replacing the previous case's), probes every pod pair at
once, and compares the matrix with the reference evaluator's and, where given, with a hand-written expectation.

Pods a and c run on node-1, b on node-2: every matrix has same-node and cross-node pairs.
"""

from __future__ import annotations

import socket

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


@pytest.fixture(scope="module", params=["terway-eniip", "vpc-route", "vxlan"])
def harness(request):
    lab = new_lab()
    try:
        network, _, _ = k.build_cluster(lab, request.param)
        if request.param == "vpc-route":  # routed pod blocks need the group rule ACK adds in this mode
            k.allow(lab, k.NODE_SG, "sgr-0000000f", "all", -1, "10.244.0.0/16")
        h = t.Harness(lab, network)
        h.setup_pods()
        yield h
    finally:
        clean_lab(lab)


def check(h: t.Harness, policies: str, protocol: str, port: int, rule: Rule | None) -> None:
    got = h.matrix(protocol, port)
    expected = h.expected(policies, protocol, port)
    assert got == expected, f"{protocol}/{port} probed:\n{t.show(got)}\nevaluator:\n{t.show(expected)}"
    if rule is not None:
        by_hand = t.hand(rule)
        assert expected == by_hand, f"{protocol}/{port} evaluator:\n{t.show(expected)}\nby hand:\n{t.show(by_hand)}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_truth_table(harness, case):
    if harness.network.datapath != "terway-eniip" and case.name not in SUBSET:
        pytest.skip("a subset runs on the bridge datapaths")
    policies = fill(harness, case.policies)
    harness.apply(policies)
    assert harness.apply(policies) == []  # no-op when unchanged
    for protocol, port, rule in case.probes:
        check(harness, policies, protocol, port, rule)


def terway_only(h: t.Harness) -> None:
    if h.network.datapath != "terway-eniip":
        pytest.skip("runs on terway-eniip")


def test_policy_updates_and_deletion(harness):
    terway_only(harness)
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
    terway_only(harness)
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
    terway_only(harness)
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
    terway_only(harness)
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
