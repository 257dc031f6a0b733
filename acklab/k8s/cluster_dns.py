"""The cluster's DNS: upstream CoreDNS (built by scripts/build-coredns.sh) behind the ``kube-system/kube-dns``
Service, as ACK runs it; pods reach it at the Service's ClusterIP, the tenth address of the Service CIDR
(172.21.0.10), through kube-proxy.

ACK runs CoreDNS as a Deployment of pods on the nodes. The lab's node agent runs agnhost-like pods (the pod
agent's sockets), not arbitrary images, so CoreDNS runs beside the control plane instead: one process per cluster
in the control plane's namespace, which has an address in the VPC (its vSwitch port). It binds that address, and
the Service has no selector: an EndpointSlice of ours (not the EndpointSlice controller's) points at it. Its
client identity is ``system:coredns`` with upstream's ``system:coredns`` ClusterRole (list/watch of Services,
EndpointSlices, Endpoints, Pods, Namespaces).

The Corefile serves only the cluster's zones (``cluster.local``, the reverse zones) with the kubernetes plugin
(``pods insecure``, ``ttl 30``), like ACK's, without ``forward``: the lab is sealed, so a name outside those
zones is refused at once rather than sent to an upstream that cannot be reached.

Files under the control plane's folder (``/run/acklab/<lab>/cp/<cluster id>/coredns/``, mode 700):
``Corefile``, ``kubeconfig`` (600), ``coredns.pid``, ``coredns.log``. Being under that folder, CoreDNS goes
with the control plane: ``ControlPlane.delete``, ``acklab clean`` and the control plane's crash recovery end it
with its components (found by command line when its namespace vanished).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from acklab.k8s.cluster_controller import ClusterController
from netns.kernel import process
from netns.kernel.files import tail, write_if_changed
from netns.kernel.namespace import end_processes
from netns.model import control_plane as cp_model
from netns.model.errors import LabError, NotFoundError
from netns.realize.control_plane import ControlPlane, binary, control_planes, http_status, kubectl_apply

BINARY = "coredns"
USER = "system:coredns"  # its client certificate's user (upstream binds its ServiceAccount to the same role)
SERVICE_NAMESPACE, SERVICE_NAME = "kube-system", "kube-dns"
SLICE_NAME = "kube-dns-acklab"
# the slice's managed-by label (a label value: no "/"); not endpointslice-controller.k8s.io, so that controller
# leaves it alone
MANAGED_BY = "cluster-dns.acklab.local"
DNS_PORT = 53
METRICS_PORT = 9153
READY_PORT = 8181  # the ready plugin, on the namespace's loopback (what ensure polls)
HEALTH_PORT = 8080  # the health plugin, likewise
TTL = 30  # the kubernetes plugin's answers (ACK's Corefile)
CACHE_SECONDS = 30  # the cache plugin's cap (ACK's Corefile)
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")
DNS_INDEX = 10  # ACK (and kubeadm): kube-dns is the tenth address of the Service CIDR

RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "system:coredns"
  labels: {{kubernetes.io/bootstrapping: rbac-defaults}}
rules:
  - {{apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}}
  - {{apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: "system:coredns"
  labels: {{kubernetes.io/bootstrapping: rbac-defaults}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{USER}"}}]
"""


# --- pure: the address, the Corefile, the Service ---------------------------------------------------------------

def cluster_dns_ip(cidr: ipaddress.IPv4Network = cp_model.SERVICE_CIDR) -> str:
    """The kube-dns Service's ClusterIP (the kubelet's --cluster-dns): 172.21.0.10 in ACK's 172.21.0.0/20.
    It lies in the range's lower band, which the API server keeps for chosen addresses, so no other Service
    takes it first."""
    return str(cidr.network_address + DNS_INDEX)


@dataclass(frozen=True)
class CorefileSettings:
    address: str  # where CoreDNS listens: the control plane namespace's vSwitch address
    kubeconfig: str  # its client kubeconfig
    context: str  # the kubeconfig's context
    domain: str = cp_model.CLUSTER_DOMAIN
    ttl: int = TTL
    cache: int = CACHE_SECONDS


def render_corefile(settings: CorefileSettings) -> str:
    """The Corefile: ACK's plugins in one server block for the cluster's zones only (no forward: sealed lab)."""
    zones = (settings.domain, *REVERSE_ZONES)
    lines = [
        "# acklab's cluster DNS (acklab/k8s/cluster_dns.py): the cluster's zones only, no forward (sealed lab)",
        " ".join(f"{zone}:{DNS_PORT}" for zone in zones) + " {",
        f"    bind {settings.address}",
        "    errors",
        "    log",
        f"    health {cp_model.LOOPBACK}:{HEALTH_PORT}",
        f"    ready {cp_model.LOOPBACK}:{READY_PORT}",
        f"    kubernetes {' '.join(zones)} {{",
        f"        kubeconfig {settings.kubeconfig} {settings.context}",
        "        pods insecure",
        f"        ttl {settings.ttl}",
        "    }",
        f"    prometheus {settings.address}:{METRICS_PORT}",
        f"    cache {settings.cache}",
        "    loadbalance",
        "}",
    ]
    return "\n".join(lines) + "\n"


def dns_query(name: str, query_id: int) -> bytes:
    """A recursive DNS query for ``name``'s A record (RFC 1035: header, one question, class IN)."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.rstrip(".").split("."))
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", 1, 1)


def reply_rcode(reply: bytes, query_id: int) -> int | None:
    """The response code of a reply to query ``query_id`` (None: not a reply to it)."""
    if len(reply) < 12 or struct.unpack("!H", reply[:2])[0] != query_id or not reply[2] & 0x80:
        return None
    return reply[3] & 0x0F


def _ports(target: bool) -> list[dict[str, Any]]:
    ports = [("dns", DNS_PORT, "UDP"), ("dns-tcp", DNS_PORT, "TCP"), ("metrics", METRICS_PORT, "TCP")]
    return [{"name": name, "port": port, "protocol": proto, **({"targetPort": port} if target else {})}
            for name, port, proto in ports]


def service_objects(address: str, cluster_ip: str) -> list[dict[str, Any]]:
    """``kube-system/kube-dns`` (ACK's labels, no selector) and the EndpointSlice that points it at CoreDNS."""
    labels = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE, "labels": labels,
                            "annotations": {"prometheus.io/port": str(METRICS_PORT), "prometheus.io/scrape": "true"}},
               "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "ports": _ports(target=True)}}
    endpoints = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": SLICE_NAME, "namespace": SERVICE_NAMESPACE,
                              "labels": {"kubernetes.io/service-name": SERVICE_NAME,
                                         "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
                 "addressType": "IPv4",
                 "endpoints": [{"addresses": [address],
                                "conditions": {"ready": True, "serving": True, "terminating": False}}],
                 "ports": _ports(target=False)}
    return [service, endpoints]


def manifests(address: str, cluster_ip: str) -> str:
    """RBAC, the Service and its EndpointSlice, as one ``kubectl apply`` input."""
    return RBAC + "---\n" + yaml.safe_dump_all(service_objects(address, cluster_ip), sort_keys=False)


# --- the process: one per cluster, in the control plane's namespace -------------------------------------------

def _coredns() -> str:
    """The binary's path; a bare name when it is not built (to compare command lines, e.g. while stopping)."""
    try:
        return binary(BINARY)
    except LabError:
        return BINARY


@dataclass(frozen=True)
class CoreDns(ClusterController):
    """CoreDNS of the cluster ``cluster_id``: a ClusterController whose process is a Go binary in the control
    plane's namespace, ready when its ready plugin answers 200 (the kubernetes plugin has listed what it serves)
    and a query to its address is answered."""

    cluster_id: str = ""
    module: ClassVar[str] = ""
    title: ClassVar[str] = "CoreDNS"
    stem: ClassVar[str] = "coredns"
    user: ClassVar[str] = USER
    rbac: ClassVar[str] = RBAC
    listed: ClassVar[str] = "Services, EndpointSlices and Namespaces"

    @property
    def plane(self) -> ControlPlane:
        return ControlPlane(self.lab, self.cluster_id)

    @property
    def folder(self) -> Path:
        return self.plane.root / "coredns"

    @property
    def corefile(self) -> Path:
        return self.folder / "Corefile"

    def argv(self) -> list[str]:
        return [_coredns(), "-conf", str(self.corefile)]

    def pid(self) -> int | None:
        """The PID if the pidfile's process runs in the cluster's namespace with our command line."""
        return process.tracked_pid(self.pidfile, self.plane.namespace.inode(), lambda argv: argv == self.argv())

    def ensure(self, timeout: float = 30.0) -> int:
        """Apply RBAC, the Service and its EndpointSlice; run CoreDNS (restarted when its Corefile or kubeconfig
        changed); wait until it is ready and answers. Returns its PID."""
        binary(BINARY)  # reported before anything is made
        state = self.plane.read()
        if state is None or state.vswitch_id is None:
            raise NotFoundError(f"lab {self.lab}: cluster DNS needs control plane {self.cluster_id} plugged into a "
                                "vSwitch (pods reach CoreDNS at its address)")
        kubectl_apply(self.lab, manifests(state.address, cluster_dns_ip()), "the cluster DNS's RBAC and Service")
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)  # the kubeconfig carries a key
        changed = write_if_changed(self.kubeconfig_path, self.plane.client_kubeconfig(self.user))
        settings = CorefileSettings(state.address, str(self.kubeconfig_path), cp_model.context_name(self.lab))
        changed |= write_if_changed(self.corefile, render_corefile(settings), 0o644)
        pid = self.pid()
        if pid is not None and changed:
            end_processes([pid])
            pid = None
        if pid is None:
            pid = process.spawn_in(state.namespace, self.argv(), self.pidfile, self.log, self.folder,
                                    {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        self._wait_ready(pid, state.address, time.monotonic() + timeout)
        return pid

    def _wait_ready(self, pid: int, address: str, deadline: float) -> None:
        """Until the ready plugin answers 200 (the kubernetes plugin has synced) and a query to ``address`` is
        answered: CoreDNS (Caddy) runs the ready plugin's start-up before it opens its DNS sockets."""
        namespace = self.plane.namespace
        while http_status(namespace.socket, cp_model.LOOPBACK, READY_PORT, "/ready", None) != 200 or \
                not self._answers(address):
            if self.pid() != pid:
                raise LabError(f"CoreDNS of lab {self.lab} exited; its log ends:\n{tail(self.log)}")
            if time.monotonic() > deadline:
                raise LabError(f"CoreDNS of lab {self.lab} not ready in time; its log ends:\n{tail(self.log)}")
            time.sleep(0.05)

    def _answers(self, address: str) -> bool:
        """The ``kubernetes`` Service's name resolves over UDP at ``address`` (from inside the namespace)."""
        query_id = secrets.randbits(16)
        name = f"kubernetes.default.svc.{cp_model.CLUSTER_DOMAIN}"
        try:
            with self.plane.namespace.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(0.5)
                sock.connect((address, DNS_PORT))
                sock.send(dns_query(name, query_id))
                return reply_rcode(sock.recv(4096), query_id) == 0
        except OSError:  # refused (not listening yet), timed out
            return False


def _of(lab: str, cluster_id: str | None) -> CoreDns | None:
    if cluster_id is None:
        planes = control_planes(lab)
        cluster_id = planes[0].cluster_id if planes else None
    return CoreDns(lab, cluster_id) if cluster_id else None


def ensure(lab: str, cluster_id: str | None = None, timeout: float = 30.0) -> int:
    """The entry point for the installer: the cluster's DNS serves (``cluster_id``: default the lab's)."""
    found = _of(lab, cluster_id)
    if found is None:
        raise NotFoundError(f"lab {lab} has no Kubernetes control plane for CoreDNS")
    return found.ensure(timeout)


def pid(lab: str, cluster_id: str | None = None) -> int | None:
    found = _of(lab, cluster_id)
    return found.pid() if found is not None else None


def stop(lab: str, cluster_id: str | None = None) -> None:
    """End CoreDNS (the Service stays until the control plane, and its etcd, goes)."""
    found = _of(lab, cluster_id)
    if found is not None:
        found.stop()
