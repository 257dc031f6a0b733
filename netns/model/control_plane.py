"""ACK's managed control plane, pure: the address plan, each component's command line, certificates, kubeconfigs.

One control plane per lab, as ACK runs one per cluster: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler in the namespace ``acklab-<lab>-<cluster id>`` (netns/realize/control_plane.py starts them).
Everything here is data computed from the lab, the cluster id, the folder its files live in and the address the
API server advertises, so it is tested without root and without the binaries.

Addresses (ACK's defaults): Services in 172.21.0.0/20, the first address 172.21.0.1 is the ``kubernetes``
Service (``default/kubernetes``, port 443 → the API server's 6443); NodePorts 30000-32767. With Flannel (a
``PodNetwork``), the controller-manager's node IPAM gives each Node a block of the pod CIDR (``spec.podCIDR``);
with Terway pods take VPC addresses and the controller-manager hands out none.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_CIDR = ipaddress.IPv4Network("172.21.0.0/20")
NODE_PORT_RANGE = (30000, 32767)
CLUSTER_DOMAIN = "cluster.local"
LOOPBACK = "127.0.0.1"
APISERVER_PORT = 6443
SERVICE_PORT = 443  # the kubernetes Service's port
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
CONTROLLER_MANAGER_PORT = 10257  # secure serving (healthz, metrics), inside the namespace only
SCHEDULER_PORT = 10259
FRONT_PROXY_CLIENT = "front-proxy-client"


def first_cluster_ip(cidr: ipaddress.IPv4Network = SERVICE_CIDR) -> ipaddress.IPv4Address:
    """The ClusterIP the API server gives the ``kubernetes`` Service: the first address of the Service CIDR."""
    return cidr.network_address + 1


def service_names(domain: str = CLUSTER_DOMAIN) -> tuple[str, ...]:
    """The names pods use for the API server (the ``kubernetes`` Service in namespace ``default``)."""
    return ("kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{domain}")


def context_name(lab: str) -> str:
    """Cluster, user and context name in kubeconfigs, as kind's ``kind-<name>``."""
    return f"acklab-{lab}"


# --- files -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Where one control plane's files live (a folder under the lab's state folder)."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    def cert(self, name: str) -> Path:
        return self.pki / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.pki / f"{name}.key"

    @property
    def sa_key(self) -> Path:
        return self.pki / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.pki / "sa.pub"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    def kubeconfig(self, component: str) -> Path:
        return self.root / f"{component}.kubeconfig"

    def pidfile(self, component: str) -> Path:
        return self.root / f"{component}.pid"

    def log(self, component: str) -> Path:
        return self.root / f"{component}.log"

    @property
    def forward_state(self) -> Path:
        """The host's loopback port (JSON), kept so that a restarted forwarder takes the same port again."""
        return self.root / "forward.json"

    @property
    def endpoints(self) -> Path:
        """Other addresses the API server is reached at (JSON list: its SLB's), kept in its certificate."""
        return self.root / "endpoints.json"

    @property
    def pod_network(self) -> Path:
        """Flannel's pod CIDR and node mask (JSON), fixed when the cluster is made (ACK: not changeable)."""
        return self.root / "pod-network.json"

    @property
    def plug(self) -> Path:
        """The vSwitch and address the namespace was plugged into (JSON), to plug it back after a loss."""
        return self.root / "plug.json"

    @property
    def merged(self) -> Path:
        """The user kubeconfigs this cluster was merged into (JSON list), unmerged when it goes."""
        return self.root / "merged.json"


# --- certificates ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CertSpec:
    """One certificate the cluster CA signs: CN is the Kubernetes user, O its groups."""

    name: str
    common_name: str
    organizations: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    issuer: str = "ca"


def apiserver_hosts(advertise_address: str, cidr: ipaddress.IPv4Network = SERVICE_CIDR,
                    endpoints: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The API server's SANs: the Service's names and ClusterIP, the advertised address, loopback, then the
    addresses clients reach it at besides (``endpoints``: the API server's SLB, as ACK puts it in the cert)."""
    hosts = (*service_names(), str(first_cluster_ip(cidr)), advertise_address, LOOPBACK, "localhost", *endpoints)
    return tuple(dict.fromkeys(hosts))  # the loopback-only plan advertises 127.0.0.1: once is enough


# --- components ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Component:
    """One process: its binary's name and its flags (``--key=value``, in order)."""

    name: str
    binary: str
    flags: tuple[tuple[str, str], ...]

    def flag(self, key: str) -> str | None:
        return dict(self.flags).get(key)

    def argv(self, binary_path: str) -> list[str]:
        return [binary_path, *(f"--{key}={value}" for key, value in self.flags)]


@dataclass(frozen=True)
class PodNetwork:
    """Flannel's pod addressing (ACK's ``pod_cidr`` and ``node_cidr_mask``): the controller-manager's range
    allocator cuts ``cluster_cidr`` into one ``/node_cidr_mask`` block per Node."""

    cluster_cidr: ipaddress.IPv4Network
    node_cidr_mask: int = 24

    def __post_init__(self) -> None:
        if not self.cluster_cidr.prefixlen < self.node_cidr_mask <= 28:
            raise ValueError(f"node_cidr_mask /{self.node_cidr_mask} must lie after the pod CIDR's "
                             f"/{self.cluster_cidr.prefixlen} and at most /28")

    def to_dict(self) -> dict[str, Any]:
        return {"cluster_cidr": str(self.cluster_cidr), "node_cidr_mask": self.node_cidr_mask}

    @staticmethod
    def from_dict(data: Mapping[str, Any] | None) -> PodNetwork | None:
        if not data:
            return None
        return PodNetwork(ipaddress.IPv4Network(data["cluster_cidr"]), int(data["node_cidr_mask"]))


@dataclass(frozen=True)
class ControlPlanePlan:
    """Everything about one control plane that follows from its identity and its advertised address.

    ``advertise_address`` is the address the API server has on a vSwitch of the lab's VPC, which the
    ``default/kubernetes`` endpoints then point to; None for a control plane on loopback alone, whose endpoints
    nobody maintains (``--endpoint-reconciler-type=none``: the API server refuses loopback endpoints).
    """

    lab: str
    cluster_id: str
    root: Path
    advertise_address: str | None = None
    service_cidr: ipaddress.IPv4Network = SERVICE_CIDR
    node_port_range: tuple[int, int] = NODE_PORT_RANGE
    pod_network: PodNetwork | None = None  # Flannel's; None: Terway (no node IPAM)
    endpoints: tuple[str, ...] = ()  # other addresses clients reach the API server at (its SLB's)

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    @property
    def advertised(self) -> str:
        return self.advertise_address or LOOPBACK

    @property
    def kubernetes_service_ip(self) -> str:
        return str(first_cluster_ip(self.service_cidr))

    @property
    def local_server(self) -> str:
        """The API server as the other components (and probes) reach it inside the namespace."""
        return f"https://{LOOPBACK}:{APISERVER_PORT}"

    def certificates(self) -> tuple[CertSpec, ...]:
        return (
            CertSpec("apiserver", "kube-apiserver",
                     hosts=apiserver_hosts(self.advertised, self.service_cidr, self.endpoints),
                     server=True),
            CertSpec("admin", "kubernetes-admin", ("system:masters",), client=True),
            CertSpec("controller-manager", "system:kube-controller-manager", client=True),
            CertSpec("scheduler", "system:kube-scheduler", client=True),
            # the API server's identity towards aggregated API servers (front proxy), as kubeadm sets it up
            CertSpec("front-proxy-client", FRONT_PROXY_CLIENT, client=True, issuer="front-proxy-ca"),
        )

    def authorities(self) -> dict[str, str]:
        """CA name → its common name: the cluster CA, and the front proxy's CA (which the components check
        aggregated requests against; without it, they log an error about it every few seconds)."""
        return {"ca": f"{context_name(self.lab)} {self.cluster_id} CA",
                "front-proxy-ca": f"{context_name(self.lab)} {self.cluster_id} front-proxy CA"}

    # -- command lines --

    def etcd(self) -> Component:
        # Plain HTTP on the namespace's loopback: nothing outside the control plane's namespace can reach it
        # (as ACK's etcd, which users never see), so it needs no certificates of its own.
        client = f"http://{LOOPBACK}:{ETCD_CLIENT_PORT}"
        peer = f"http://{LOOPBACK}:{ETCD_PEER_PORT}"
        return self._component("etcd", "etcd", [
            ("name", self.cluster_id), ("data-dir", str(self.layout.etcd_data)),
            ("listen-client-urls", client), ("advertise-client-urls", client),
            ("listen-peer-urls", peer), ("initial-advertise-peer-urls", peer),
            ("initial-cluster", f"{self.cluster_id}={peer}"), ("initial-cluster-state", "new"),
            ("log-level", "warn"),
        ])

    def apiserver(self) -> Component:
        lay = self.layout
        flags = [
            ("advertise-address", self.advertised), ("bind-address", "0.0.0.0"),
            ("secure-port", str(APISERVER_PORT)),
            ("etcd-servers", f"http://{LOOPBACK}:{ETCD_CLIENT_PORT}"),
            ("service-cluster-ip-range", str(self.service_cidr)),
            ("service-node-port-range", f"{self.node_port_range[0]}-{self.node_port_range[1]}"),
            ("authorization-mode", "Node,RBAC"), ("enable-admission-plugins", "NodeRestriction"),
            ("allow-privileged", "true"),
            ("client-ca-file", str(lay.cert("ca"))),
            ("tls-cert-file", str(lay.cert("apiserver"))), ("tls-private-key-file", str(lay.key("apiserver"))),
            ("service-account-issuer", f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"),
            ("service-account-key-file", str(lay.sa_pub)),
            ("service-account-signing-key-file", str(lay.sa_key)),
            ("requestheader-client-ca-file", str(lay.cert("front-proxy-ca"))),
            ("requestheader-allowed-names", FRONT_PROXY_CLIENT),
            ("requestheader-username-headers", "X-Remote-User"), ("requestheader-group-headers", "X-Remote-Group"),
            ("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
            ("proxy-client-cert-file", str(lay.cert("front-proxy-client"))),
            ("proxy-client-key-file", str(lay.key("front-proxy-client"))),
            ("cert-dir", str(lay.pki)), ("profiling", "false"),
        ]
        if self.advertise_address is None:
            flags.append(("endpoint-reconciler-type", "none"))
        return self._component("kube-apiserver", "kube-apiserver", flags)

    def controller_manager(self) -> Component:
        lay = self.layout
        conf = str(lay.kubeconfig("controller-manager"))
        return self._component("kube-controller-manager", "kube-controller-manager", [
            ("kubeconfig", conf), ("authentication-kubeconfig", conf), ("authorization-kubeconfig", conf),
            ("bind-address", LOOPBACK), ("secure-port", str(CONTROLLER_MANAGER_PORT)),
            ("leader-elect", "false"),
            ("client-ca-file", str(lay.cert("ca"))), ("root-ca-file", str(lay.cert("ca"))),
            ("service-account-private-key-file", str(lay.sa_key)), ("use-service-account-credentials", "true"),
            ("cluster-signing-cert-file", str(lay.cert("ca"))), ("cluster-signing-key-file", str(lay.key("ca"))),
            ("cluster-name", self.cluster_id),
            *self._node_ipam(), ("profiling", "false"),
        ])

    def _node_ipam(self) -> list[tuple[str, str]]:
        """Flannel: the range allocator hands each Node its block (``spec.podCIDR``), which the node agent builds
        the bridge on and the cloud controller routes. Terway: pods take addresses of the lab's ENIs, never the
        controller-manager's: no node IPAM."""
        if self.pod_network is None:
            return [("allocate-node-cidrs", "false"), ("controllers", "*,-node-ipam-controller")]
        return [("allocate-node-cidrs", "true"), ("cluster-cidr", str(self.pod_network.cluster_cidr)),
                ("node-cidr-mask-size", str(self.pod_network.node_cidr_mask))]

    def scheduler(self) -> Component:
        conf = str(self.layout.kubeconfig("scheduler"))
        return self._component("kube-scheduler", "kube-scheduler", [
            ("kubeconfig", conf), ("authentication-kubeconfig", conf), ("authorization-kubeconfig", conf),
            ("bind-address", LOOPBACK), ("secure-port", str(SCHEDULER_PORT)), ("leader-elect", "false"),
            ("profiling", "false"),
        ])

    def components(self) -> tuple[Component, ...]:
        """In start order: each needs the one before it (the last two only the API server)."""
        return (self.etcd(), self.apiserver(), self.controller_manager(), self.scheduler())

    @staticmethod
    def _component(name: str, binary: str, flags: list[tuple[str, str]]) -> Component:
        return Component(name, binary, tuple(flags))


# --- kubeconfig ------------------------------------------------------------------------------------------------

def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def render_kubeconfig(name: str, server: str, ca_pem: str, cert_pem: str, key_pem: str) -> dict[str, Any]:
    """A kubeconfig with one cluster, user and context, all called ``name``, credentials embedded."""
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": name, "user": {"client-certificate-data": _b64(cert_pem),
                                          "client-key-data": _b64(key_pem)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


_SECTIONS = ("clusters", "users", "contexts")


def merge_kubeconfig(base: Mapping[str, Any] | None, ours: Mapping[str, Any],
                     set_current: bool = True) -> dict[str, Any]:
    """``base`` with ``ours``' clusters, users and contexts added, replacing entries of the same names (as
    ``kind`` merges into ``~/.kube/config``); other entries and settings are kept as they were."""
    merged: dict[str, Any] = dict(base or {})
    merged.setdefault("apiVersion", "v1")
    merged.setdefault("kind", "Config")
    for section in _SECTIONS:
        names = {entry["name"] for entry in ours.get(section) or []}
        kept = [entry for entry in merged.get(section) or [] if entry.get("name") not in names]
        merged[section] = kept + list(ours.get(section) or [])
    if set_current or not merged.get("current-context"):
        merged["current-context"] = ours.get("current-context", "")
    return merged


def unmerge_kubeconfig(base: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``base`` without the cluster, user and context called ``name`` (and not pointing at it any more)."""
    out = dict(base)
    for section in _SECTIONS:
        if section in out:
            out[section] = [entry for entry in out[section] or [] if entry.get("name") != name]
    if out.get("current-context") == name:
        out["current-context"] = ""
    return out
