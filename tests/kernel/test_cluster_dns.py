"""Cluster DNS on the real kernel: a cluster installed as the Ansible roles install it (``cluster_install``: the
control plane with CoreDNS, one Terway node with the node agent and upstream kube-proxy), workloads applied with
kubectl, names resolved from inside a pod with glibc's resolver (``ip netns exec <pod> getent``, what
``acklab exec`` runs) through the pod's resolv.conf, the kube-dns Service's ClusterIP and kube-proxy.

One cluster for the module; tests run in file order (the last one deletes a Service resolved by the first).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from acklab.k8s import cluster_dns
from acklab.k8s.cluster_install import NodeSpec, install_control_plane, install_node
from netns.kernel import process
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark, pod_netns_name
from netns.realize import control_plane as cp
from netns.realize.instance import EcsInstance
from tests.k8stools import terway_vpc, web_deployment
from tests.labtools import clean_lab, new_lab, require_cluster_tools, wait_for

pytestmark = pytest.mark.kernel

VENV_BIN = Path(sys.executable).parent
TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kube-proxy", "coredns")
N = ipaddress.IPv4Network
VPC, NODE_VSW, POD_VSW, GROUP = "vpc-0000d501", "vsw-0000d50a", "vsw-0000d50c", "sg-0000d50a"
NS = "dnstest"
DNS_IP = "172.21.0.10"
FAIL_FAST_S = 4.0  # a name outside the cluster's zones: refused at once, under the resolver's timeout (5 s)
GONE_BOUND_S = cluster_dns.TTL + 10  # cached at most TTL seconds, then the API's watch

WORKLOADS = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
{web_deployment(2, NS)}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: peers, namespace: {NS}}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: gone, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
"""


@dataclass
class Cluster:
    lab: str
    node: NodeSpec
    address: str  # CoreDNS's (the control plane's) address in the VPC
    cached: dict[str, float] = field(default_factory=dict)  # name → when it was last resolved

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([str(VENV_BIN / "kubectl"), "--kubeconfig", str(cp.kubeconfig_path(self.lab)), *args],
                                input=stdin, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def pods(self) -> list[dict]:
        return json.loads(self.kubectl("get", "pods", "-n", NS, "-l", "app=web", "-o", "json"))["items"]

    def cluster_ip(self, name: str) -> str:
        return self.kubectl("get", "service", name, "-n", NS, "-o", "jsonpath={.spec.clusterIP}")

    def pod_netns(self) -> str:
        return pod_netns_name(self.lab, NS, sorted(p["metadata"]["name"] for p in self.pods())[0])


def getent(netns: str, *args: str) -> subprocess.CompletedProcess[str]:
    """glibc's resolver inside a namespace, as ``acklab exec`` runs commands (``ip netns exec`` binds
    /etc/netns/<name>/resolv.conf over /etc/resolv.conf)."""
    return subprocess.run(["ip", "netns", "exec", netns, "getent", *args], capture_output=True, text=True,
                          timeout=20)


def addresses(result: subprocess.CompletedProcess[str]) -> set[str]:
    return {line.split()[0] for line in result.stdout.splitlines() if line.strip()} if result.returncode == 0 else set()


def answers(reply: bytes) -> tuple[int, list[str]]:
    """The reply's rcode and its A records (the question is skipped; answers use name pointers or labels)."""
    rcode, count = reply[3] & 0x0F, struct.unpack("!H", reply[6:8])[0]
    at = 12
    while reply[at]:
        at += reply[at] + 1
    at += 5
    found = []
    for _ in range(count):
        if reply[at] & 0xC0 == 0xC0:
            at += 2
        else:
            while reply[at]:
                at += reply[at] + 1
            at += 1
        kind, _, _, length = struct.unpack("!HHIH", reply[at:at + 10])
        at += 10
        if kind == 1:
            found.append(socket.inet_ntoa(reply[at:at + length]))
        at += length
    return rcode, found


def ask(netns: str, name: str, tcp: bool) -> tuple[int, list[str]]:
    """One query to the kube-dns Service from ``netns``, over UDP or TCP (length-prefixed)."""
    query = cluster_dns.dns_query(name, 0x5EED)
    with Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.connect((DNS_IP, 53))
        if not tcp:
            sock.send(query)
            return answers(sock.recv(4096))
        sock.sendall(struct.pack("!H", len(query)) + query)
        head = b""
        while len(head) < 2:
            head += sock.recv(2 - len(head))
        (size,) = struct.unpack("!H", head)
        reply = b""
        while len(reply) < size:
            reply += sock.recv(size - len(reply))
        return answers(reply)


def answered(netns: str, name: str) -> bool:
    """The kube-dns Service answers from ``netns`` (before kube-proxy's first sync its ClusterIP refuses)."""
    try:
        return ask(netns, name, tcp=False)[0] == 0
    except OSError:
        return False


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.fixture(scope="module")
def cluster():
    require_cluster_tools(TOOLS)
    lab = new_lab()
    try:
        _, nodes_vsw = terway_vpc(lab, VPC, NODE_VSW, POD_VSW, GROUP)
        instance = EcsInstance(lab, "i-0000d501", "eni-0000d501")
        instance.create(nodes_vsw, "10.0.16.10", "node-1", "node-1", (GROUP,))
        spec = NodeSpec(lab, "node-1", instance.instance_id, instance.namespace.name, "10.0.16.10", "ecs.g7.xlarge",
                        NODE_VSW, (POD_VSW,), (GROUP,))
        plane = install_control_plane(lab, NODE_VSW)
        assert "CoreDNS started" in plane.changes
        install_node(spec)
        yield Cluster(lab, spec, plane.address)
    finally:
        clean_lab(lab)
    assert not list_namespaces(mark(lab)), "acklab clean left namespaces of the lab"
    etc = os.listdir("/etc/netns") if os.path.isdir("/etc/netns") else []
    assert not [n for n in etc if n.startswith(mark(lab))], "acklab clean left pods' /etc/netns folders"
    assert not cp.end_leftovers(lab), "a CoreDNS or control-plane process outlived acklab clean"


def test_kube_dns_service_points_at_coredns(cluster):
    service = json.loads(cluster.kubectl("get", "service", "kube-dns", "-n", "kube-system", "-o", "json"))
    assert service["spec"]["clusterIP"] == DNS_IP and "selector" not in service["spec"]
    slices = json.loads(cluster.kubectl("get", "endpointslices", "-n", "kube-system", "-l",
                                        "kubernetes.io/service-name=kube-dns", "-o", "json"))["items"]
    assert [e["addresses"] for s in slices for e in s["endpoints"]] == [[cluster.address]]
    assert cluster_dns.pid(cluster.lab) is not None


def test_install_again_leaves_coredns_alone_and_restarts_it_after_kill_9(cluster):
    wait_for(lambda: answered(cluster.node.netns, "kubernetes.default.svc.cluster.local"),
             "kube-proxy's rules for kube-dns on the node", timeout=15)
    before = cluster_dns.pid(cluster.lab)
    assert "CoreDNS started" not in install_control_plane(cluster.lab, NODE_VSW).changes
    assert cluster_dns.pid(cluster.lab) == before
    os.kill(before, signal.SIGKILL)
    begin = time.monotonic()
    after = cluster_dns.ensure(cluster.lab)
    restarted = time.monotonic() - begin
    assert after != before and cluster_dns.pid(cluster.lab) == after
    assert ask(cluster.node.netns, "kubernetes.default.svc.cluster.local", tcp=False) == (0, ["172.21.0.1"])
    print(f"CoreDNS: kill -9 → ensure → ready in {restarted:.2f}s; RSS {rss_mib(after):.0f} MiB")


def test_pods_resolve_services_by_short_and_full_name(cluster):
    cluster.kubectl("apply", "-f", "-", stdin=WORKLOADS)
    wait_for(lambda: len(cluster.pods()) == 2 and all(p["status"].get("podIP") and p["status"].get("phase") ==
                                                      "Running" for p in cluster.pods()), "2 web pods", timeout=30)
    netns = cluster.pod_netns()
    resolv = Path("/etc/netns", netns, "resolv.conf").read_text()
    assert resolv == (f"search {NS}.svc.cluster.local svc.cluster.local cluster.local\n"
                      f"nameserver {DNS_IP}\noptions ndots:5\n")
    web, gone = cluster.cluster_ip("web"), cluster.cluster_ip("gone")
    for name in ("web", f"web.{NS}", f"web.{NS}.svc", f"web.{NS}.svc.cluster.local"):
        assert addresses(getent(netns, "hosts", name)) == {web}, name
    assert addresses(getent(netns, "hosts", "gone")) == {gone}
    cluster.cached["gone"] = time.monotonic()  # in CoreDNS's cache from now on, for at most its TTL
    target = f"{NS}/{cluster.pods()[0]['metadata']['name']}"
    result = subprocess.run([str(VENV_BIN / "acklab"), "exec", "--lab", cluster.lab, target, "--", "getent", "hosts",
                             "web"], capture_output=True, text=True, timeout=20)
    assert addresses(result) == {web}, result.stderr


def test_kubernetes_default_is_the_api_server_and_reverse_lookups_answer(cluster):
    netns = cluster.pod_netns()
    assert addresses(getent(netns, "hosts", "kubernetes.default")) == {"172.21.0.1"}
    reverse = getent(netns, "hosts", DNS_IP)
    assert reverse.returncode == 0 and "kube-dns.kube-system.svc.cluster.local" in reverse.stdout


def test_headless_service_has_the_pods_records(cluster):
    netns = cluster.pod_netns()
    ips = {p["status"]["podIP"] for p in cluster.pods()}
    wait_for(lambda: addresses(getent(netns, "ahostsv4", f"peers.{NS}.svc.cluster.local")) == ips,
             "the headless Service's A records: every ready pod", timeout=15)
    for ip in ips:
        dashed = ip.replace(".", "-")
        assert addresses(getent(netns, "hosts", f"{dashed}.peers.{NS}.svc.cluster.local")) == {ip}
        assert addresses(getent(netns, "hosts", f"{dashed}.{NS}.pod.cluster.local")) == {ip}  # pods insecure


def test_udp_and_tcp_from_a_pod_and_from_the_node(cluster):
    web = cluster.cluster_ip("web")
    for netns in (cluster.pod_netns(), cluster.node.netns):
        for tcp in (False, True):
            assert ask(netns, f"web.{NS}.svc.cluster.local", tcp) == (0, [web]), (netns, tcp)


def test_names_outside_the_cluster_fail_fast(cluster):
    netns = cluster.pod_netns()
    for name in ("example.com", "www.alibabacloud.com", "nosuch"):
        begin = time.monotonic()
        result = getent(netns, "hosts", name)
        assert result.returncode == 2, f"{name} resolved: {result.stdout}"  # 2: not found
        assert time.monotonic() - begin < FAIL_FAST_S, f"{name}: {time.monotonic() - begin:.1f}s"
    assert ask(netns, "example.com", tcp=False)[0] == 5, "REFUSED: no zone of ours, no forwarder"


def test_a_deleted_service_stops_resolving(cluster):
    """Within the answer's TTL of its last resolution (CoreDNS's cache keeps it that long, as on ACK): "gone" was
    resolved (and cached) by an earlier test."""
    netns = cluster.pod_netns()
    cluster.kubectl("delete", "service", "gone", "-n", NS)
    deleted = time.monotonic()
    wait_for(lambda: getent(netns, "hosts", "gone").returncode == 2, "gone to stop resolving",
             timeout=max(1.0, cluster.cached["gone"] + GONE_BOUND_S - deleted))
    print(f"deleted Service stopped resolving {time.monotonic() - deleted:.1f}s after the delete, "
          f"{time.monotonic() - cluster.cached['gone']:.1f}s after it was cached")
    assert addresses(getent(netns, "hosts", "web")) == {cluster.cluster_ip("web")}, "the others still resolve"


def test_resolv_conf_goes_with_the_pod(cluster):
    netns = cluster.pod_netns()
    cluster.kubectl("scale", "deployment", "web", "-n", NS, "--replicas=0")
    wait_for(lambda: not os.path.exists(f"/var/run/netns/{netns}"), "the pod's namespace removed", timeout=20)
    wait_for(lambda: not os.path.exists(f"/etc/netns/{netns}"), "its /etc/netns folder removed", timeout=5)


def test_control_plane_namespace_lost_behind_the_labs_back(cluster):
    """Crash recovery: ``ip netns delete`` of the control plane's namespace leaves its processes running in an
    unnamed one; installing again ends them (CoreDNS too, found by command line) and starts them in a new one,
    plugged with the same address."""
    plane = cp.control_planes(cluster.lab)[0]
    old = cluster_dns.pid(cluster.lab)
    subprocess.run(["ip", "netns", "delete", plane.namespace.name], check=True)
    begin = time.monotonic()
    assert "CoreDNS started" in install_control_plane(cluster.lab, NODE_VSW).changes
    print(f"control plane namespace lost → install again → CoreDNS ready in {time.monotonic() - begin:.1f}s")
    assert old not in process.find(lambda argv: os.path.basename(argv[0]) == "coredns")
    new = cluster_dns.pid(cluster.lab)
    assert new is not None and process.netns_inode(new) == plane.namespace.inode()
    # (ensure has had it answer a query at its address.) The nodes reach it again only when their neighbour
    # entry for that address is refreshed: the new namespace's eth0 has a new MAC address.


def test_coredns_goes_with_the_control_plane(cluster):
    """Removing the control plane (ack_cluster's delete, the role's state=absent) ends CoreDNS and its files."""
    from acklab.k8s.cluster_install import remove_control_plane

    coredns = cluster_dns.CoreDns(cluster.lab, cp.control_planes(cluster.lab)[0].cluster_id)
    argv = coredns.argv()
    assert coredns.pid() is not None
    log = coredns.log.read_text()
    assert "[ERROR]" not in log, log[-2000:]
    assert "CoreDNS stopped" in remove_control_plane(cluster.lab)
    assert not process.find(lambda found: found == argv), "CoreDNS still runs"
    assert not coredns.folder.exists()
