"""Install an API-driven cluster's components: the one implementation behind the Ansible roles ``control_plane``
and ``k8s_node`` (``ansible/cluster.yml``) and, through them, the shape ``ack_cluster`` (``cs.ManagedKubernetes``,
``cs.NodePool``) calls too.

- ``install_control_plane``: ACK's managed part, once per lab: the control plane plugged into a vSwitch, the
  cluster's DNS (CoreDNS behind ``kube-system/kube-dns``), acklab's cloud controller and the ingress controller on
  the API (optionally ACK's ``nginx-ingress-controller`` add-on).
- ``install_node``: on one ECS node, the node agent (Terway's live IPAM in the pod vSwitches), upstream
  kube-proxy and the NetworkPolicy agent, in that order (the policy agent's FORWARD jump goes before kube-proxy's).
- ``remove_node`` / ``remove_control_plane``: the reverse (the nodes' instances stay: they are the stack's).

The node's installer acts as the cluster's admin for a few calls (Flannel's RBAC, the NetworkPolicy agent's
definitions, the drain and the Node's deletion). ``api_endpoint`` says how it reaches the API server: ``host``
(the default: the caller is the host, ``delegate_to: localhost``, ``cs.NodePool``) through the lab's kubeconfig on
the host's loopback relay; ``vpc`` (the caller runs inside the node's namespace, as on a separate host: SSH mode)
through the control plane's address in its vSwitch, port 6443, as the node's own agents do (``admin_kubeconfig``).

Each returns what it started or changed, so a caller (an Ansible module) reports ``changed`` truthfully: every
installer underneath is idempotent and leaves a running component with the same configuration alone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acklab.k8s import cloud_controller, cluster_dns, ingress_controller, network_policy_agent
from acklab.k8s.model import flannel
from acklab.k8s.model.ipam import TerwayConfig
from acklab.k8s.model.kubelet import CLUSTER_DOMAIN, ClusterDns, NodeIdentity
from acklab.k8s.model.pod_network import CIDR_DATAPATHS, DATAPATHS, EXCLUSIVE_ENI, Network, Node
from acklab.k8s.node_agent import NodeAgentConfig, ensure_node_agent, node_agent_pid, stop_node_agent
from acklab.k8s.realize import kube_proxy
from acklab.k8s.realize.pod_network import NodeNetwork, load_records
from netns.kernel.files import write_if_changed
from netns.kernel.namespace import Namespace
from netns.model.control_plane import PodNetwork
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import new_cluster_id
from netns.realize import file_lock
from netns.realize.control_plane import (
    ControlPlane,
    ControlPlaneState,
    binary,
    control_planes,
    kubeconfig_path,
    kubectl_apply,
)
from netns.realize.vpc import find_vswitch

# Terway's eni-config defaults on ACK: no warm addresses kept beyond need, at most 5 free ones.
MIN_POOL_SIZE, MAX_POOL_SIZE = 0, 5
PROXY_MODES = ("iptables", "nftables")
DRAIN_TIMEOUT = 20.0  # a drained node's agent removes its pods' namespaces within this
# How a node's installer reaches the API server as the admin: the host's loopback relay, or the VPC.
API_ENDPOINTS = ("host", "vpc")
ADMIN_USER, ADMIN_GROUPS = "kubernetes-admin", ("system:masters",)  # the host kubeconfig's identity
VPC_ADMIN_KUBECONFIG = "admin-vpc.kubeconfig"  # in the control plane's folder (mode 700), removed with it


# --- the control plane and the cluster-wide controllers ------------------------------------------------------------

@dataclass(frozen=True)
class ControlPlaneResult:
    state: ControlPlaneState  # what runs where (its ``started``: the components started in this call)
    changes: tuple[str, ...] = ()  # what was started or applied in this call

    @property
    def cluster_id(self) -> str:
        return self.state.cluster_id

    @property
    def address(self) -> str:
        """The API server's address in the vSwitch."""
        return self.state.address

    @property
    def kubeconfig(self) -> str:
        """The host's kubeconfig (server on 127.0.0.1)."""
        return self.state.kubeconfig

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def existing_cluster_id(lab: str) -> str | None:
    """The lab's control plane, if it has one (a lab has at most one)."""
    planes = control_planes(lab)
    return planes[0].cluster_id if planes else None


@dataclass(frozen=True)
class PodNetworkSpec:
    """The cluster's network plug-in: Terway (pods on the lab's ENIs) or Flannel's ``vpc-route`` / ``vxlan`` with
    ACK's ``pod_cidr`` and ``node_cidr_mask`` (the controller-manager hands each Node a block)."""

    datapath: str = "terway-eniip"
    pod_cidr: str | None = None
    node_cidr_mask: int = 24

    @property
    def flannel(self) -> bool:
        return self.datapath in CIDR_DATAPATHS

    def control_plane(self, resource: str) -> PodNetwork | None:
        """The controller-manager's node IPAM; a bad CIDR or mask: one error naming the field."""
        if self.datapath not in DATAPATHS:
            raise ValidationError(resource, "datapath", f"{self.datapath!r} is not one of {', '.join(DATAPATHS)}")
        if not self.flannel:
            return None
        try:
            cidr = ipaddress.IPv4Network(self.pod_cidr or "", strict=True)
        except ValueError as exc:
            raise ValidationError(resource, "pod_cidr", f"{self.pod_cidr!r}: {exc}") from None
        try:
            return PodNetwork(cidr, self.node_cidr_mask)
        except ValueError as exc:
            raise ValidationError(resource, "node_cidr_mask", str(exc)) from None


def install_control_plane(lab: str, vswitch_id: str, cluster_id: str | None = None, ingress_addon: bool = False,
                          network: PodNetworkSpec = PodNetworkSpec()) -> ControlPlaneResult:
    """The control plane on ``vswitch_id`` (its id: the given one, else the lab's existing one, else a new one),
    CoreDNS, the cloud controller (routing the Nodes' blocks in the VPC for ``vpc-route``) and the ingress
    controller; with ``ingress_addon`` ACK's ingress add-on through the API. Nothing is undone on failure: a second
    call converges from wherever the first one stopped."""
    cluster_id = cluster_id or existing_cluster_id(lab) or new_cluster_id()
    plane = ControlPlane(lab, cluster_id)
    pod_network = network.control_plane(plane.resource)
    changes: list[str] = []
    if plane.read() is None:
        changes.append(f"control plane {cluster_id} created")
    state = plane.ensure(find_vswitch(lab, vswitch_id), pod_network=pod_network)
    changes += [f"{name} started" for name in state.started]
    before = cluster_dns.pid(lab, cluster_id)
    if cluster_dns.ensure(lab, cluster_id) != before:
        changes.append("CoreDNS started")
    before = cloud_controller.CloudController(lab).pid()
    if cloud_controller.ensure(lab, cloud_routes=network.datapath == "vpc-route") != before:
        changes.append("cloud controller started")
    before = ingress_controller.pid(lab)
    if ingress_controller.ensure(lab) != before:
        changes.append("ingress controller started")
    if ingress_addon and _kubectl_apply(lab, ingress_controller.addon_manifests()):
        changes.append("nginx-ingress-controller add-on applied")
    return ControlPlaneResult(state, tuple(dict.fromkeys(changes)))


def remove_control_plane(lab: str, cluster_id: str | None = None) -> tuple[str, ...]:
    """The controllers, the SLBs the cloud controller made for Services, then the control plane (``cluster_id``,
    default the lab's); returns what it stopped or removed. The controllers stop first, so none makes an SLB
    meanwhile; each step runs whether or not the one before found something (a half-made cluster goes too)."""
    changes: list[str] = []
    if ingress_controller.pid(lab) is not None:
        changes.append("ingress controller stopped")
    ingress_controller.stop(lab)
    controller = cloud_controller.CloudController(lab)
    if controller.pid() is not None:
        changes.append("cloud controller stopped")
    controller.stop()
    if cluster_dns.pid(lab, cluster_id) is not None:
        changes.append("CoreDNS stopped")
    cluster_dns.stop(lab, cluster_id)
    for record in cloud_controller.load_records(lab).values():
        with contextlib.suppress(NotFoundError):
            cloud_controller.delete_slb(lab, record.lb_id)
        cloud_controller.drop_record(lab, record.uid)
        changes.append(f"SLB {record.lb_id} of Service {record.key} deleted")
    changes += cloud_controller.remove_routes(lab)
    cluster_id = cluster_id or existing_cluster_id(lab)
    if cluster_id is not None:
        plane = ControlPlane(lab, cluster_id)
        if plane.read() is not None or plane.root.exists():
            changes.append(f"control plane {cluster_id} removed")
        plane.delete()
    return tuple(changes)


def _kubectl_apply(lab: str, manifests: str) -> bool:
    """``kubectl apply`` as the admin; True when an object was created or configured (not all "unchanged")."""
    return applied(kubectl_apply(lab, manifests, "the nginx-ingress-controller add-on"))


def applied(kubectl_output: str) -> bool:
    """Whether ``kubectl apply`` changed anything: each line names an object and ends with ``created``,
    ``configured`` or ``unchanged``."""
    return any(not line.rstrip().endswith(" unchanged") for line in kubectl_output.splitlines() if line.strip())


# --- one node -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeSpec:
    """One ECS instance as a Kubernetes node, and the cluster's network plug-in and kube-proxy settings."""

    lab: str
    name: str  # the Node's name (the ECS host name)
    instance_id: str
    netns: str
    ip: str  # the primary ENI's address
    instance_type: str  # Terway's quota: ENIs per instance, IPs per ENI
    vswitch_id: str  # the node's vSwitch: its zone and VPC
    pod_vswitch_ids: tuple[str, ...]  # where Terway makes the pods' ENIs (those of the node's zone)
    security_groups: tuple[str, ...]  # the pods' ENIs' groups
    proxy_mode: str = "iptables"
    min_pool_size: int = MIN_POOL_SIZE
    max_pool_size: int = MAX_POOL_SIZE
    zone: str | None = None  # None: the node vSwitch's zone
    network: PodNetworkSpec = PodNetworkSpec()  # Flannel: pods on the Node's block of pod_cidr


@dataclass(frozen=True)
class NodeResult:
    name: str
    changes: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def node_agent_config(spec: NodeSpec) -> NodeAgentConfig:
    """The node agent's configuration: Terway ENIs in the pod vSwitches (the first one's gateway, its last-but-two
    address, Alibaba's, as the node's default) or Flannel's block (the Node's podCIDR), ACK's identity (zone,
    instance type, providerID), the cluster's DNS for the pods' resolv.conf."""
    node_vswitch = find_vswitch(spec.lab, spec.vswitch_id)
    zone = spec.zone or node_vswitch.zone_id() or ""
    identity = NodeIdentity(spec.name, spec.instance_id, zone, spec.instance_type, spec.ip)
    dns = ClusterDns((cluster_dns.cluster_dns_ip(),), CLUSTER_DOMAIN)  # the kubelet's --cluster-dns, --cluster-domain
    if spec.network.flannel:
        return NodeAgentConfig(spec.lab, identity, Node(spec.name, spec.netns, spec.ip), spec.network.datapath,
                               spec.network.pod_cidr, dns=dns)
    pod_vswitch = find_vswitch(spec.lab, spec.pod_vswitch_ids[0])
    cidr = pod_vswitch.cidr()
    if cidr is None:
        raise LabError(f"pod vSwitch {pod_vswitch.vswitch_id} has no address block")
    plan_node = Node(spec.name, spec.netns, spec.ip, None, "eth1", str(cidr[-3]), ())
    terway = TerwayConfig(node_vswitch.router.vpc_id, spec.pod_vswitch_ids, spec.security_groups,
                          spec.min_pool_size, spec.max_pool_size)
    return NodeAgentConfig(spec.lab, identity, plan_node, spec.network.datapath, terway=terway, dns=dns)


def cluster_cidr(spec: NodeSpec) -> str:
    """kube-proxy's --cluster-cidr: Flannel's pod CIDR; with Terway the (first) pod vSwitch's block."""
    if spec.network.flannel:
        return str(spec.network.pod_cidr)
    cidr = find_vswitch(spec.lab, spec.pod_vswitch_ids[0]).cidr()
    if cidr is None:
        raise LabError(f"pod vSwitch {spec.pod_vswitch_ids[0]} has no address block")
    return str(cidr)


def admin_kubeconfig(lab: str, api_endpoint: str = "host") -> Path | None:
    """The admin's kubeconfig file for ``api_endpoint``; None when the lab has no control plane (or, ``vpc``, when
    it has no address in a vSwitch).

    ``host``: the lab's kubeconfig (server: the relay on the host's 127.0.0.1, which a node's namespace cannot
    see). ``vpc``: a kubeconfig for an in-VPC client (``ControlPlane.client_kubeconfig``: the control plane's
    vSwitch address, port 6443, the lab's CA) as the admin (``kubernetes-admin`` in ``system:masters``), kept in
    the control plane's folder, so a caller inside a node's namespace reaches the API server the way a node does.
    """
    if api_endpoint not in API_ENDPOINTS:
        raise LabError(f"api_endpoint {api_endpoint!r} is not one of {', '.join(API_ENDPOINTS)}")
    planes = control_planes(lab)
    if not planes:
        return None
    if api_endpoint == "host":
        path = kubeconfig_path(lab)
        return path if path.exists() else None
    plane = planes[0]
    if not plane.namespace.exists():
        return None
    try:
        text = plane.client_kubeconfig(ADMIN_USER, ADMIN_GROUPS)
    except (LabError, OSError):
        return None
    path = plane.root / VPC_ADMIN_KUBECONFIG
    write_if_changed(path, text, 0o600)
    return path


def install_node(spec: NodeSpec, api_endpoint: str = "host") -> NodeResult:
    """The node agent, kube-proxy and the NetworkPolicy agent (none with terway-eni, as on ACK) on one node,
    against the lab's control plane; ``api_endpoint``: how this caller reaches the API server as the admin
    (``host`` or ``vpc``, see the module's docstring)."""
    if spec.proxy_mode not in PROXY_MODES:
        raise LabError(f"node {spec.name}: kube-proxy mode {spec.proxy_mode!r} is not one of {', '.join(PROXY_MODES)}")
    planes = control_planes(spec.lab)
    if not planes:
        raise NotFoundError(f"lab {spec.lab} has no Kubernetes control plane: install it first (role control_plane)")
    admin = admin_kubeconfig(spec.lab, api_endpoint)  # host: the lab's kubeconfig (None: the callees' own default)
    if admin is None and api_endpoint == "vpc":
        raise NotFoundError(f"lab {spec.lab}: its control plane has no address in a vSwitch, which a node reaches")
    changes: list[str] = []
    before = node_agent_pid(spec.lab, spec.name)
    kubeconfig = planes[0].client_kubeconfig(f"system:node:{spec.name}", ("system:nodes",))
    flannel_kubeconfig = None
    if spec.network.flannel:  # Flannel's identity reads every Node (VXLAN's peers); a node reads its own only
        with file_lock(planes[0].root / "flannel.lock"):  # nodes join in parallel: one apply of the role at a time
            kubectl_apply(spec.lab, flannel.RBAC, "Flannel's RBAC", admin)
        flannel_kubeconfig = planes[0].client_kubeconfig(flannel.USER)
    if ensure_node_agent(node_agent_config(spec), kubeconfig, flannel_kubeconfig) != before:
        changes.append("node agent started")
    proxy = kube_proxy.install(spec.lab, spec.name, spec.netns, spec.ip, spec.proxy_mode, cluster_cidr(spec))
    if proxy.started is not None:
        changes.append(f"kube-proxy ({proxy.mode}) started")
    datapath = spec.network.datapath  # pods matched by veth (Terway's routed ones) or by address (a bridge's)
    if datapath == EXCLUSIVE_ENI:  # as on ACK: exclusive-ENI pods' traffic bypasses the node, no NetworkPolicy
        return NodeResult(spec.name, tuple(changes))
    before = network_policy_agent.NetworkPolicyAgent(spec.lab, spec.name, spec.netns, datapath).pid()
    if network_policy_agent.install(spec.lab, spec.name, spec.netns, datapath,
                                    admin_kubeconfig=admin) != before:  # after kube-proxy
        changes.append("NetworkPolicy agent started")
    return NodeResult(spec.name, tuple(changes))


def remove_node(lab: str, name: str, netns: str, ip: str = "", api_endpoint: str = "host") -> NodeResult:
    """The node leaves the cluster: drained (cordoned, its pods deleted, until its agent removed their namespaces),
    its components stopped, pods the agent left removed (it was gone, or the drain timed out), its Node object
    deleted. The instance itself is the caller's (the stack's, or a node pool's, which deletes it next).
    ``api_endpoint``: how this caller reaches the API server (``host`` or ``vpc``)."""
    changes: list[str] = []
    admin = admin_kubeconfig(lab, api_endpoint)  # None: no control plane to tell (its pods and Node go with it)
    agent_running = node_agent_pid(lab, name) is not None and Namespace(netns).exists()
    drained = drain(lab, name, DRAIN_TIMEOUT if agent_running else 0.0, admin) if admin else 0
    if drained:
        changes.append(f"{drained} pod(s) drained")
    if agent_running:
        changes.append("node agent stopped")
    stop_node_agent(lab, name)
    proxy = kube_proxy.KubeProxyDaemon(lab, name, netns)
    if proxy.pid() is not None:
        changes.append("kube-proxy stopped")
    proxy.stop(flush_rules=proxy.config_path.exists())  # its rules go with it (upstream's --cleanup)
    agent = network_policy_agent.NetworkPolicyAgent(lab, name, netns)
    if agent.running() is not None:
        changes.append("NetworkPolicy agent stopped")
    agent.stop()
    left = [r for r in load_records(lab).values() if r.node == name]
    if left:  # after the agent stopped: its pod agent's sockets keep their namespaces alive
        node = Node(name, netns, ip)
        NodeNetwork(Network(lab, "terway-eniip", (node,)), node).remove_pods(left)
        changes.append(f"{len(left)} pod namespace(s) removed")
    if admin and _delete_node_object(lab, name, admin):
        changes.append("Node deleted")
    return NodeResult(name, tuple(changes))


def core_api(lab: str, kubeconfig: Path | None = None) -> Any:
    """The admin's CoreV1Api (the installer acts for the cluster's owner, as ACK's console does), through the lab's
    kubeconfig on the host, or ``kubeconfig`` (``admin_kubeconfig(lab, "vpc")``)."""
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig or kubeconfig_path(lab))))


def drain(lab: str, name: str, timeout: float, kubeconfig: Path | None = None) -> int:
    """Cordon the node and delete its pods (deleted, not evicted: no PodDisruptionBudget exists in the lab yet),
    then wait up to ``timeout`` until its agent removed their namespaces; how many pods were deleted. Nothing when
    the control plane is gone or does not answer. ``kubeconfig``: the admin's (default the host's)."""
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    kubeconfig = kubeconfig or kubeconfig_path(lab)
    if existing_cluster_id(lab) is None or not kubeconfig.exists():
        return 0
    try:
        core = core_api(lab, kubeconfig)
        with contextlib.suppress(ApiException):  # a Node already deleted: its pods are still deleted below
            core.patch_node(name, {"spec": {"unschedulable": True}})
        pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}").items
        for pod in pods:
            with contextlib.suppress(ApiException):
                core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
    except (ApiException, ConfigException, HTTPError, OSError):
        return 0
    deadline = time.monotonic() + timeout
    while any(r.node == name for r in load_records(lab).values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(pods)


def _delete_node_object(lab: str, name: str, kubeconfig: Path | None = None) -> bool:
    kubeconfig = kubeconfig or kubeconfig_path(lab)
    if existing_cluster_id(lab) is None or not kubeconfig.exists():
        return False
    result = subprocess.run([binary("kubectl"), "--kubeconfig", str(kubeconfig), "delete", "node", name,
                             "--ignore-not-found", "--wait=false"], capture_output=True, text=True, timeout=60,
                            check=False)
    return result.returncode == 0 and bool(result.stdout.strip())
