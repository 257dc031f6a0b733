"""An ACK cluster on the lab: the managed control plane with its cloud controller and ingress controller
(``ingress_controller``: nginx in the ``nginx-ingress-controller`` add-on's pods), and node pools whose nodes are
ECS instances running the node agent (Terway's live IPAM), upstream kube-proxy and the NetworkPolicy agent. What
``cs.ManagedKubernetes`` and ``cs.NodePool`` of the ``alicloud`` plugin call: the components come from
``cluster_install`` (the installer the Ansible roles ``control_plane`` and ``k8s_node`` use too); this module adds
what a cloud does around them: the pools' ECS instances, labels and taints, drains, scale.

Facts the kernel has no object for (a cluster's name, vSwitches, pod vSwitches and kube-proxy mode, the ids of what
``new_nat_gateway`` made (``cluster_nat``), of the API server's SLB and EIP (``api_endpoint``) and of the cluster's own
security group (``cluster_sg``), a pool's nodes) are JSON files under ``/run/acklab/<lab>/cs/`` (removed
with the lab by ``acklab clean``), each written whole by the one resource that owns it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from acklab.k8s import api_endpoint, cloud_controller, cluster_install, cluster_nat, cluster_sg, ingress_controller
from acklab.k8s.cluster_install import core_api
from acklab.k8s.model import ipam, load_balancer
from netns.kernel.files import read_json, write_json
from netns.kernel.namespace import Namespace
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import netns_name, new_id
from netns.realize import state_dir
from netns.realize.control_plane import ControlPlane, ControlPlaneState, control_planes, kubeconfig_path
from netns.realize.instance import EcsInstance
from netns.realize.vpc import find_vswitch, routers

POOL_LABEL = "alibabacloud.com/nodepool-id"  # ACK's label naming a node's pool
READY_TIMEOUT = 90.0


def _folder(lab: str) -> Path:
    return state_dir(lab) / "cs"


# --- the cluster --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterFacts:
    cluster_id: str
    vpc_id: str
    pod_vswitch_ids: tuple[str, ...]
    proxy_mode: str  # what kube-proxy runs in (iptables for ipvs: this kernel has no IPVS)
    security_group_id: str = ""
    name: str = ""
    vswitch_ids: tuple[str, ...] = ()  # the control plane's (the first) and the nodes' vSwitches
    nat: cluster_nat.ClusterNat | None = None  # what new_nat_gateway made
    datapath: str = "terway-eniip"  # the network add-on: terway-eniip, terway-eni, or flannel (vpc-route)
    pod_cidr: str = ""  # flannel's
    node_cidr_mask: int = 24  # flannel's
    api_slb_id: str = ""  # the API server's SLB (``api_endpoint``), its id chosen before it is made
    api_eip_id: str = ""  # slb_internet_enabled: the EIP bound to that SLB (``api_endpoint.make_internet``)
    group: cluster_sg.ClusterGroup | None = None  # the security group the cluster made (no security_group_id given)

    @property
    def network(self) -> cluster_install.PodNetworkSpec:
        return cluster_install.PodNetworkSpec(self.datapath, self.pod_cidr or None, self.node_cidr_mask)


def save_cluster(lab: str, facts: ClusterFacts) -> None:
    write_json(_folder(lab) / f"{facts.cluster_id}.json", {**asdict(facts), "nat": facts.nat and facts.nat.to_dict(),
                                                           "group": facts.group and facts.group.to_dict()})


def load_cluster(lab: str, cluster_id: str) -> ClusterFacts | None:
    return _facts(read_json(_folder(lab) / f"{cluster_id}.json"))


def _facts(data: dict[str, Any] | None) -> ClusterFacts | None:
    """A cluster's record; one written before a field existed reads with the field's default."""
    if data is None:
        return None
    return ClusterFacts(data["cluster_id"], data["vpc_id"], tuple(data["pod_vswitch_ids"]), data["proxy_mode"],
                        data.get("security_group_id", ""), data.get("name", ""), tuple(data.get("vswitch_ids") or ()),
                        cluster_nat.ClusterNat.from_dict(data.get("nat")), data.get("datapath", "terway-eniip"),
                        data.get("pod_cidr", ""), int(data.get("node_cidr_mask", 24)), data.get("api_slb_id", ""),
                        data.get("api_eip_id", ""), cluster_sg.ClusterGroup.from_dict(data.get("group")))


def cluster_records(lab: str) -> list[ClusterFacts]:
    """The records of the lab's clusters (``c<hex>.json``; the pools' are ``np<hex>.json``)."""
    folder = _folder(lab)
    found = [_facts(read_json(path)) for path in sorted(folder.glob("c*.json"))] if folder.is_dir() else []
    return [facts for facts in found if facts is not None]


def create_cluster(lab: str, cluster_id: str, vswitch_id: str, facts: ClusterFacts,
                   resource: str = "cs.ManagedKubernetes") -> ControlPlaneState:
    """With ``facts.nat``, the cluster's NAT gateway first (``cluster_nat``: egress before any node comes up); the
    control plane on ``vswitch_id``, the cloud controller and the ingress controller; undone when any of it fails. A
    lab has one cluster (one control plane, one cloud controller): a second is refused before anything is touched, so
    the undo never reaches the first one's SLBs. The record is written first: it names what is being made."""
    others = [plane.cluster_id for plane in control_planes(lab)]
    if others:
        raise ValidationError(resource, "lab", f"lab {lab} already has cluster {others[0]}; a lab has one")
    _sweep_interrupted(lab)
    if facts.nat is not None:
        cluster_nat.check_no_gateway(resource, facts.vpc_id, cluster_nat.gateways_of(lab))
    save_cluster(lab, facts)
    try:  # the ingress controller follows the API: it serves once controller pods run
        if facts.group is not None:  # before any node: node pools without groups of their own join it
            cluster_sg.make(lab, facts.group, facts.vpc_id, facts.pod_cidr or None)
        if facts.nat is not None:
            cluster_nat.make(lab, facts.nat, find_vswitch(lab, vswitch_id), resource)
        state = cluster_install.install_control_plane(lab, vswitch_id, cluster_id, network=facts.network).state
        if facts.api_slb_id:  # the API server behind its SLB, whose addresses the serving certificate then names
            addresses = [api_endpoint.make(lab, facts.api_slb_id, cluster_id, find_vswitch(lab, vswitch_id),
                                           f"{cluster_id}-apiserver", resource)]
            if facts.api_eip_id:  # slb_internet_enabled: an EIP bound to the SLB, the internet endpoint
                addresses.append(api_endpoint.make_internet(lab, facts.api_eip_id, facts.api_slb_id, resource))
            plane = ControlPlane(lab, cluster_id)
            plane.set_endpoints(tuple(addresses))
            state = plane.ensure()
        return state
    except Exception:
        delete_cluster(lab, cluster_id)
        raise


def _sweep_interrupted(lab: str) -> None:
    """The NAT gateways and records of clusters whose create was interrupted (killed before its undo ran): with no
    control plane in the lab (checked by the caller), every cluster record left is such a one. ``acklab recover``
    removes their gateways and security groups too; their EIPs only go here (or with ``acklab clean``)."""
    for stale in cluster_records(lab):
        if stale.nat is not None:
            cluster_nat.remove(lab, stale.nat, f"cs.ManagedKubernetes {stale.cluster_id}")
        api_endpoint.remove(lab, stale.api_slb_id, stale.api_eip_id)
        if stale.group is not None:
            cluster_sg.remove(lab, stale.group)
        (_folder(lab) / f"{stale.cluster_id}.json").unlink(missing_ok=True)


def delete_cluster(lab: str, cluster_id: str) -> None:
    """The API server's EIP and SLB, the controllers (so the cloud controller makes no SLB meanwhile), the SLBs it
    made for Services, the control plane, then what ``new_nat_gateway`` made and the cluster's own security group
    (whatever of them exists)."""
    facts = load_cluster(lab, cluster_id)
    if facts is not None:
        api_endpoint.remove(lab, facts.api_slb_id, facts.api_eip_id)
    cluster_install.remove_control_plane(lab, cluster_id)
    if facts is not None and facts.nat is not None:
        cluster_nat.remove(lab, facts.nat, f"cs.ManagedKubernetes {cluster_id}")
    if facts is not None and facts.group is not None:
        cluster_sg.remove(lab, facts.group)
    (_folder(lab) / f"{cluster_id}.json").unlink(missing_ok=True)


def rename_cluster(lab: str, cluster_id: str, name: str) -> None:
    """A new ``name`` (changed in place, as on ACK) in the record the data sources read."""
    facts = load_cluster(lab, cluster_id)
    if facts is not None and facts.name != name:
        save_cluster(lab, replace(facts, name=name))


@dataclass(frozen=True)
class ClusterView:
    """A cluster as ``cs.get_managed_kubernetes_clusters`` answers it."""

    facts: ClusterFacts
    address: str  # the API server's, in the cluster's vSwitch
    host_port: int | None  # the API server's relay on the host's loopback
    zone: str
    nodes: tuple[PoolNode, ...]
    internet: str | None = None  # the EIP of the API server's SLB (slb_internet_enabled)


def clusters(lab: str) -> list[ClusterView]:
    """The lab's clusters whose control plane exists, with the nodes of every pool (a lab has one cluster, so every
    pool is its)."""
    nodes = tuple(n for path in _pool_paths(lab) for n in load_nodes(lab, path.stem))
    found = []
    for facts in cluster_records(lab):
        plane = ControlPlane(lab, facts.cluster_id).read()
        if plane is not None:
            found.append(ClusterView(facts, plane.address, plane.host_port, _zone(lab, facts), nodes,
                                     api_endpoint.internet_address(lab, facts.api_eip_id, facts.api_slb_id)))
    return found


def _zone(lab: str, facts: ClusterFacts) -> str:
    """The zone of the control plane's vSwitch ("" when it is gone)."""
    if not facts.vswitch_ids:
        return ""
    try:
        return find_vswitch(lab, facts.vswitch_ids[0]).zone_id() or ""
    except NotFoundError:
        return ""


@dataclass(frozen=True)
class Credentials:
    kubeconfig: str  # the host's: server https://127.0.0.1:<port>
    cluster_cert: str  # base64 PEM, as in a kubeconfig
    client_cert: str
    client_key: str
    expiration: str


def credentials(lab: str, cluster_id: str) -> Credentials:
    """The admin kubeconfig of the cluster's API server, reachable from the host on its loopback port."""
    if ControlPlane(lab, cluster_id).read() is None:
        raise NotFoundError(f"cluster {cluster_id} does not exist in lab {lab}")
    text = kubeconfig_path(lab).read_text()
    config = yaml.safe_load(text)
    user = config["users"][0]["user"]
    cert = user["client-certificate-data"]
    return Credentials(text, config["clusters"][0]["cluster"]["certificate-authority-data"], cert,
                       user["client-key-data"], _not_after(cert))


def deploy_ingress_addon(lab: str, cluster_id: str) -> None:
    """ACK's ``nginx-ingress-controller`` add-on through the API: IngressClass ``nginx``, the controller Deployment
    and its LoadBalancer Service in ``kube-system`` (its pods start when the node pools' nodes have joined)."""
    if ControlPlane(lab, cluster_id).read() is None:
        raise NotFoundError(f"cluster {cluster_id} does not exist in lab {lab}")
    ingress_controller.deploy_addon(lab)


def _not_after(cert_b64: str) -> str:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(base64.b64decode(cert_b64))
    return cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- node pools ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolSpec:
    lab: str
    cluster_id: str
    pool_id: str
    vswitch_ids: tuple[str, ...]
    instance_type: str
    security_groups: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    region: str = "cn-hangzhou"


@dataclass(frozen=True)
class PoolNode:
    name: str  # the ECS host name = the Node's name
    instance_id: str
    eni_id: str
    ip: str
    zone: str
    vswitch_id: str


def node_netns(lab: str, node: PoolNode) -> str:
    return netns_name(lab, node.instance_id)


def _pool_path(lab: str, pool_id: str) -> Path:
    return _folder(lab) / f"{pool_id}.json"


def load_nodes(lab: str, pool_id: str) -> list[PoolNode]:
    data = read_json(_pool_path(lab, pool_id)) or {}
    return [PoolNode(**n) for n in data.get("nodes", [])]


def _save_nodes(lab: str, pool_id: str, nodes: list[PoolNode]) -> None:
    write_json(_pool_path(lab, pool_id), {"nodes": [asdict(n) for n in nodes]})


def scale(spec: PoolSpec, desired: int) -> list[PoolNode]:
    """Make the pool hold ``desired`` Ready nodes: nodes whose instance vanished are cleaned up, new ones made in
    the vSwitches round-robin, the newest drained and removed when there are too many. The pool's record is
    written after each node made or removed, so a failure half-way leaves nothing the next run (or a delete) does
    not know of."""
    nodes = load_nodes(spec.lab, spec.pool_id)
    cluster = load_cluster(spec.lab, spec.cluster_id)
    if cluster is None:
        raise NotFoundError(f"cluster {spec.cluster_id} does not exist in lab {spec.lab}")
    for lost in [n for n in nodes if not Namespace(node_netns(spec.lab, n)).exists()]:
        remove_node(spec.lab, lost)  # deleted behind the lab's back: its Node object goes, a new node replaces it
        nodes = [n for n in nodes if n != lost]
        _save_nodes(spec.lab, spec.pool_id, nodes)
    while len(nodes) > desired:
        remove_node(spec.lab, nodes[-1])
        nodes = nodes[:-1]
        _save_nodes(spec.lab, spec.pool_id, nodes)
    wanted = [spec.vswitch_ids[i % len(spec.vswitch_ids)] for i in range(len(nodes), desired)]
    if wanted:
        nodes += _plug_nodes(spec, wanted)
        _save_nodes(spec.lab, spec.pool_id, nodes)
        # the agents and kube-proxies start in parallel: each waits for the API server, not for the others
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda n: _install(spec, cluster, n), nodes[-len(wanted):]))
    wait_ready(spec.lab, [n.name for n in nodes])
    apply_labels_and_taints(spec, nodes)
    return nodes


def _plug_nodes(spec: PoolSpec, vswitch_ids: list[str]) -> list[PoolNode]:
    made = []
    for vswitch_id in vswitch_ids:
        instance = EcsInstance(spec.lab, new_id("i"), new_id("eni"))
        # the host name is the instance id (unique, a valid DNS label): it names the Node
        host = instance.instance_id
        plugged = instance.plug(vswitch_id, None, f"cs.NodePool {spec.pool_id}", host, spec.security_groups,
                                host_name=host)
        made.append(PoolNode(host, instance.instance_id, instance.eni_id, plugged.private_ip, plugged.zone_id or "",
                             vswitch_id))
    return made


def pool_network(spec: PoolSpec, cluster: ClusterFacts) -> cluster_install.PodNetworkSpec:
    """The cluster's network plug-in, or Terway's exclusive ENI mode for a pool labelled for it (its new nodes; as
    on ACK a node keeps the mode it joined with)."""
    if ipam.exclusive_pool(spec.labels) and cluster.datapath == "terway-eniip":
        return cluster_install.PodNetworkSpec("terway-eni")
    return cluster.network


def _install(spec: PoolSpec, cluster: ClusterFacts, node: PoolNode) -> None:
    """The node agent (Terway's live IPAM in the cluster's pod vSwitches), upstream kube-proxy and the
    NetworkPolicy agent (Terway's policy enforcement, Felix-like, following the API)."""
    cluster_install.install_node(cluster_install.NodeSpec(
        spec.lab, node.name, node.instance_id, node_netns(spec.lab, node), node.ip, spec.instance_type,
        node.vswitch_id, cluster.pod_vswitch_ids, tuple(spec.security_groups), cluster.proxy_mode,
        zone=node.zone, network=pool_network(spec, cluster)))


def _ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))


def wait_ready(lab: str, names: list[str], timeout: float = READY_TIMEOUT) -> None:
    """Until each Node is registered and Ready (ACK's node pool answers when its nodes have joined)."""
    from kubernetes.client.rest import ApiException

    core, deadline, missing = core_api(lab), time.monotonic() + timeout, list(names)
    while missing:
        with contextlib.suppress(ApiException):
            missing = [n for n in missing if not _ready(core.read_node(n))]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise LabError(f"nodes {', '.join(missing)} not Ready within {timeout:.0f}s (node agent logs: "
                           f"/run/acklab/{lab}/k8s/<node>.node-agent.log)")
        time.sleep(0.2)


def apply_labels_and_taints(spec: PoolSpec, nodes: list[PoolNode]) -> None:
    """The pool's labels and taints on its Nodes, as ACK sets them (the pool's label too). Taints the pool no
    longer has go; taints others added are kept."""
    core = core_api(spec.lab)
    for node in nodes:
        current = core.read_node(node.name)
        previous = json.loads((current.metadata.annotations or {}).get(_TAINTS_NOTE, "[]"))
        foreign = [t for t in (current.spec.taints or [])
                   if {"key": t.key, "value": t.value or "", "effect": t.effect} not in previous]
        taints = [*({"key": t.key, "value": t.value or "", "effect": t.effect} for t in foreign), *spec.taints]
        core.patch_node(node.name, {
            "metadata": {"labels": {**spec.labels, POOL_LABEL: spec.pool_id},
                         "annotations": {_TAINTS_NOTE: json.dumps(list(spec.taints))}},
            "spec": {"taints": taints or None}})


_TAINTS_NOTE = "acklab.io/nodepool-taints"  # the pool's taints last applied: a removed one is taken off again


def remove_node(lab: str, node: PoolNode) -> None:
    """The node leaves the cluster (``cluster_install.remove_node``: drained, its components stopped, its Node
    object deleted), then its instance goes (its Terway ENIs with it)."""
    cluster_install.remove_node(lab, node.name, node_netns(lab, node), node.ip)
    EcsInstance(lab, node.instance_id, node.eni_id).delete()


def delete_pool(lab: str, pool_id: str) -> None:
    for node in reversed(load_nodes(lab, pool_id)):
        remove_node(lab, node)
        _save_nodes(lab, pool_id, [n for n in load_nodes(lab, pool_id) if n.instance_id != node.instance_id])
    _pool_path(lab, pool_id).unlink(missing_ok=True)


def _pool_paths(lab: str) -> list[Path]:
    return sorted(_folder(lab).glob("np*.json")) if _folder(lab).is_dir() else []


def pool_exists(lab: str, pool_id: str) -> bool:
    return _pool_path(lab, pool_id).exists()


def live_nodes(lab: str, pool_id: str) -> list[PoolNode]:
    """The pool's nodes whose instance still exists (a refresh counts these)."""
    return [n for n in load_nodes(lab, pool_id) if Namespace(node_netns(lab, n)).exists()]


def owned_ids(lab: str) -> set[str]:
    """Cloud ids the lab's clusters made outside any Pulumi checkpoint: the pools' instances and their ENIs (the
    primary ones and Terway's), the cloud controller's SLBs and their ACLs, the EIP and SNAT entries of a cluster's
    NAT gateway, the API server's SLB and EIP, the rules of the cluster's own security group. ``acklab recover``
    keeps them: they belong to a ``cs.NodePool`` or ``cs.ManagedKubernetes`` the checkpoint holds (a gateway or a
    group whose cluster it does not hold goes, and its entries or rules with it)."""
    ids: set[str] = set()
    for cluster in cluster_records(lab):  # what new_nat_gateway made: its EIP and SNAT entries (the gateway's id
        if cluster.nat is not None:       # is the cluster's output nat_gateway_id: in the checkpoint already)
            ids |= cluster.nat.ids() - {cluster.nat.ngw_id}
        if cluster.api_slb_id:  # the API server's SLB (the cluster's output slb_id) and its EIP
            ids |= {cluster.api_slb_id, cluster.api_eip_id} - {""}
        if cluster.group is not None:  # the group's rules (the group is the cluster's output security_group_id)
            ids |= set(cluster.group.rule_ids)
    for path in _pool_paths(lab):
        for node in load_nodes(lab, path.stem):
            ids |= {node.instance_id, node.eni_id}
    instances = {i for i in ids if i.startswith("i-")}
    for router in routers(lab):
        for vswitch in router.vswitches():
            ids |= {eni for eni, facts in vswitch.enis().items() if facts.get("instance") in instances}
    for record in cloud_controller.load_records(lab).values():
        ids |= {record.lb_id, load_balancer.acl_of(record.lb_id)}
    return ids
