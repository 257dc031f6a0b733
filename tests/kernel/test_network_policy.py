"""NetworkPolicy on the real kernel, through the Kubernetes API: truth tables over namespaces x, y, z times pods
a, b, c (the upstream netpol e2e layout), per datapath. A lab per datapath (``tests.apilab``: control plane, and
on node-1 and node-2 the node agent, upstream kube-proxy and the NetworkPolicy agent); the pods and every policy
(``networking.k8s.io/v1`` and Calico's ``projectcalico.org/v3`` custom resources) go in with kubectl only, as a
user's would, and the agents enforce them. Each case replaces the previous case's policies, polls until the
probed matrix (every pod pair at once) equals the reference evaluator's over the pods as the API shows them, and
compares the evaluator with a hand-written expectation.

Pods a and c run on node-1, b on node-2 (``nodeName``): every matrix has same-node and cross-node pairs. What the
agent does beyond enforcing the tables (timings, Events, restarts) is in ``test_network_policy_api.py``.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from typing import Any

import pytest

from acklab.k8s.realize.network_policy import JUMP_RULE, read_applied
from netns.kernel.namespace import Namespace
from tests import apilab
from tests import netpoltools as t
from tests.netpoltools import CASES, DENY_ALL_X, NODES, Rule, calico, k8s, manifests, ns

pytestmark = pytest.mark.kernel

TERWAY = "terway-eniip"
BRIDGES = ("vpc-route", "vxlan")
SUBSET = ("deny-all-ingress", "pod-and-namespace-selector", "named-port", "egress-ip-block-except",
          "calico-pass-skips-k8s-deny")


class Labs:
    """The module's labs, one per datapath its selected tests use, in the order they run. The first is built at
    once; the others are built meanwhile, in the background while the first one's tests run, and each is removed in
    the background once its tests are done: a lab takes some 20-30 s to build, mostly waiting."""

    def __init__(self, datapaths: list[str]) -> None:
        self.pool = ThreadPoolExecutor(max_workers=2 * len(datapaths) or 1, thread_name_prefix="netpol-lab")
        self.stacks: dict[str, ExitStack] = {}
        first = self.pool.submit(self._build, datapaths[0]) if datapaths else None
        self.builds = {datapaths[0]: first} if first else {}
        for datapath in datapaths[1:]:
            self.builds[datapath] = self.pool.submit(self._build, datapath, first)
        self.removals: list[Future[None]] = []

    def _build(self, datapath: str, after: Future[t.Harness] | None = None) -> t.Harness:
        if after is not None:
            wait([after])
        with ExitStack() as stack:
            harness = t.Harness(stack.enter_context(apilab.api_lab(datapath)))
            harness.setup_pods()
            self.stacks[datapath] = stack.pop_all()  # removed by ``remove``, not here
        return harness

    def get(self, datapath: str) -> t.Harness:
        return self.builds[datapath].result()

    def remove(self, datapath: str) -> None:
        """Remove the lab (its ``api_lab`` context: ``clean_lab``) in the background."""
        stack = self.stacks.pop(datapath, None)
        if stack is not None:
            self.removals.append(self.pool.submit(stack.close))

    def close(self) -> None:
        """Every lab removed, also those whose tests never ran or whose build is still under way."""
        for datapath, build in self.builds.items():
            wait([build])
            self.remove(datapath)
        self.pool.shutdown(wait=True)
        for removal in self.removals:
            removal.result()


@pytest.fixture(scope="module")
def labs(request: pytest.FixtureRequest) -> Iterator[Labs]:
    """The labs of the datapaths this module's selected tests use (``-k`` may leave some out)."""
    module = request.node.path
    datapaths = [item.callspec.params["cluster"] for item in request.session.items
                 if item.path == module and "cluster" in getattr(getattr(item, "callspec", None), "params", {})]
    pool = Labs(list(dict.fromkeys(datapaths)))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, labs: Labs) -> Iterator[t.Harness]:
    """The lab of one datapath (``request.param``, indirect: pytest runs each lab's tests together): control
    plane, node agents, kube-proxy and NetworkPolicy agents on node-1 and node-2, the x/y/z pods applied with
    kubectl."""
    yield labs.get(request.param)
    labs.remove(request.param)


on_terway = pytest.mark.parametrize("cluster", [TERWAY], indirect=True)


def fill(h: t.Harness, text: str) -> str:
    """@ns/pod@ → the pod's address, @cidr@ → a block holding every pod."""
    for key, ip in h.ips.items():
        text = text.replace(f"@{key}@", ip)
    return text.replace("@cidr@", "192.168.0.0/16" if h.datapath == TERWAY else apilab.FLANNEL_POD_CIDR)


def check(h: t.Harness, docs: list[dict[str, Any]], protocol: str, port: int, rule: Rule | None) -> None:
    """The probed matrix becomes the evaluator's (polled), and the evaluator's is the hand-written one."""
    expected = h.settle(docs, protocol, port)
    if rule is not None:
        by_hand = t.hand(rule)
        assert expected == by_hand, f"{protocol}/{port} evaluator:\n{t.show(expected)}\nby hand:\n{t.show(by_hand)}"


def run_case(h: t.Harness, case: t.Case) -> None:
    docs = h.set_policies(fill(h, case.policies))
    for protocol, port, rule in case.probes:
        check(h, docs, protocol, port, rule)


@on_terway
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_truth_table(cluster, case):
    run_case(cluster, case)


BRIDGED_CASES = [c for c in CASES if c.name in SUBSET]


@pytest.mark.parametrize("cluster", BRIDGES, indirect=True)
@pytest.mark.parametrize("case", BRIDGED_CASES, ids=[c.name for c in BRIDGED_CASES])
def test_truth_table_on_bridge_datapaths(cluster, case):
    run_case(cluster, case)


@on_terway
def test_policy_updates_and_deletion(cluster):
    """A policy updated in place (kubectl apply of the same name) is followed; deleting every policy removes the
    agents' jump, chains and ipsets from both nodes."""
    allow81 = k8s("allow-port", "x", "podSelector: {matchLabels: {pod: a}}\ningress: [{ports: [{port: 81}]}]")
    docs = cluster.set_policies(allow81)
    check(cluster, docs, "TCP", 80, lambda s, d: d != "x/a")
    uid = cluster.api.get_json("networkpolicy", "allow-port", "-n", "x")["metadata"]["uid"]
    docs = cluster.set_policies(allow81.replace("port: 81", "port: 80"))
    assert cluster.api.get_json("networkpolicy", "allow-port", "-n", "x")["metadata"]["uid"] == uid  # not recreated
    check(cluster, docs, "TCP", 80, lambda s, d: True)
    check(cluster, docs, "TCP", 81, lambda s, d: d != "x/a")
    cluster.api.kubectl("delete", "networkpolicy", "--all", "-n", "x")
    check(cluster, [], "TCP", 81, lambda s, d: True)
    for node in NODES:
        applied = read_applied(Namespace(cluster.api.netns[node]))
        assert (applied.chains, applied.sets, applied.jumps) == ({}, {}, 0), node  # nothing of ours is left


@on_terway
def test_namespace_label_update(cluster):
    """``kubectl label namespace`` changes which pods a namespaceSelector selects: the agents follow."""
    docs = cluster.set_policies(k8s("allow-team", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]"""))
    check(cluster, docs, "TCP", 80, lambda s, d: d != "x/a")
    cluster.label("namespace", "y", "team=blue")
    try:
        check(cluster, docs, "TCP", 80, lambda s, d: d != "x/a" or ns(s) == "y")
    finally:
        cluster.label("namespace", "y", "team-")
    check(cluster, docs, "TCP", 80, lambda s, d: d != "x/a")


@on_terway
def test_pod_label_update(cluster):
    """``kubectl label pod --overwrite`` moves a pod in and out of a podSelector's set: the agents follow."""
    docs = cluster.set_policies(k8s("x-a-allows-b", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]"""))
    check(cluster, docs, "TCP", 80, lambda s, d: d != "x/a" or s == "x/b")
    try:
        cluster.label("pod", "-n", "x", "b", "pod=bb")
        cluster.label("pod", "-n", "x", "c", "pod=b")
        check(cluster, docs, "TCP", 80, lambda s, d: d != "x/a" or s == "x/c")  # the selected set follows the labels
    finally:
        cluster.label("pod", "-n", "x", "b", "pod=b")
        cluster.label("pod", "-n", "x", "c", "pod=c")
    check(cluster, docs, "TCP", 80, lambda s, d: d != "x/a" or s == "x/b")


def _request(conn: socket.socket) -> bool:
    try:
        conn.sendall(b"GET /hostname HTTP/1.1\r\nHost: p\r\n\r\n")
        return conn.recv(4096).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _open(h: t.Harness, src: str, dst: str) -> socket.socket:
    conn = Namespace(h.netns[src]).socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.settimeout(1.5)
    conn.connect((h.ips[dst], 80))
    return conn


@on_terway
def test_established_flows_a_new_policy_forbids_stop(cluster):
    """Flows established before a policy forbids them stop once the agents apply it (their conntrack entries are
    swept; the next packet meets the chains as a new flow), on the same node and across nodes; an allowed one
    goes on."""
    check(cluster, cluster.set_policies(""), "TCP", 80, lambda s, d: True)
    before_any = _open(cluster, "y/c", "x/a")  # opened while no policy applied: no rule of ours saw it start
    allow_all = k8s("allow-all", "x", "podSelector: {}\ningress: [{}]")
    check(cluster, cluster.set_policies(allow_all), "TCP", 80, lambda s, d: True)
    cut, kept, across = _open(cluster, "y/a", "x/a"), _open(cluster, "x/b", "x/a"), _open(cluster, "z/a", "y/b")
    try:
        docs = cluster.set_policies(allow_all.replace("podSelector: {}", "podSelector: {matchLabels: {pod: b}}")
                                    + k8s("only-x", "x", "podSelector: {matchLabels: {pod: a}}\n"
                                                         "ingress: [{from: [{podSelector: {}}]}]")
                                    + k8s("deny-egress", "z", "podSelector: {}\npolicyTypes: [Egress]"))
        # settled: both agents applied the policies, conntrack sweep included
        check(cluster, docs, "TCP", 80, lambda s, d: ns(s) != "z" and (d != "x/a" or ns(s) == "x"))
        with ThreadPoolExecutor(max_workers=4) as pool:
            answered = dict(zip(("cut", "across", "before_any", "kept"),
                                pool.map(_request, (cut, across, before_any, kept)), strict=True))
        # y/a → x/a: the new ingress policy forbids it; z/a (node-1) → y/b (node-2): the source's new egress policy;
        # the flow older than any policy: its next packet is a new flow to the node, and forbidden
        assert answered == {"cut": False, "across": False, "before_any": False, "kept": True}, answered
    finally:
        for conn in (cut, kept, across, before_any):
            conn.close()


def _rejected(h: t.Harness, name: str, text: str) -> bool:
    """A Warning Event PolicyRejected from an agent on the policy ``name`` (a GlobalNetworkPolicy's: in default)."""
    events = h.api.get_json("events", "-n", "default", "--field-selector", "reason=PolicyRejected")["items"]
    return any(e["involvedObject"]["name"] == name and text in e["message"] for e in events)


@on_terway
def test_invalid_policies_change_nothing(cluster):
    """An invalid Kubernetes policy is refused by the API server (kubectl fails, nothing is stored); an invalid
    Calico one, stored as a custom resource, is left out by the agents, which say why in an Event: the nodes'
    rules stay exactly as they were and the matrix with them."""
    good = cluster.set_policies(DENY_ALL_X)
    check(cluster, good, "TCP", 80, lambda s, d: ns(d) != "x")
    before = {node: read_applied(Namespace(cluster.api.netns[node])) for node in NODES}
    bad = manifests(k8s("bad", "y", "podSelector: {}\ningress: [{ports: [{port: 80, endPort: 70}]}]"))
    refused = cluster.api.kubectl("apply", "-f", "-", stdin=t.json_stream(bad), check=False)
    assert refused.returncode != 0
    assert re.search(r"spec\.ingress\[0\]\.ports\[0\]\.endPort: Invalid value: 70", refused.stderr), refused.stderr
    bad_calico = manifests(calico("GlobalNetworkPolicy", "bad", "selector: pod == b\ningress: [{action: Allow}]"))
    cluster.api.apply(t.json_stream(bad_calico))  # the API server keeps it (its spec is not validated there)
    try:
        apilab.until(lambda: _rejected(cluster, "bad", "spec.selector: 'pod == b'"), "a PolicyRejected Event", 15)
        check(cluster, good, "TCP", 80, lambda s, d: ns(d) != "x")  # the agents left it out
        assert {node: read_applied(Namespace(cluster.api.netns[node])) for node in NODES} == before
    finally:
        cluster.api.delete(t.json_stream(bad_calico))


def _forward(node: Namespace) -> list[str]:
    return [r for r in node.run(["iptables", "-S", "FORWARD"]).stdout.splitlines() if r.startswith("-A")]


@on_terway
def test_coexists_with_kube_proxy_chains(cluster):
    """kube-proxy's jumps and chains stay as kube-proxy made them; ours goes first in FORWARD (like Felix's:
    KUBE-FORWARD accepts masquerade-marked traffic, which must not bypass policy) and goes away with the last
    policy, leaving kube-proxy's."""
    check(cluster, cluster.set_policies(""), "TCP", 80, lambda s, d: True)
    node = Namespace(cluster.api.netns["node-1"])
    theirs, kube_forward = _forward(node), node.run(["iptables", "-S", "KUBE-FORWARD"]).stdout
    assert any(r.endswith("-j KUBE-FORWARD") for r in theirs), theirs  # the real kube-proxy's
    docs = cluster.set_policies(DENY_ALL_X)
    check(cluster, docs, "TCP", 80, lambda s, d: ns(d) != "x")
    assert _forward(node) == [JUMP_RULE, *theirs]
    check(cluster, cluster.set_policies(""), "TCP", 80, lambda s, d: True)
    assert _forward(node) == theirs
    assert node.run(["iptables", "-S", "KUBE-FORWARD"]).stdout == kube_forward


SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: to-x-a, namespace: x}
spec:
  type: NodePort
  selector: {pod: a}
  ports: [{port: 80, targetPort: serve-80-tcp, nodePort: 30080}]
"""
ONLY_X_B = k8s("x-a-allows-b", "x", """
podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]""")


@on_terway
def test_policies_apply_to_service_traffic_after_dnat(cluster):
    """kube-proxy (upstream, iptables mode) DNATs in PREROUTING, so the policy chains see the pod, and the
    client's own address (SNAT comes after FORWARD). Our jump stays before KUBE-FORWARD, which would accept
    NodePort traffic unchecked."""
    api = cluster.api
    node2, node1_ip = api.netns["node-2"], api.node_ips["node-1"]

    def reach(src_netns: str, address: str, port: int) -> bool:
        return t.probe(src_netns, address, "TCP", port)

    check(cluster, cluster.set_policies(""), "TCP", 80, lambda s, d: True)
    api.apply(t.json_stream(manifests(SERVICE)))
    try:
        cluster_ip = api.cluster_ip("x", "to-x-a")
        apilab.until(lambda: reach(cluster.netns["x/b"], cluster_ip, 80) and reach(cluster.netns["y/a"], cluster_ip, 80)
                     and reach(node2, node1_ip, 30080), "kube-proxy serving the Service on both nodes")
        docs = cluster.set_policies(ONLY_X_B)
        check(cluster, docs, "TCP", 80, lambda s, d: d != "x/a" or s == "x/b")
        assert reach(cluster.netns["x/b"], cluster_ip, 80)
        assert not reach(cluster.netns["y/a"], cluster_ip, 80)
        assert not reach(node2, node1_ip, 30080)  # NodePort from another node: the node is no pod b
        with_nodes = ONLY_X_B.replace("[{podSelector: {matchLabels: {pod: b}}}]",
                                      "[{podSelector: {matchLabels: {pod: b}}}, {ipBlock: {cidr: 192.168.1.0/24}}]")
        docs = cluster.set_policies(with_nodes)
        check(cluster, docs, "TCP", 80, lambda s, d: d != "x/a" or s == "x/b")
        assert reach(node2, node1_ip, 30080)  # the client's address, seen before SNAT
        assert not reach(cluster.netns["y/a"], cluster_ip, 80)
    finally:
        api.delete(t.json_stream(manifests(SERVICE)))


SECOND_AGENT = ["FORWARD", "-m", "comment", "--comment", "second-agent"]  # no target: counts packets, decides nothing
ROUNDS = 6


def _toggle(port: int) -> str:
    """A policy the agent rewrites (its port changes) without changing who may reach x/a on TCP 80."""
    return k8s("toggle", "x", f"""
podSelector: {{matchLabels: {{pod: a}}}}
ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}], ports: [{{port: {port}}}]}}]""")


def _keep_trying(h: t.Harness, src: str, dst: str, timeout: float, stop: threading.Event) -> list[bool]:
    """New connections from ``src`` to ``dst`` one after another until ``stop``; whether each was established."""
    results = []
    while not stop.is_set():
        results.append(t.probe(h.netns[src], h.ips[dst], "TCP", 80, timeout=timeout))
    return results


@on_terway
def test_moving_the_jump_back_first_lets_no_forbidden_connection_through(cluster):
    """A second agent prepends a rule to FORWARD, then a policy changes (kubectl apply), so the NetworkPolicy
    agent's apply moves our jump back first, round after round, while new connections the policy forbids are tried
    without pause: none may be established meanwhile, and the allowed one always is. Moving the jump with two
    commands (delete, then insert) opened a gap between them in which FORWARD had no jump and forwarded
    everything; the agent's apply moves it in the transaction that writes the chains."""
    docs = cluster.set_policies(ONLY_X_B + _toggle(81))
    check(cluster, docs, "TCP", 80, lambda s, d: d != "x/a" or s == "x/b")
    node = Namespace(cluster.api.netns["node-1"])  # x/a's node: its ingress policy is enforced there
    forbidden = ["y/a", "x/c", "y/b"]  # same node, same namespace, across nodes
    stop = threading.Event()
    rounds = prepended = 0
    try:
        with ThreadPoolExecutor(max_workers=8 * len(forbidden) + 1) as pool:
            # a dropped SYN is not sent again within 0.15 s: each try is one packet, about 150 of them a second
            tries = [pool.submit(_keep_trying, cluster, src, "x/a", 0.15, stop) for src in forbidden * 8]
            allowed = pool.submit(_keep_trying, cluster, "x/b", "x/a", 2.0, stop)
            try:
                for i in range(ROUNDS):
                    node.run(["iptables", "-I", SECOND_AGENT[0], "1", *SECOND_AGENT[1:]])
                    prepended += 1
                    cluster.api.apply(t.json_stream(manifests(_toggle(82 if i % 2 == 0 else 81))))
                    apilab.until(lambda: _forward(node)[0] == JUMP_RULE, f"round {i}: our jump moved back first", 15)
                    rounds += 1
            finally:
                stop.set()
            leaked = sum(sum(f.result()) for f in tries)
            attempts = sum(len(f.result()) for f in tries)
            allowed_results = allowed.result()
        forward = _forward(node)
        assert forward[0] == JUMP_RULE and forward.count(JUMP_RULE) == 1
    finally:
        for _ in range(prepended):
            node.run(["iptables", "-D", *SECOND_AGENT], check=False)
    assert rounds == ROUNDS
    assert leaked == 0, f"{leaked} of {attempts} forbidden connection(s) established over {rounds} rounds"
    assert allowed_results and all(allowed_results), f"allowed x/b -> x/a: {allowed_results}"
    check(cluster, cluster.set_policies(ONLY_X_B + _toggle(81)), "TCP", 80, lambda s, d: d != "x/a" or s == "x/b")
