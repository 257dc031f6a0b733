"""The lab's control plane on the real kernel with the real binaries: etcd, kube-apiserver, controller-manager,
scheduler in the cluster's namespace on a vSwitch, kubectl from the host through the loopback relay.

One control plane for the module (starting one takes seconds); the tests that kill components and the one that
cleans the lab come last, in file order.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from netns.kernel import forward
from netns.kernel.namespace import NETNS_DIR, Namespace, alive, list_namespaces
from netns.model.errors import ValidationError
from netns.model.names import mark, netns_name
from netns.realize import control_plane as cp
from netns.realize import state_dir
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch
from tests.labtools import ProbeServer, clean_lab, new_lab, root_netns_state, wait_for

pytestmark = pytest.mark.kernel

N = ipaddress.IPv4Network
VENV_BIN = Path(sys.executable).parent
TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
CLUSTER = "c0000000a"
GIB = 1 << 30


def loopback_listeners() -> dict[str, set[int]]:
    """Listening TCP sockets of the root namespace (``ss -ltnp``): local address → owning PIDs."""
    out = subprocess.run(["ss", "-Hltnp"], check=True, capture_output=True, text=True).stdout
    found: dict[str, set[int]] = {}
    for line in out.splitlines():
        fields = line.split()
        pids = {int(part.split("=")[1]) for part in line.replace(",", " ").split() if part.startswith("pid=")}
        found.setdefault(fields[3], set()).update(pids)
    return found


# --- the relay alone (no Kubernetes binaries needed) ----------------------------------------------------------

def test_relay_accepts_in_one_namespace_and_connects_from_another(lab):
    client, server = Namespace(netns_name(lab, "i-00000001")), Namespace(netns_name(lab, "i-00000002"))
    client.create()
    server.create()
    with ProbeServer(server.name, tcp=(8080,), udp=()):
        listening = client.socket()
        with listening:
            port = forward.listener(listening, "127.0.0.1")
            relay = subprocess.Popen(["nsenter", f"--net={NETNS_DIR}/{server.name}",
                                      *forward.argv(listening.fileno(), ("127.0.0.1", 8080), "test")],
                                     pass_fds=(listening.fileno(),), start_new_session=True)
        try:
            wait_for(lambda: os.stat(f"/proc/{relay.pid}/ns/net").st_ino == server.inode(), "nsenter")
            conn = client.socket()
            conn.settimeout(5)
            conn.connect(("127.0.0.1", port))
            assert conn.recv(100) == b"hello 127.0.0.1\n"  # the server saw the relay on its own loopback
            payload = b"x" * 300_000 + b"\n"
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)  # half-close: the echo still comes back, then the end
            received = b""
            while chunk := conn.recv(1 << 16):
                received += chunk
            assert received == payload
            conn.close()
        finally:
            relay.kill()
            relay.wait()


def tools_missing() -> list[str]:
    return [tool for tool in TOOLS if not (VENV_BIN / tool).exists()]


def test_a_control_plane_on_loopback_alone(lab):
    if tools_missing():
        pytest.skip(f"{', '.join(tools_missing())} not in {VENV_BIN}: run scripts/build-kube.sh (make test does)")
    plane = cp.ControlPlane(lab, "c0000000b")
    state = plane.ensure()
    assert (state.address, state.vswitch_id) == ("127.0.0.1", None)
    kubectl = [str(VENV_BIN / "kubectl"), "--kubeconfig", state.kubeconfig]
    assert subprocess.run([*kubectl, "get", "--raw", "/readyz"], capture_output=True, text=True,
                          check=True).stdout.strip() == "ok"
    svc = subprocess.run([*kubectl, "get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"],
                         capture_output=True, text=True, check=True).stdout
    assert svc == "172.21.0.1"
    # --endpoint-reconciler-type=none: nobody writes endpoints (a loopback address would be refused)
    endpoints = subprocess.run([*kubectl, "get", "endpoints", "kubernetes", "-o", "json"], capture_output=True,
                               text=True)
    assert endpoints.returncode != 0 or not json.loads(endpoints.stdout).get("subsets")
    plane.delete()
    assert not plane.namespace.exists() and not plane.root.exists() and not Path(state.kubeconfig).exists()
    assert cp.end_leftovers(lab) == []
    assert f"127.0.0.1:{state.host_port}" not in loopback_listeners()


# --- one control plane for the rest ---------------------------------------------------------------------------

@dataclass
class Cluster:
    lab: str
    plane: cp.ControlPlane
    state: cp.ControlPlaneState
    ecs: EcsInstance
    seconds: float
    listeners_before: dict[str, set[int]]
    root_before: dict[str, object]

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "kubectl"), "--kubeconfig", self.state.kubeconfig, *args],
                              capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture(scope="module")
def cluster():
    if tools_missing():
        pytest.skip(f"{', '.join(tools_missing())} not in {VENV_BIN}: run scripts/build-kube.sh (make test does)")
    if os.geteuid() != 0:
        pytest.skip("needs root: builds network namespaces")
    lab = new_lab()
    listeners_before, root_before = loopback_listeners(), root_netns_state()
    try:
        router = VpcRouter(lab, "vpc-00000001")
        router.create(N("192.168.0.0/16"))
        vswitch = VSwitch(router, "vsw-0000000a")
        vswitch.create(N("192.168.1.0/24"), "cn-hangzhou-h", "vsw-h")
        ecs = EcsInstance(lab, "i-00000001", "eni-00000001")
        ecs.create(vswitch, "192.168.1.10", "ecs-1", "ecs-1")
        plane = cp.ControlPlane(lab, CLUSTER)
        begin = time.monotonic()
        state = plane.ensure(vswitch)
        yield Cluster(lab, plane, state, ecs, time.monotonic() - begin, listeners_before, root_before)
    finally:
        clean_lab(lab)


def test_ensure_starts_every_component_on_a_vswitch_address(cluster):
    state = cluster.state
    print(f"\nensure {cluster.seconds:.1f} s; started (s to ready): {state.started}")
    print("RSS MiB:", {k: round(v / (1 << 20)) for k, v in cluster.plane.rss().items()})
    assert state.address == "192.168.1.1"  # the lowest free address of the vSwitch (ecs-1 has .10)
    assert state.vswitch_id == "vsw-0000000a"
    assert state.namespace == f"acklab-{cluster.lab}-{CLUSTER}"
    assert all(state.pids.values()), state.pids
    assert set(state.started) == {*cp.BINARIES, cp.FORWARDER}
    assert sum(cluster.plane.rss().values()) <= GIB


def test_address_counts_as_used_in_the_vswitch(cluster):
    vswitch = VSwitch(VpcRouter(cluster.lab, "vpc-00000001"), "vsw-0000000a")
    assert ipaddress.IPv4Address("192.168.1.1") in vswitch.used_addresses()
    second = EcsInstance(cluster.lab, "i-00000002", "eni-00000002")
    assert second.create(vswitch, None, "ecs-2", "ecs-2") == "192.168.1.2"
    second.delete()


def test_kubectl_from_the_host_through_the_loopback_port(cluster):
    assert cp.kubeconfig_path(cluster.lab) == Path(cluster.state.kubeconfig)
    assert oct(os.stat(cluster.state.kubeconfig).st_mode & 0o777) == "0o600"
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    assert cluster.kubectl("config", "current-context").stdout.strip() == f"acklab-{cluster.lab}"
    server = cluster.kubectl("config", "view", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
    assert server == f"https://127.0.0.1:{cluster.state.host_port}"
    namespaces = cluster.kubectl("get", "ns", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(namespaces)


def test_acklab_kubeconfig_prints_the_path_and_merges_only_when_asked(cluster, tmp_path):
    acklab = [str(VENV_BIN / "acklab"), "kubeconfig", "--lab", cluster.lab]
    printed = subprocess.run(acklab, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    assert printed == cluster.state.kubeconfig
    target = tmp_path / "config"
    subprocess.run([*acklab, "--merge", str(target)], capture_output=True, text=True, timeout=30, check=True)
    merged = subprocess.run([str(VENV_BIN / "kubectl"), "--kubeconfig", str(target), "get", "--raw", "/readyz"],
                            capture_output=True, text=True, timeout=30)
    assert merged.stdout.strip() == "ok", merged.stderr
    missing = subprocess.run([str(VENV_BIN / "acklab"), "kubeconfig", "--lab", "nosuchlab"], capture_output=True,
                             text=True, timeout=30)
    assert missing.returncode == 1 and "no Kubernetes control plane" in missing.stderr


def test_a_node_client_reaches_the_api_server_from_inside_the_lab(cluster, tmp_path):
    config = tmp_path / "node.kubeconfig"
    config.write_text(cluster.plane.client_kubeconfig("system:node:ecs-1", ("system:nodes",)))
    assert cluster.plane.client_kubeconfig("system:node:ecs-1", ("system:nodes",)) == config.read_text(), "minted once"
    kubectl = [str(VENV_BIN / "kubectl"), "--kubeconfig", str(config)]
    who = cluster.ecs.namespace.run([*kubectl, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
                                    check=False)
    assert who.stdout.strip() == "system:node:ecs-1", who.stderr
    denied = cluster.ecs.namespace.run([*kubectl, "get", "secrets", "-n", "kube-system"], check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), "a node is no administrator (RBAC)"


def test_kubernetes_service_points_at_the_advertised_address(cluster):
    svc = json.loads(cluster.kubectl("get", "service", "kubernetes", "-n", "default", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"] == "172.21.0.1"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(443, 6443)]
    endpoints = json.loads(cluster.kubectl("get", "endpoints", "kubernetes", "-n", "default", "-o", "json").stdout)
    (subset,) = endpoints["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["192.168.1.1"]
    assert [p["port"] for p in subset["ports"]] == [6443]


def test_an_ecs_on_the_vswitch_reaches_the_api_server_with_tls_verified(cluster):
    ca = (cluster.plane.layout.cert("ca")).read_text()
    tls = ssl.create_default_context(cadata=ca)  # verifies the chain and that 192.168.1.1 is a SAN
    status = cp.http_status(lambda: cluster.ecs.namespace.socket(), "192.168.1.1", 6443, "/readyz", tls)
    assert status == 200
    # RBAC: an unauthenticated request for anything but health and version is refused
    assert cp.http_status(lambda: cluster.ecs.namespace.socket(), "192.168.1.1", 6443, "/api/v1/namespaces",
                           tls) in (401, 403)


def test_rbac_and_the_controllers_work(cluster):
    assert cluster.kubectl("auth", "can-i", "list", "secrets", "--as", "system:serviceaccount:default:default",
                           check=False).stdout.strip() == "no"
    assert cluster.kubectl("auth", "can-i", "list", "secrets").stdout.strip() == "yes"
    # the controller-manager (with its own identity) makes every namespace's service account and root CA
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode
             == 0, "the default service account", timeout=30)
    wait_for(lambda: cluster.kubectl("get", "configmap", "kube-root-ca.crt", check=False).returncode == 0,
             "kube-root-ca.crt", timeout=30)
    # the scheduler looks at a pod and finds no node for it
    cluster.kubectl("run", "waiting", "--image=registry.k8s.io/pause:3.10", "--restart=Never")

    def unschedulable() -> bool:
        pod = json.loads(cluster.kubectl("get", "pod", "waiting", "-o", "json").stdout)
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                   for c in pod["status"].get("conditions", []))

    wait_for(unschedulable, "the scheduler to mark the pod unschedulable", timeout=30)


def test_a_lab_has_one_control_plane(cluster):
    with pytest.raises(ValidationError, match="already has control plane"):
        cp.ControlPlane(cluster.lab, "c0000000b").ensure()


def test_the_root_namespace_gains_one_loopback_listener_and_nothing_else(cluster):
    assert root_netns_state() == cluster.root_before
    lab_pids = _lab_pids(cluster.lab)
    ours = {addr for addr, pids in loopback_listeners().items() if pids & lab_pids}
    assert ours == {f"127.0.0.1:{cluster.state.host_port}"}
    assert ours <= set(loopback_listeners()) - set(cluster.listeners_before)


def test_ensure_again_changes_nothing(cluster):
    again = cluster.plane.ensure()
    assert again.started == {}
    assert again.pids == cluster.state.pids
    assert again.host_port == cluster.state.host_port


@pytest.mark.parametrize("component", ["etcd", "kube-apiserver", "forwarder"])
def test_kill_9_then_ensure_converges(cluster, component):
    pid = cluster.plane.read().pids[component]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), f"{component} to die")
    state = cluster.plane.ensure()
    # upstream's controller-manager exits when the API server goes away while it is still starting its
    # controllers (a kubelet would restart it): then ensure restarts it as well
    assert component in state.started and set(state.started) <= {component, "kube-controller-manager"}, state.started
    assert state.pids[component] not in (None, pid)
    assert all(state.pids.values())
    assert state.host_port == cluster.state.host_port  # the relay took its port again
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_namespace_deleted_behind_the_labs_back_then_ensure_converges(cluster):
    before = cluster.plane.read()
    mac_before = _eth0_mac(before.namespace)
    subprocess.run(["ip", "netns", "delete", before.namespace], check=True)  # its processes live on, unnamed
    state = cluster.plane.ensure()
    # made again with the same MAC: the nodes' ARP entries for the API server (and CoreDNS) stay true
    assert _eth0_mac(state.namespace) == mac_before
    assert set(state.started) == {*cp.BINARIES, cp.FORWARDER}
    assert not any(alive(pid) for pid in before.pids.values() if pid)  # the strays were ended
    assert (state.address, state.host_port) == (before.address, before.host_port)
    assert cluster.kubectl("get", "pod", "waiting", "-o", "name").stdout.strip() == "pod/waiting"  # etcd's data


def test_clean_leaves_nothing(cluster, tmp_path):
    port = cluster.plane.read().host_port
    user_config = tmp_path / "config"
    cluster.plane.merge_into(user_config)
    assert cluster.kubectl("--context", f"acklab-{cluster.lab}", "--kubeconfig", str(user_config),
                           "get", "--raw", "/readyz").stdout.strip() == "ok"
    clean_lab(cluster.lab)
    assert f"acklab-{cluster.lab}" not in user_config.read_text()  # unmerged, as kind delete does
    assert list_namespaces(mark(cluster.lab)) == []
    assert not state_dir(cluster.lab).exists()
    assert cp.end_leftovers(cluster.lab) == []  # no process names the lab's control-plane files
    assert f"127.0.0.1:{port}" not in loopback_listeners()
    assert root_netns_state() == cluster.root_before


def _eth0_mac(netns: str) -> str:
    out = subprocess.run(["ip", "-n", netns, "-br", "link", "show", "dev", "eth0"], check=True, capture_output=True,
                         text=True).stdout.split()
    return out[2]


def _lab_pids(lab: str) -> set[int]:
    from netns.kernel.namespace import processes_in

    inodes = {ns.inode() for ns in list_namespaces(mark(lab))} - {None}
    return set(processes_in(inodes))  # type: ignore[arg-type]
