"""Services through the real kube-proxy rules on the real kernel (terway-eniip cluster of two nodes).

Packet-level: every probe is a connection or datagram from a lab namespace (pod, node, ECS) to a ClusterIP,
NodePort or load-balancer address; the answer (agnhost-netexec-like ``/hostname``, ``/clientip``) says which
pod served it and which client address it saw.
"""

from __future__ import annotations

import collections
import textwrap

import pytest
import yaml

from acklab.k8s import apiserver
from acklab.k8s.kube_proxy_sync import NodeProxier, cluster_pods, sync_node
from acklab.k8s.model import parse_documents
from acklab.k8s.pods import load_records
from netns.model.security_group import parse_rule
from netns.realize import security_group as sg
from tests import k8stools as k
from tests.labtools import clean_lab, new_lab

pytestmark = pytest.mark.kernel

ECS3 = "192.168.2.10"
LB_IP = "192.168.1.200"  # what an SLB would publish in status.loadBalancer (the test plays the CCM)

SERVICES = textwrap.dedent("""
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: demo}
    spec:
      selector: {app: web}
      ports:
      - {name: http, port: 80, targetPort: http}
      - {name: udp, port: 53, targetPort: udp, protocol: UDP}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: self-a, namespace: demo}
    spec:
      selector: {app: a}
      ports: [{port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: nothing, namespace: demo}
    spec:
      selector: {app: nobody}
      ports: [{port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: np, namespace: demo}
    spec:
      type: NodePort
      selector: {app: web}
      ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: sticky, namespace: demo}
    spec:
      selector: {app: web}
      sessionAffinity: ClientIP
      sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
      ports: [{port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: local-c, namespace: demo}
    spec:
      type: NodePort
      externalTrafficPolicy: Local
      selector: {app: c}
      ports: [{port: 80, targetPort: 8080, nodePort: 30081}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: itp-c, namespace: demo}
    spec:
      internalTrafficPolicy: Local
      selector: {app: c}
      ports: [{port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: lb, namespace: demo}
    spec:
      type: LoadBalancer
      selector: {app: web}
      loadBalancerSourceRanges: [LB_SOURCE/32]
      ports: [{port: 80, targetPort: 8080}]
    """)


class Cluster:
    def __init__(self, lab: str) -> None:
        self.lab = lab
        self.network, self.nodes, self.ecs3 = k.build_cluster(lab, "terway-eniip")
        manifests = k.MANIFESTS + "".join(k.pinned_pod(n, node) for n, node in
                                          (("a", "node-1"), ("b", "node-1"), ("c", "node-2")))
        k.converge(self.network, manifests)
        self.pods = {r.pod.name: r for r in load_records(lab).values()}
        self.manifests = manifests
        self.services_text = SERVICES.replace("LB_SOURCE", self.pods["a"].ip)

    def node_ns(self, name: str) -> str:
        return self.network.node(name).netns

    def sync(self, services_text: str | None = None) -> dict[str, bool]:
        cluster = parse_documents([(d, "svc.yaml") for d in yaml.safe_load_all(self.manifests +
                                                                               (services_text or self.services_text))])
        allocations = apiserver.allocate(self.lab, cluster.services)
        services = apiserver.with_status(cluster.services, allocations, {"demo/lb": LB_IP})
        self.cluster_ips = allocations.cluster_ips
        pods = cluster_pods(self.lab)
        # --cluster-cidr: the pod vSwitch (what tells pod traffic from the rest, which is masqueraded)
        return {n.name: sync_node(self.lab, n.name, n.netns, services, pods, n.ip, k.POD_VSWITCH_CIDR).changed
                for n in self.network.nodes}

    def ip(self, service: str) -> str:
        return self.cluster_ips[f"demo/{service}"]


@pytest.fixture(scope="module")
def cluster():
    lab = new_lab()
    try:
        c = Cluster(lab)
        assert c.sync() == {"node-1": True, "node-2": True}
        yield c
    finally:
        clean_lab(lab)


def hostnames(netns: str, address: str, port: int, n: int) -> collections.Counter:
    return collections.Counter(k.http_get(netns, address, port, "/hostname") for _ in range(n))


WEB = {"web-0", "web-1", "web-2"}


def web_pods(cluster: Cluster) -> set[str]:
    return {name for name in cluster.pods if name.startswith("web-")}


def test_cluster_ip_from_pod_node_and_other_node_spreads_over_endpoints(cluster):
    ip = cluster.ip("web")
    assert ip.startswith("172.21.0.")
    expected = web_pods(cluster)
    assert len(expected) == 3
    for client in (cluster.pods["a"].netns, cluster.pods["c"].netns, cluster.node_ns("node-1"),
                   cluster.node_ns("node-2")):
        seen = hostnames(client, ip, 80, 40)
        # random with probability 1/(n-i): 40 tries miss one of 3 endpoints with p ≈ 3·(2/3)^40 ≈ 3e-7
        assert set(seen) == expected, (client, seen)


def test_target_port_by_name_for_tcp_and_udp(cluster):
    ip = cluster.ip("web")
    assert k.http_get(cluster.pods["a"].netns, ip, 80, "/hostname") in web_pods(cluster)
    assert k.udp_ask(cluster.pods["c"].netns, ip, 53) in web_pods(cluster)


def test_wrong_port_or_protocol_does_not_match(cluster):
    ip = cluster.ip("web")
    assert k.http_get(cluster.pods["a"].netns, ip, 8080, "/hostname", timeout=1) is None  # the target port
    assert k.udp_ask(cluster.pods["a"].netns, ip, 80, timeout=0.5) is None  # TCP port over UDP


def test_hairpin_a_pod_reaching_itself_through_its_service_is_masqueraded(cluster):
    a = cluster.pods["a"]
    seen = k.http_get(a.netns, cluster.ip("self-a"), 80, "/clientip")
    assert seen is not None
    assert not seen.startswith(f"{a.ip}:"), "a hairpinned connection must not keep the pod's own address"
    # not hairpinned: another pod reaching it keeps its own address (no masquerade inside the cluster)
    b = cluster.pods["b"]
    assert k.http_get(b.netns, cluster.ip("self-a"), 80, "/clientip").startswith(f"{b.ip}:")


def test_service_without_endpoints_refuses_connections(cluster):
    import socket

    from netns.kernel.namespace import Namespace

    s = Namespace(cluster.pods["a"].netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        with pytest.raises(ConnectionRefusedError):  # REJECT, not a black hole (which would time out)
            s.connect((cluster.ip("nothing"), 80))
    finally:
        s.close()


def test_node_port_on_every_node_address_and_localhost(cluster):
    for node in ("node-1", "node-2"):
        address = cluster.network.node(node).ip
        for client in (cluster.node_ns("node-1"), cluster.node_ns("node-2"), cluster.pods["c"].netns):
            assert k.http_get(client, address, 30080, "/hostname") in web_pods(cluster), (node, client)
        # a NodePort is also served on the node's loopback (--iptables-localhost-nodeports)
        assert k.http_get(cluster.node_ns(node), "127.0.0.1", 30080, "/hostname") in web_pods(cluster)


def test_session_affinity_keeps_a_client_on_one_endpoint(cluster):
    for client in (cluster.pods["a"].netns, cluster.pods["c"].netns):
        seen = hostnames(client, cluster.ip("sticky"), 80, 15)
        assert len(seen) == 1 and None not in seen, seen


def test_external_traffic_policy_local_keeps_client_ip_and_drops_without_local_endpoints(cluster):
    sg.add_rule(cluster.lab, k.NODE_SG, parse_rule("test", "sgr-0000000a", type="ingress", ip_protocol="tcp",
                                                   port_range="30000/32767", cidr_ip="192.168.2.0/24"))
    try:
        ecs3 = cluster.ecs3.namespace.name
        node1, node2 = cluster.network.node("node-1").ip, cluster.network.node("node-2").ip
        # node-2 has c: served, and c sees the ECS's own address (no SNAT)
        seen = k.http_get(ecs3, node2, 30081, "/clientip")
        assert seen is not None and seen.startswith(f"{ECS3}:"), seen
        # node-1 has no endpoint of local-c: dropped (a timeout, not a refusal)
        assert k.http_get(ecs3, node1, 30081, "/hostname", timeout=1.5) is None
        # externalTrafficPolicy: Cluster for comparison: served from either node, client address masqueraded
        seen = k.http_get(ecs3, node1, 30080, "/clientip")
        assert seen is not None and not seen.startswith(f"{ECS3}:"), seen
    finally:
        sg.remove_rule(cluster.lab, k.NODE_SG, "sgr-0000000a")


def test_internal_traffic_policy_local_uses_only_the_nodes_own_endpoints(cluster):
    ip = cluster.ip("itp-c")
    assert k.http_get(cluster.pods["c"].netns, ip, 80, "/hostname") == "c"  # c's node has c
    assert k.http_get(cluster.node_ns("node-2"), ip, 80, "/hostname") == "c"
    assert k.http_get(cluster.pods["a"].netns, ip, 80, "/hostname", timeout=1) is None  # node-1 has none


def test_load_balancer_source_ranges(cluster):
    # the LB address is short-circuited on the nodes (kube-proxy's KUBE-FW chain); only a's address is allowed
    assert k.http_get(cluster.pods["a"].netns, LB_IP, 80, "/hostname") in web_pods(cluster)
    assert k.http_get(cluster.pods["c"].netns, LB_IP, 80, "/hostname", timeout=1) is None


def test_sync_with_nothing_changed_applies_nothing_and_changes_apply_atomically(cluster):
    assert cluster.sync() == {"node-1": False, "node-2": False}

    def service_chains() -> int:
        nat = NodeProxier(cluster.lab, "node-1", cluster.node_ns("node-1")).current().chains["nat"]
        return sum(c.startswith("KUBE-SVC-") for c in nat)

    before = service_chains()
    # the Services from `sticky` on are removed: their chains go in the same restore
    removed = cluster.services_text.split("---\napiVersion: v1\nkind: Service\nmetadata: {name: sticky")[0]
    try:
        assert cluster.sync(removed) == {"node-1": True, "node-2": True}
        # gone: the KUBE-SVC chains of sticky, local-c (its cluster-internal chain) and lb; itp-c has only SVL
        assert service_chains() == before - 3
        assert k.http_get(cluster.pods["a"].netns, cluster.ip("web"), 80, "/hostname") in web_pods(cluster)
    finally:
        assert cluster.sync() == {"node-1": True, "node-2": True}


def test_a_removed_jump_is_restored_and_a_forgotten_state_is_read_back_from_the_kernel(cluster):
    from netns.kernel.namespace import Namespace

    node = Namespace(cluster.node_ns("node-1"))
    node.run(["iptables", "-t", "nat", "-D", "PREROUTING", "-m", "comment", "--comment",
              "kubernetes service portals", "-j", "KUBE-SERVICES"])
    assert k.http_get(cluster.pods["a"].netns, cluster.ip("web"), 80, "/hostname", timeout=1) is None
    assert cluster.sync() == {"node-1": True, "node-2": False}  # only the drifted node is re-applied
    assert k.http_get(cluster.pods["a"].netns, cluster.ip("web"), 80, "/hostname") in web_pods(cluster)
    NodeProxier(cluster.lab, "node-2", cluster.node_ns("node-2")).forget()
    assert cluster.sync() == {"node-1": False, "node-2": True}  # unknown state: read and applied again
    assert cluster.sync() == {"node-1": False, "node-2": False}
    prerouting = node.run(["iptables", "-t", "nat", "-S", "PREROUTING"]).stdout
    assert prerouting.count("-j KUBE-SERVICES") == 1  # never a second jump


def test_udp_flows_move_when_their_endpoint_goes_away(cluster):
    """UDP has no connection to end: the sync deletes the conntrack entries of flows to removed endpoints, so
    a client that keeps its socket (same 5-tuple) reaches the new endpoint instead of the old one."""
    import socket

    from netns.kernel.namespace import Namespace

    def udp_service(app: str) -> str:
        return textwrap.dedent(f"""
            ---
            apiVersion: v1
            kind: Service
            metadata: {{name: dns, namespace: demo}}
            spec:
              selector: {{app: {app}}}
              ports: [{{port: 53, targetPort: 8081, protocol: UDP}}]
            """)

    client = Namespace(cluster.pods["c"].netns).socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    try:
        client.bind(("0.0.0.0", 0))
        cluster.sync(cluster.services_text + udp_service("a"))
        address = (cluster.ip("dns"), 53)

        def ask() -> str:
            client.sendto(b"hostname", address)
            return client.recvfrom(2048)[0].decode()

        assert ask() == "a" and ask() == "a"  # one flow, kept in conntrack
        cluster.sync(cluster.services_text + udp_service("b"))  # a is no endpoint any more
        assert ask() == "b"
    finally:
        client.close()
        cluster.sync()
