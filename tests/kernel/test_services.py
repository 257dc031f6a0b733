"""Services through the Kubernetes API and upstream kube-proxy on the real kernel (terway-eniip cluster of two nodes).

Everything goes the way a user's cluster does it: Deployments, Pods and Services are applied with ``kubectl``; the
API server allocates ClusterIPs and NodePorts (read back from the API), the EndpointSlice controller makes the
endpoints, acklab's cloud controller gives a ``type: LoadBalancer`` Service its SLB, and upstream kube-proxy
(v1.37, iptables mode, started on each node by ``cluster_install.install_node``) writes the rules. One lab for the
module (``tests/apilab.py``).

Packet-level: every probe is a connection or datagram from a lab namespace (pod, node, ECS) to a ClusterIP,
NodePort or load-balancer address; the answer (agnhost-netexec-like ``/hostname``, ``/clientip``) says which
pod served it and which client address it saw. Whatever is asynchronous (endpoints reaching kube-proxy's rules,
the SLB's address) is polled with a deadline.

What ``tests/kernel/test_kube_proxy_upstream.py`` proves already (hand-made EndpointSlices, no pods: the daemon,
REJECT of an emptied Service, a UDP endpoint moved, the rules against acklab's compiler, nothing host-wide) is not
repeated; here the endpoints are pods the controllers and node agents made.
"""

from __future__ import annotations

import collections
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from acklab.k8s.realize.pod_network import PodRecord
from netns.kernel.namespace import Namespace
from netns.model.security_group import parse_rule
from netns.realize import security_group as sg
from tests import apilab
from tests import k8stools as k

pytestmark = pytest.mark.kernel

NS = "demo"
SERVICE_CIDR = ipaddress.IPv4Network("172.21.0.0/20")  # the control plane's --service-cluster-ip-range
NODE_PORTS = range(30000, 32768)  # the API server's default --service-node-port-range
RULES_DEADLINE = 15.0  # a change in the API → kube-proxy's rules on both nodes (minSyncPeriod 1 s batches them)
# proxy_config.py sets no iptables.syncPeriod: upstream's 30 s default. In v1.37 that is the period of the canary
# check (KUBE-PROXY-CANARY in mangle, nat and filter) and the retry after a failed sync; the periodic sync itself
# runs once an hour (proxyutil.FullSyncPeriod).
SYNC_PERIOD = 30.0

WORKLOADS = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: [netexec, --http-port=8080, --udp-port=8081]
        ports:
        - {{name: http, containerPort: 8080}}
        - {{name: udp, containerPort: 8081, protocol: UDP}}
""" + "".join(k.pinned_pod(name, node, NS) for name, node in (("a", "node-1"), ("b", "node-1"), ("c", "node-2")))

# No clusterIP, no nodePort: the API server allocates them. ``lb``'s source range is pod a's address (known once a
# runs). ``lb`` is a real ``type: LoadBalancer`` Service, not a ClusterIP one with spec.externalIPs: upstream
# applies loadBalancerSourceRanges only to status.loadBalancer.ingress addresses (its KUBE-FW chain), never to
# externalIPs, so only the cloud controller's SLB address tests the field.
SERVICES = f"""
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports:
  - {{name: http, port: 80, targetPort: http}}
  - {{name: udp, port: 53, targetPort: udp, protocol: UDP}}
---
apiVersion: v1
kind: Service
metadata: {{name: self-a, namespace: {NS}}}
spec:
  selector: {{app: a}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: nothing, namespace: {NS}}}
spec:
  selector: {{app: nobody}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: np, namespace: {NS}}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: sticky, namespace: {NS}}}
spec:
  selector: {{app: web}}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 60}}}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: local-c, namespace: {NS}}}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {{app: c}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: itp-c, namespace: {NS}}}
spec:
  internalTrafficPolicy: Local
  selector: {{app: c}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: lb, namespace: {NS}}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  loadBalancerSourceRanges: [A_SOURCE/32]
  ports: [{{port: 80, targetPort: 8080}}]
"""

# kube-proxy's endpoint rules in iptables-save's form: the Service port in the comment (``ns/name`` or
# ``ns/name:port``), the endpoint in the DNAT.
_DNAT = re.compile(r'^-A KUBE-SEP-\S+ (?:-p \w+ )?-m comment --comment "?([^" ]+)"? .*-j DNAT --to-destination (\S+)$',
                   re.M)
_JUMP = ["PREROUTING", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"]


def iptables_save(netns: str, table: str) -> str:
    return Namespace(netns).run(["iptables-save", "-t", table]).stdout


def dnat_targets(netns: str) -> dict[str, set[str]]:
    """Service port (as kube-proxy names it in its comments) → the ``ip:port`` endpoints its rules DNAT to."""
    found: dict[str, set[str]] = collections.defaultdict(set)
    for service, endpoint in _DNAT.findall(iptables_save(netns, "nat")):
        found[service].add(endpoint)
    return found


def no_local_endpoints_drop(netns: str, service: str) -> bool:
    """Whether kube-proxy's filter rules on a node drop ``service`` for want of a local endpoint."""
    return any(f'"{NS}/{service} has no local endpoints"' in line and line.endswith("-j DROP")
               for line in iptables_save(netns, "filter").splitlines())


def ready_endpoints(lab: apilab.ApiLab, service: str, port: int) -> set[str]:
    """``ip:port`` of the endpoints the EndpointSlice controller lists as ready for ``service`` (a terminating
    pod's endpoint is not ready)."""
    slices = lab.get_json("endpointslices", "-n", NS, "-l", f"kubernetes.io/service-name={service}")["items"]
    return {f"{address}:{port}" for s in slices for e in s.get("endpoints") or ()
            if (e.get("conditions") or {}).get("ready") for address in e["addresses"]}


def wait_ready(lab: apilab.ApiLab, service: str, port: int, count: int, timeout: float = RULES_DEADLINE
               ) -> set[str]:
    """The ready endpoints of ``service`` once there are ``count`` of them."""
    ready: set[str] = set()

    def enough() -> bool:
        ready.clear()
        ready.update(ready_endpoints(lab, service, port))
        return len(ready) == count

    apilab.until(enough, f"{count} ready endpoints in {service}'s EndpointSlices", timeout, interval=0.05)
    return ready


@dataclass
class Cluster:
    """The lab and what the module's workloads got from the API: pods a, b, c and the web Deployment's pods stay
    for the whole module, as do the Services' ClusterIPs, so they are read once (a kubectl call costs 0.1-0.5 s
    on this machine)."""

    lab: apilab.ApiLab
    pods: dict[str, PodRecord] = field(default_factory=dict)  # a, b, c and web's pods, by name
    web: set[str] = field(default_factory=set)  # web's pods' names
    ips: dict[str, str] = field(default_factory=dict)  # Service → its ClusterIP (allocated by the API server)

    def pod(self, name: str) -> PodRecord:
        return self.pods[name]

    def ip(self, service: str) -> str:
        if service not in self.ips:
            self.ips[service] = self.lab.cluster_ip(NS, service)
        return self.ips[service]

    def node_port(self, service: str) -> int:
        return next(iter(self.lab.node_ports(NS, service).values()))

    def node_ns(self, node: str) -> str:
        return self.lab.netns[node]

    def endpoints(self, names: set[str], port: int) -> set[str]:
        return {f"{self.pods[name].ip}:{port}" for name in names}

    def wait_rules(self, wanted: dict[str, dict[str, set[str]]], what: str, timeout: float = RULES_DEADLINE,
                   interval: float = 0.1) -> float:
        """Until kube-proxy's rules on each node DNAT each Service port to exactly the wanted endpoints
        (node → Service port → endpoints; an empty set: no endpoint chain at all)."""
        def programmed() -> bool:
            for node, services in wanted.items():
                found = dnat_targets(self.node_ns(node))
                if any(found.get(service, set()) != endpoints for service, endpoints in services.items()):
                    return False
            return True

        return apilab.until(programmed, what, timeout, interval)


@pytest.fixture(scope="module")
def lab() -> Iterator[apilab.ApiLab]:
    yield from apilab.lab_fixture("terway-eniip")


@pytest.fixture(scope="module")
def cluster(lab: apilab.ApiLab) -> Cluster:
    lab.apply(WORKLOADS)
    running = lab.wait_running(6, NS)
    records = lab.records()
    c = Cluster(lab, {key.split("/", 1)[1]: records[key] for key in running},
                {key.split("/", 1)[1] for key, pod in running.items() if pod["metadata"]["labels"].get("app") == "web"})
    assert len(c.web) == 3 and {"a", "b", "c"} <= set(c.pods)
    lab.apply(SERVICES.replace("A_SOURCE", c.pod("a").ip))
    web, a, c_ = c.endpoints(c.web, 8080), c.endpoints({"a"}, 8080), c.endpoints({"c"}, 8080)
    both = {f"{NS}/web:http": web, f"{NS}/web:udp": c.endpoints(c.web, 8081), f"{NS}/self-a": a,
            f"{NS}/np": web, f"{NS}/sticky": web, f"{NS}/local-c": c_, f"{NS}/lb": web}
    # internalTrafficPolicy Local: a node has endpoint chains for its own endpoints only
    lab.timings["Services applied → kube-proxy's rules on both nodes"] = c.wait_rules(
        {"node-1": both | {f"{NS}/itp-c": set()}, "node-2": both | {f"{NS}/itp-c": c_}},
        "every Service's endpoints in kube-proxy's rules on both nodes")
    return c


def hostnames(netns: str, address: str, port: int, n: int) -> collections.Counter:
    return collections.Counter(k.http_get(netns, address, port, "/hostname") for _ in range(n))


def test_cluster_ip_from_pod_node_and_other_node_spreads_over_endpoints(cluster):
    ip = cluster.ip("web")
    assert ipaddress.IPv4Address(ip) in SERVICE_CIDR  # allocated by the API server
    expected = cluster.web
    assert len(expected) == 3
    for client in (cluster.pod("a").netns, cluster.pod("c").netns, cluster.node_ns("node-1"),
                   cluster.node_ns("node-2")):
        seen = hostnames(client, ip, 80, 40)
        # random with probability 1/(n-i): 40 tries miss one of 3 endpoints with p ≈ 3·(2/3)^40 ≈ 3e-7
        assert set(seen) == expected, (client, seen)


def test_target_port_by_name_for_tcp_and_udp(cluster):
    # the EndpointSlice controller resolved the names to the pods' container ports
    slices = cluster.lab.get_json("endpointslices", "-n", NS, "-l", "kubernetes.io/service-name=web")["items"]
    assert {(p["name"], p["port"], p["protocol"]) for s in slices for p in s["ports"]} == \
        {("http", 8080, "TCP"), ("udp", 8081, "UDP")}
    ip = cluster.ip("web")
    assert k.http_get(cluster.pod("a").netns, ip, 80, "/hostname") in cluster.web
    assert k.udp_ask(cluster.pod("c").netns, ip, 53) in cluster.web


def test_wrong_port_or_protocol_does_not_match(cluster):
    ip = cluster.ip("web")
    assert k.http_get(cluster.pod("a").netns, ip, 8080, "/hostname", timeout=1) is None  # the target port
    assert k.udp_ask(cluster.pod("a").netns, ip, 80, timeout=0.5) is None  # TCP port over UDP


def test_hairpin_a_pod_reaching_itself_through_its_service_is_masqueraded(cluster):
    """Upstream's KUBE-SEP chain marks packets from the endpoint itself (``-s <pod> -j KUBE-MARK-MASQ``) and
    KUBE-POSTROUTING masquerades them, whatever the pod network: with Terway's routed pods (no bridge, no
    hairpin mode) the DNATed packet goes back out of the node's side of a's veth, which has no address of its
    own, so MASQUERADE takes the node's primary address. Without it a would answer itself from its own
    address, not the ClusterIP's, and the connection would never complete: an answer at all proves it."""
    a = cluster.pod("a")
    seen = k.http_get(a.netns, cluster.ip("self-a"), 80, "/clientip")
    assert seen is not None, "a hairpinned connection must work"
    assert seen.split(":")[0] == cluster.lab.node_ips["node-1"], seen
    # not hairpinned: another pod reaching it keeps its own address (clusterCIDR: no masquerade inside the pods)
    b = cluster.pod("b")
    assert k.http_get(b.netns, cluster.ip("self-a"), 80, "/clientip").startswith(f"{b.ip}:")


def test_service_without_endpoints_refuses_connections(cluster):
    s = Namespace(cluster.pod("a").netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        with pytest.raises(ConnectionRefusedError):  # REJECT, not a black hole (which would time out)
            s.connect((cluster.ip("nothing"), 80))
    finally:
        s.close()


def test_node_port_on_every_node_address_and_localhost(cluster):
    port = cluster.node_port("np")
    assert port in NODE_PORTS  # allocated by the API server
    web = cluster.web
    for node in ("node-1", "node-2"):
        address = cluster.lab.node_ips[node]
        for client in (cluster.node_ns("node-1"), cluster.node_ns("node-2"), cluster.pod("c").netns):
            assert k.http_get(client, address, port, "/hostname") in web, (node, client)
        # proxy_config.py leaves iptables.localhostNodePorts at upstream's default (true) and nodePortAddresses
        # unset (all addresses): kube-proxy sets route_localnet and serves NodePorts on 127.0.0.1 too
        assert k.http_get(cluster.node_ns(node), "127.0.0.1", port, "/hostname") in web


def test_session_affinity_keeps_a_client_on_one_endpoint(cluster):
    for client in (cluster.pod("a").netns, cluster.pod("c").netns):
        seen = hostnames(client, cluster.ip("sticky"), 80, 15)
        assert len(seen) == 1 and None not in seen, seen


def test_external_traffic_policy_local_keeps_client_ip_and_drops_without_local_endpoints(cluster):
    lab = cluster.lab
    # the cloud side, as a user opens it in the console: the node group admits NodePorts from ecs-3's vSwitch
    sg.add_rule(lab.lab, k.NODE_SG, parse_rule("test", "sgr-0000005e", type="ingress", ip_protocol="tcp",
                                               port_range="30000/32767", cidr_ip="192.168.2.0/24"))
    try:
        ecs3, local, cluster_port = lab.netns["ecs-3"], cluster.node_port("local-c"), cluster.node_port("np")
        # node-2 has c: served, and c sees the ECS's own address (no SNAT)
        seen = k.http_get(ecs3, lab.node_ips["node-2"], local, "/clientip")
        assert seen is not None and seen.startswith(f"{lab.node_ips['ecs-3']}:"), seen
        # node-1 has no endpoint of local-c: dropped by kube-proxy (a timeout, not a refusal)
        assert no_local_endpoints_drop(cluster.node_ns("node-1"), "local-c")
        assert k.http_get(ecs3, lab.node_ips["node-1"], local, "/hostname", timeout=1.5) is None
        # externalTrafficPolicy: Cluster for comparison: served from either node, client address masqueraded
        seen = k.http_get(ecs3, lab.node_ips["node-1"], cluster_port, "/clientip")
        assert seen is not None and not seen.startswith(f"{lab.node_ips['ecs-3']}:"), seen
    finally:
        sg.remove_rule(lab.lab, k.NODE_SG, "sgr-0000005e")


def test_internal_traffic_policy_local_uses_only_the_nodes_own_endpoints(cluster):
    ip = cluster.ip("itp-c")
    assert k.http_get(cluster.pod("c").netns, ip, 80, "/hostname") == "c"  # c's node has c
    assert k.http_get(cluster.node_ns("node-2"), ip, 80, "/hostname") == "c"
    # node-1 has none: kube-proxy drops there (DROP, not REJECT: the Service has endpoints, just not here)
    assert no_local_endpoints_drop(cluster.node_ns("node-1"), "itp-c")
    assert not no_local_endpoints_drop(cluster.node_ns("node-2"), "itp-c")
    assert k.http_get(cluster.pod("a").netns, ip, 80, "/hostname", timeout=1) is None


def test_load_balancer_source_ranges(cluster):
    """The cloud controller gives ``lb`` an SLB and writes its address to status.loadBalancer; kube-proxy
    short-circuits that address on the nodes (KUBE-FW chain: only the source ranges reach KUBE-EXT, the rest is
    dropped by KUBE-PROXY-FIREWALL), so a pod's request never leaves its node."""
    lab = cluster.lab
    address: list[str] = []

    def ingress() -> bool:
        status = lab.get_json("service", "lb", "-n", NS).get("status") or {}
        address[:] = [i["ip"] for i in (status.get("loadBalancer") or {}).get("ingress") or () if i.get("ip")]
        return bool(address)

    lab.timings["LoadBalancer Service → status.loadBalancer.ingress"] = apilab.until(
        ingress, "the SLB's address in status.loadBalancer.ingress", RULES_DEADLINE, interval=0.2)
    lb_ip = address[0]
    # before probing c's refusal: kube-proxy on c's node must know the address, else c's packet would just be
    # lost on the way to the SLB and prove nothing
    for node in ("node-1", "node-2"):
        apilab.until(lambda n=node: f"-d {lb_ip}/32" in iptables_save(cluster.node_ns(n), "filter"),
                     f"{lb_ip} in KUBE-PROXY-FIREWALL on {node}", RULES_DEADLINE, interval=0.1)
    assert k.http_get(cluster.pod("a").netns, lb_ip, 80, "/hostname") in cluster.web
    assert k.http_get(cluster.pod("c").netns, lb_ip, 80, "/hostname", timeout=1) is None


def test_a_flushed_node_gets_its_rules_back_from_kube_proxys_canary_check(cluster):
    """Upstream's iptables proxier writes its jumps (PREROUTING → KUBE-SERVICES, …) only on a full sync: at
    start, once an hour, or when its monitor finds the empty KUBE-PROXY-CANARY chains it keeps in mangle, nat
    and filter gone, which is what a flush of the tables (a firewall restart) looks like. The monitor looks every
    syncPeriod. Here the jump and the canaries are removed by hand on node-1 (the node's other rules, the node
    agent's and the NetworkPolicy agent's, are left alone): pods there lose their Services until kube-proxy's
    next look, then get them back, with one jump, not two."""
    node = Namespace(cluster.node_ns("node-1"))
    ip, a = cluster.ip("web"), cluster.pod("a")
    node.run(["iptables", "-t", "nat", "-D", *_JUMP])
    for table in ("mangle", "nat", "filter"):
        node.run(["iptables", "-t", table, "-X", "KUBE-PROXY-CANARY"])
    assert k.http_get(a.netns, ip, 80, "/hostname", timeout=1) is None  # no DNAT: the ClusterIP is nowhere

    def restored() -> bool:
        return node.run(["iptables", "-t", "nat", "-C", *_JUMP], check=False).returncode == 0

    cluster.lab.timings["canary chains gone → jump restored"] = apilab.until(
        restored, "kube-proxy to restore its PREROUTING jump on node-1", SYNC_PERIOD + 10, interval=0.2)
    assert k.http_get(a.netns, ip, 80, "/hostname") in cluster.web
    assert node.run(["iptables", "-t", "nat", "-S", "PREROUTING"]).stdout.count("-j KUBE-SERVICES") == 1
    # and the monitor watches again: it makes its canaries anew once the full sync is done
    apilab.until(lambda: all(node.run(["iptables", "-t", table, "-S", "KUBE-PROXY-CANARY"], check=False).returncode
                             == 0 for table in ("mangle", "nat", "filter")), "the canary chains back", 5, 0.1)


# a pod deleted by a scale-down serves on for 5 s (agnhost's own flag; what a preStop sleep does in a user's pod):
# time for every kube-proxy to stop sending it new connections first
SCALED = k.web_deployment(2, NS, 8080, name="scaled", grace=10, args=("--delay-shutdown=5",)) + f"""
---
apiVersion: v1
kind: Service
metadata: {{name: scaled, namespace: {NS}}}
spec:
  selector: {{app: scaled}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


class RequestLoop:
    """Requests to ``address:port`` from several namespaces, one after the other in a thread each, until stopped;
    every answer (a pod's name, None for a failed request) is kept."""

    def __init__(self, clients: list[str], address: str, port: int) -> None:
        self.answers: dict[str, list[str | None]] = {client: [] for client in clients}
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(client, address, port), daemon=True)
                        for client in clients]
        for thread in self.threads:
            thread.start()

    def _run(self, client: str, address: str, port: int) -> None:
        while not self.stopped.is_set():
            self.answers[client].append(k.http_get(client, address, port, "/hostname", timeout=2))
            self.stopped.wait(0.01)

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=10)


def test_kubectl_scale_changes_the_endpoints_kube_proxy_uses_with_no_failed_request(cluster):
    """The issue's "Done when": ``kubectl scale`` changes the endpoints kube-proxy uses within 2 s, with no
    failed request under a request loop (from a pod on each node, throughout). Up: from the new endpoints
    turning ready in the EndpointSlice (the pods' start is the node agents', not kube-proxy's) to both nodes'
    rules; down: from ``kubectl scale`` itself (the controllers mark the removed pods' endpoints terminating at
    once) to both nodes' rules."""
    lab, service = cluster.lab, f"{NS}/scaled"
    both = ("node-1", "node-2")
    lab.apply(SCALED)
    loop: RequestLoop | None = None
    try:
        lab.wait_running(2, NS, "app=scaled")
        first = wait_ready(lab, "scaled", 8080, 2)
        cluster.wait_rules({node: {service: first} for node in both}, "2 endpoints of scaled in the rules")
        before = set(lab.running(NS, "app=scaled"))
        loop = RequestLoop([cluster.pod("a").netns, cluster.pod("c").netns], cluster.ip("scaled"), 80)

        scaled_at = time.monotonic()
        lab.kubectl("scale", "deployment/scaled", "-n", NS, "--replicas=4")
        ready = wait_ready(lab, "scaled", 8080, 4, timeout=60)
        seconds = cluster.wait_rules({node: {service: ready} for node in both},
                                     "4 endpoints of scaled in the rules", interval=0.05)
        lab.timings["scale 2→4: endpoints ready in the EndpointSlice → both nodes' rules"] = seconds
        lab.timings["scale 2→4: kubectl scale → both nodes' rules"] = round(time.monotonic() - scaled_at, 2)
        assert seconds <= 2.0, f"the new endpoints reached kube-proxy's rules {seconds} s after turning ready"
        new = {key.split("/", 1)[1] for key in set(lab.wait_running(4, NS, "app=scaled")) - before}
        apilab.until(lambda: new <= set(loop.answers[cluster.pod("c").netns][-40:]), "the new pods to answer", 10)

        begin = time.monotonic()  # the clock runs from before kubectl: what its user waits
        lab.kubectl("scale", "deployment/scaled", "-n", NS, "--replicas=2")
        left: list[set[str]] = []

        def two_in_the_rules() -> bool:
            left[:] = [dnat_targets(cluster.node_ns(node)).get(service, set()) for node in both]
            return len(left[0]) == 2 and left[0] <= ready and left[0] == left[1]

        apilab.until(two_in_the_rules, "2 endpoints of scaled in the rules again", RULES_DEADLINE, 0.05)
        elapsed = round(time.monotonic() - begin, 2)
        lab.timings["scale 4→2: kubectl scale → both nodes' rules"] = elapsed
        assert elapsed <= 2.0, f"the removed endpoints left kube-proxy's rules {elapsed} s after kubectl scale"
        # the two kept are the pods the ReplicaSet kept (running() leaves out those being deleted, which serve on)
        assert {f"{pod['status']['podIP']}:8080" for pod in lab.running(NS, "app=scaled").values()} == left[0]
        loop.stop()
        count = sum(len(answers) for answers in loop.answers.values())
        failed = {client: answers.count(None) for client, answers in loop.answers.items() if None in answers}
        assert not failed, f"failed requests (of {count}): {failed}"
        lab.timings["scale: requests in the loop, none failed"] = count
    finally:
        if loop is not None:
            loop.stop()
        lab.delete(SCALED)


def test_udp_flows_move_when_their_endpoint_goes_away(cluster):
    """UDP has no connection to end: upstream kube-proxy deletes the conntrack entries of flows to endpoints that
    left a Service, so a client that keeps its socket (same 5-tuple) reaches the new endpoint instead of the old
    one, which still answers. The endpoint leaves the way it would in a user's cluster: the Service's selector
    changes and the EndpointSlice controller follows."""
    def dns(app: str) -> str:
        return f"""
            apiVersion: v1
            kind: Service
            metadata: {{name: dns, namespace: {NS}}}
            spec:
              selector: {{app: {app}}}
              ports: [{{port: 53, targetPort: 8081, protocol: UDP}}]
            """

    lab = cluster.lab
    client = Namespace(cluster.pod("c").netns).socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(0.5)
    try:
        client.bind(("0.0.0.0", 0))
        lab.apply(dns("a"))
        cluster.wait_rules({"node-2": {f"{NS}/dns": cluster.endpoints({"a"}, 8081)}}, "a as dns's endpoint")
        address = (cluster.ip("dns"), 53)
        answers: list[str | None] = []

        def ask() -> str | None:
            client.sendto(b"hostname", address)
            try:
                answers.append(client.recvfrom(2048)[0].decode())
            except TimeoutError:
                answers.append(None)
            return answers[-1]

        assert ask() == "a" and ask() == "a"  # one flow, kept in conntrack
        lab.apply(dns("b"))  # a is no endpoint any more (and still answers on 8081)
        lab.timings["UDP endpoint moved → same socket answered by the new one"] = apilab.until(
            lambda: ask() == "b", "the same socket to reach b", RULES_DEADLINE)
        # a until kube-proxy's sync (a datagram in flight while it deletes the flow may get no answer), then b
        assert set(answers) <= {"a", "b", None}, answers
        assert ask() == "b" and ask() == "b"  # the flow stays with b
    finally:
        client.close()
        lab.delete(dns("a"))
