"""``cs.ManagedKubernetes`` and ``cs.NodePool`` of pulumi-alicloud → an ACK cluster on the lab
(``acklab/k8s/ack_cluster.py``): the managed control plane in the cluster's VPC with the cloud controller
(LoadBalancer Services → SLBs), the API server's SLB and, with ``slb_internet_enabled``, its EIP
(``acklab/k8s/api_endpoint.py``), the cluster's own security group when none is given (``acklab/k8s/cluster_sg.py``)
and, with ``new_nat_gateway``, the cluster's NAT gateway (``acklab/k8s/cluster_nat.py``),
and node pools of ECS instances running the node agent (Terway's live IPAM) and upstream kube-proxy; the data sources
``cs.get_cluster_credential``, ``cs.get_kubernetes_version`` and ``cs.get_managed_kubernetes_clusters``.

``acklab.k8s.ack_cluster`` (the whole Kubernetes side: controllers, DNS, Ingress, policies) is imported where it is
used, not here: a program without a cluster does not pay for it when the plugin starts."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from acklab.k8s.model import ipam
from acklab.provider import engine, sdk
from acklab.provider.base import Context, Diff, Kind, first, given, problems
from acklab.provider.config import ProviderConfig
from acklab.provider.index import Function, arguments, data_id
from acklab.provider.vpc import name_matches
from acklab.provider.wire import known
from netns.model.control_plane import SERVICE_CIDR
from netns.model.eip import new_eip_id
from netns.model.errors import NotFoundError, ValidationError
from netns.model.instance_types import eni_quota
from netns.model.names import check_reference, new_cluster_id, new_id
from netns.realize.control_plane import ControlPlane
from netns.realize.vpc import find_vswitch

if TYPE_CHECKING:
    from acklab.k8s import ack_cluster

_OUTPUTS = "pulumi_alicloud.cs.outputs"
KUBERNETES_VERSION = "1.37.2"  # the control plane's binaries (scripts/build-kube.sh)
ACK_VERSION = f"{KUBERNETES_VERSION}-aliyun.1"  # how ACK spells its versions
NETWORK_PLUGINS = ("terway-eniip", "terway-eni", "flannel")  # ACK's network add-ons; one per cluster
# add-on → acklab's datapath
SUPPORTED_NETWORKS = {"terway-eniip": "terway-eniip", "terway-eni": "terway-eni", "flannel": "vpc-route"}
TERWAY = ("terway-eniip", "terway-eni")  # pods take addresses of pod_vswitch_ids
PROXY_MODES = ("iptables", "ipvs", "nftables")
INGRESS_ADDON = "nginx-ingress-controller"  # run: deployed through the API, served by acklab.k8s.ingress_controller
DNS_ADDON = "coredns"  # every cluster runs CoreDNS (acklab/k8s/cluster_dns.py), asked for or not
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _addons(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The enabled add-ons (the engine sends them in wire names: ``name``, ``disabled``, ``config``)."""
    value = inputs.get("addons")
    return [a for a in value or [] if isinstance(a, dict) and known(a) and not a.get("disabled")]


def network_plugin(inputs: dict[str, Any]) -> str | None:
    found = [a.get("name") for a in _addons(inputs) if a.get("name") in NETWORK_PLUGINS]
    return found[0] if found else None


def ignored_addons(inputs: dict[str, Any]) -> list[str]:
    """Add-ons the lab does not run (storage, logging, monitoring: csi-plugin, logtail-ds, arms-prometheus, ...),
    accepted so that Alibaba's example programs run unchanged, and warned about: every enabled one but the network
    plug-in, the NGINX Ingress add-on and CoreDNS (which every cluster runs)."""
    return [str(a.get("name")) for a in _addons(inputs)
            if a.get("name") not in (*NETWORK_PLUGINS, INGRESS_ADDON, DNS_ADDON)]


def ingress_addon(inputs: dict[str, Any]) -> bool:
    """Whether ACK's NGINX Ingress add-on is enabled (its Deployment and Service are then applied)."""
    return any(a.get("name") == INGRESS_ADDON for a in _addons(inputs))


def effective_proxy_mode(mode: str) -> str:
    """kube-proxy's mode on the nodes: ipvs (ACK's default) runs as iptables, this kernel has no IPVS."""
    return "iptables" if mode == "ipvs" else mode


def _vswitches(inputs: dict[str, Any]) -> list[str]:
    """The control plane's vSwitches: ``vswitch_ids``, else the older ``worker_vswitch_ids``."""
    return list(first(inputs.get("vswitch_ids") or None, inputs.get("worker_vswitch_ids") or None) or [])


def _check_ids(label: str, field: str, value: Any) -> None:
    for item in value or []:
        if isinstance(item, str) and known(item):
            check_reference(label, field, item, "vsw")


class ManagedKubernetes(Kind):
    token = "alicloud:cs/managedKubernetes:ManagedKubernetes"
    label = "cs.ManagedKubernetes"
    # where the API server, the Services and the pods live is fixed when the cluster is made (ACK: ForceNew)
    replace_on = ("service_cidr", "vswitch_ids", "worker_vswitch_ids", "pod_vswitch_ids", "pod_cidr", "node_cidr_mask",
                  "proxy_mode", "ip_stack", "zone_ids")
    # filled in when left out (a name from name_prefix, the lab's version, no group: "")
    computed = ("version", "name", "security_group_id")
    defaults: ClassVar = {"service_cidr": str(SERVICE_CIDR), "proxy_mode": "ipvs", "new_nat_gateway": True,
                          "slb_internet_enabled": True, "is_enterprise_security_group": False}
    unsupported: ClassVar = {
        "ip_stack": (lambda v: v not in (None, "ipv4"), "acklab VPCs are IPv4 only"),
        "zone_ids": (given, "acklab does not make a VPC for the cluster; give vswitch_ids"),
    }
    realized = ("vswitch_ids", "worker_vswitch_ids", "pod_vswitch_ids", "service_cidr", "proxy_mode", "addons",
                "security_group_id", "new_nat_gateway", "pod_cidr", "node_cidr_mask", "slb_internet_enabled",
                "is_enterprise_security_group")
    CREATE_ONLY = ("new_nat_gateway", "slb_internet_enabled", "is_enterprise_security_group")  # ACK: create only

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        value, checks = inputs.get, []
        label = ctx.label
        if known(value("vswitch_ids")) and known(value("worker_vswitch_ids")) and not _vswitches(inputs):
            checks.append(lambda: _fail(label, "vswitch_ids", "is required by acklab: the API server takes an "
                                                              "address in the cluster's VPC (or worker_vswitch_ids)"))
        for field in ("vswitch_ids", "worker_vswitch_ids", "pod_vswitch_ids"):
            if known(value(field)):
                checks.append(lambda f=field: _check_ids(label, f, value(f)))
        cidr = value("service_cidr")
        if known(cidr) and cidr != str(SERVICE_CIDR):
            checks.append(lambda: _fail(label, "service_cidr", f"{cidr!r}: acklab's control plane serves ACK's "
                                                               f"default {SERVICE_CIDR} only (yet)"))
        mode = value("proxy_mode")
        if known(mode) and mode not in PROXY_MODES:
            checks.append(lambda: _fail(label, "proxy_mode", f"{mode!r} is not one of {', '.join(PROXY_MODES)}"))
        if known(value("addons")):
            checks.append(lambda: _check_network(label, inputs))
        if value("is_enterprise_security_group") is True and value("security_group_id"):
            checks.append(lambda: _fail(label, "is_enterprise_security_group", "conflicts with security_group_id: "
                                        "ACK makes the cluster's own (enterprise) group only when none is given"))
        return problems(*checks)

    def diff(self, olds: dict[str, Any], news: dict[str, Any]) -> Diff:
        """As the base's, and another network plug-in in ``addons`` replaces the cluster (ACK cannot switch it)."""
        found = super().diff(olds, news)
        if "addons" in found.changed and known(news.get("addons")) and network_plugin(olds) != network_plugin(news):
            return Diff(found.changed, (*found.replaces, "addons"))
        return found

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from acklab.k8s import ack_cluster, cluster_nat, cluster_sg
        vswitch = find_vswitch(ctx.lab, _vswitches(inputs)[0])
        vpc_id = vswitch.router.vpc_id
        self._check_vpc(ctx, inputs, vpc_id)
        plugin = network_plugin(inputs)
        if plugin == "flannel":
            _check_pod_cidr(ctx.label, inputs["pod_cidr"], vswitch.router.cidr())
        self._warn(ctx, inputs)
        cluster_id = new_cluster_id()
        nat = None
        if inputs.get("new_nat_gateway") is True:
            nat = cluster_nat.plan(cluster_nat.snat_sources(_vswitches(inputs), inputs.get("pod_vswitch_ids") or []))
        # no security_group_id: the cluster's own group, made with ACK's rules (its id is security_group_id)
        group = None if inputs.get("security_group_id") else cluster_sg.plan(
            inputs.get("is_enterprise_security_group") is True)
        facts = ack_cluster.ClusterFacts(cluster_id, vpc_id, tuple(inputs.get("pod_vswitch_ids") or ()),
                                         effective_proxy_mode(inputs["proxy_mode"]),
                                         inputs.get("security_group_id") or (group.sg_id if group else ""),
                                         _name(ctx, inputs, cluster_id),
                                         tuple(_vswitches(inputs)), nat, SUPPORTED_NETWORKS[str(plugin)],
                                         inputs.get("pod_cidr") or "", int(inputs.get("node_cidr_mask") or 24),
                                         new_id("lb"),
                                         new_eip_id() if inputs.get("slb_internet_enabled") is True else "", group)
        ack_cluster.create_cluster(ctx.lab, cluster_id, vswitch.vswitch_id, facts, ctx.label)
        if ingress_addon(inputs):
            ack_cluster.deploy_ingress_addon(ctx.lab, cluster_id)
        return cluster_id, self._outputs(ctx, cluster_id, inputs, vpc_id)

    @staticmethod
    def _check_vpc(ctx: Context, inputs: dict[str, Any], vpc_id: str) -> None:
        """The pod vSwitches are in the cluster's VPC; with new_nat_gateway the node vSwitches too (each gets a SNAT
        entry of the VPC's gateway). Before anything is made."""
        fields = ["pod_vswitch_ids"]
        if inputs.get("new_nat_gateway") is True:
            fields.insert(0, "vswitch_ids" if inputs.get("vswitch_ids") else "worker_vswitch_ids")
        for field in fields:
            for vswitch_id in inputs.get(field) or []:
                found = find_vswitch(ctx.lab, vswitch_id).router.vpc_id
                if found != vpc_id:
                    raise ValidationError(ctx.label, field, f"{vswitch_id} is in VPC {found}, not in the VPC of the "
                                                            f"cluster's vSwitch {_vswitches(inputs)[0]} ({vpc_id})")

    def _warn(self, ctx: Context, inputs: dict[str, Any]) -> None:
        ignored = ignored_addons(inputs)
        if ignored:
            engine.warn(ctx.urn, f"{ctx.label}: addons {', '.join(ignored)} accepted and ignored: the lab does not "
                                 "run them")
        if inputs.get("proxy_mode") == "ipvs":
            engine.warn(ctx.urn, f"{ctx.label}: proxy_mode ipvs: kube-proxy runs in iptables mode (this kernel has "
                                 "no IPVS)")
        if network_plugin(inputs) == "terway-eni":
            engine.warn(ctx.urn, f"{ctx.label}: terway-eni: pods with an exclusive ENI are not subject to "
                                 "NetworkPolicy (as on ACK): their traffic does not pass through the node")

    def _outputs(self, ctx: Context, cluster_id: str, inputs: dict[str, Any], vpc_id: str) -> dict[str, Any]:
        from acklab.k8s import ack_cluster, api_endpoint
        plane = ControlPlane(ctx.lab, cluster_id).read()
        creds = ack_cluster.credentials(ctx.lab, cluster_id)
        facts = ack_cluster.load_cluster(ctx.lab, cluster_id)
        assert plane is not None
        slb_id = facts.api_slb_id if facts is not None else ""
        slb_address = api_endpoint.address(ctx.lab, slb_id) or ""  # the API server's SLB: its intranet endpoint
        # slb_internet_enabled: the EIP bound to that SLB, the internet endpoint
        internet = api_endpoint.internet_address(ctx.lab, facts.api_eip_id, slb_id) if facts is not None else None
        connection = sdk.wire(_OUTPUTS, "ManagedKubernetesConnection",
                              connection_facts(cluster_id, slb_address or plane.address, plane.host_port, ctx.region,
                                               internet))
        authority = sdk.wire(_OUTPUTS, "ManagedKubernetesCertificateAuthority", {
            "cluster_cert": creds.cluster_cert, "client_cert": creds.client_cert, "client_key": creds.client_key})
        nat_gateway_id = facts.nat.ngw_id if facts is not None and facts.nat is not None else ""
        return self.state({
            **inputs, "name": _name(ctx, inputs, cluster_id), "version": inputs.get("version") or ACK_VERSION,
            "vpc_id": vpc_id, "connections": [connection], "certificate_authorities": [authority],
            "security_group_id": (facts.security_group_id if facts is not None else "")
            or inputs.get("security_group_id") or "", "nat_gateway_id": nat_gateway_id,
            "slb_id": slb_id, "slb_internet": internet or "", "slb_intranet": slb_address, "worker_ram_role_name": ""})

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        if ControlPlane(ctx.lab, id_).read() is None:
            return None
        return self._outputs(ctx, id_, state, state.get("vpc_id") or "")

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        from acklab.k8s import ack_cluster
        if ignored_addons(news) != ignored_addons(olds):
            self._warn(ctx, news)
        if ingress_addon(news) and not ingress_addon(olds):
            ack_cluster.deploy_ingress_addon(ctx.lab, id_)
        for field in self.CREATE_ONLY:
            if (olds.get(field) is True) != (news.get(field) is True):
                engine.warn(ctx.urn, f"{ctx.label}: {field} only works when the cluster is created (as ACK's): "
                                     "nothing is made or removed now")
        state = self.merged(olds, news)
        ack_cluster.rename_cluster(ctx.lab, id_, state.get("name") or "")  # what the data source answers
        return state

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        from acklab.k8s import ack_cluster
        ack_cluster.delete_cluster(ctx.lab, id_)


def _name(ctx: Context, inputs: dict[str, Any], cluster_id: str) -> str:
    """``name``, else ``name_prefix`` (or the resource's name) and the cluster id."""
    return inputs.get("name") or f"{inputs.get('name_prefix') or ctx.name}-{cluster_id}"


def connection_facts(cluster_id: str, address: str, host_port: int | None, region: str,
                     internet: str | None = None) -> dict[str, str]:
    """A cluster's endpoints as ACK reports them: the API server in the VPC and, with ``slb_internet_enabled``, at
    the EIP bound to its SLB (``internet``) on the lab's internet. Without that EIP the lab's "outside" is the host:
    the internet endpoint is then the relay on its loopback (as kind publishes a cluster)."""
    public = internet or "127.0.0.1"
    server = f"https://{internet}:6443" if internet else f"https://127.0.0.1:{host_port}"
    return {"api_server_intranet": f"https://{address}:6443", "api_server_internet": server,
            "master_public_ip": public, "service_domain": f"*.{cluster_id}.{region}.alicontainer.com"}


def _fail(label: str, field: str, reason: str) -> None:
    raise ValidationError(label, field, reason)


def _check_network(label: str, inputs: dict[str, Any]) -> None:
    """One network add-on: terway-eniip or terway-eni with pod_vswitch_ids, or flannel with pod_cidr (and
    node_cidr_mask)."""
    plugin = network_plugin(inputs)
    runs = ", ".join(SUPPORTED_NETWORKS)
    if plugin is None:
        _fail(label, "addons", f"no network plug-in: acklab runs {runs} (an add-on by that name)")
    value = inputs.get
    if plugin in TERWAY:
        if known(value("pod_vswitch_ids")) and not value("pod_vswitch_ids"):
            _fail(label, "pod_vswitch_ids", f"is required by {plugin}: Terway takes pod addresses from them")
        if known(value("pod_cidr")) and value("pod_cidr"):
            _fail(label, "pod_cidr", f"is flannel's; with {plugin} pods take addresses of pod_vswitch_ids")
        return
    if known(value("pod_cidr")):
        _check_pod_cidr(label, value("pod_cidr"), None)
    mask = value("node_cidr_mask")
    if known(mask) and mask is not None and not (isinstance(mask, int | float) and 24 <= int(mask) <= 28):
        _fail(label, "node_cidr_mask", f"{mask!r} must be a prefix length from 24 to 28 (ACK's range)")


def _check_pod_cidr(label: str, value: Any, vpc: ipaddress.IPv4Network | None) -> None:
    """Flannel's pod CIDR: a block, not overlapping the Service CIDR or (once known, at create) the VPC."""
    if value is None or value == "":
        _fail(label, "pod_cidr", "is required by flannel: the controller-manager cuts it into a block per node")
    try:
        cidr = ipaddress.IPv4Network(value, strict=True)
    except (ValueError, TypeError):
        _fail(label, "pod_cidr", f"{value!r} is required by flannel and must be an IPv4 CIDR block (host bits zero)")
    if cidr.overlaps(SERVICE_CIDR):
        _fail(label, "pod_cidr", f"{cidr} overlaps the Service CIDR {SERVICE_CIDR}")
    if vpc is not None and cidr.overlaps(vpc):
        _fail(label, "pod_cidr", f"{cidr} overlaps the cluster's VPC {vpc}: pod blocks are routed in the VPC")


def pool_id_of(id_: str) -> str:
    """A pool's id is ``<cluster id>:<node pool id>`` (the real provider's form)."""
    return id_.partition(":")[2]


class NodePool(Kind):
    token = "alicloud:cs/nodePool:NodePool"
    label = "cs.NodePool"
    replace_on = ("cluster_id", "vswitch_ids", "instance_types", "security_group_ids", "security_group_id")
    computed = ("node_pool_name", "name", "desired_size", "node_count")
    lab_required: ClassVar = {"vswitch_ids": "a node is an ECS instance on a vSwitch",
                              "instance_types": "the instance type sets Terway's ENI quota"}
    unsupported: ClassVar = {
        "scaling_config": (given, "auto scaling is not supported by acklab yet; give desired_size"),
        "instances": (given, "adding existing instances is not supported by acklab yet; give desired_size"),
        "eflo_node_group": (given, "Lingjun nodes are not supported by acklab"),
    }
    realized = ("cluster_id", "desired_size", "node_count", "vswitch_ids", "instance_types", "labels", "taints",
                "security_group_ids", "security_group_id")

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """``node_count`` is the deprecated name of ``desired_size``; ``name`` of ``node_pool_name``."""
        size = first(inputs.get("desired_size"), inputs.get("node_count"), 0)
        return {**inputs, "desired_size": size, "node_pool_name": first(inputs.get("node_pool_name"),
                                                                         inputs.get("name"))}

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        value, checks, label = inputs.get, [], ctx.label
        types = value("instance_types")
        if known(types) and types:
            checks.append(lambda: _check_instance_type(label, types[0]))
            if known(value("labels")):
                checks.append(lambda: _check_exclusive_pool(label, types[0], value("labels") or []))
        size = value("desired_size")
        if known(size) and not (isinstance(size, int | float) and 0 <= size <= 20):
            checks.append(lambda: _fail(label, "desired_size", f"{size!r}: 0 to 20 nodes in a lab"))
        if known(value("vswitch_ids")):
            checks.append(lambda: _check_ids(label, "vswitch_ids", value("vswitch_ids")))
        if known(value("taints")):
            checks.append(lambda: _check_taints(label, value("taints") or []))
        return problems(*checks)

    def _spec(self, ctx: Context, cluster_id: str, pool_id: str, inputs: dict[str, Any]) -> ack_cluster.PoolSpec:
        from acklab.k8s import ack_cluster
        cluster = ack_cluster.load_cluster(ctx.lab, cluster_id)
        if cluster is None:
            raise NotFoundError(f"{ctx.label}: cluster_id: {cluster_id} is no cluster of lab {ctx.lab}")
        groups = inputs.get("security_group_ids") or [g for g in (inputs.get("security_group_id"),
                                                                  cluster.security_group_id) if g][:1]
        labels = {item["key"]: item.get("value") or "" for item in inputs.get("labels") or []}
        if ipam.exclusive_pool(labels) and cluster.datapath not in TERWAY:
            raise ValidationError(ctx.label, "labels", f"{ipam.EXCLUSIVE_ENI_LABEL}: exclusive ENI mode is "
                                                       f"Terway's; cluster {cluster_id} runs flannel")
        taints = tuple({"key": t["key"], "value": t.get("value") or "", "effect": t.get("effect") or "NoSchedule"}
                       for t in inputs.get("taints") or [])
        return ack_cluster.PoolSpec(ctx.lab, cluster_id, pool_id, tuple(inputs["vswitch_ids"]),
                                    inputs["instance_types"][0], tuple(groups), labels, taints, ctx.region)

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from acklab.k8s import ack_cluster
        for vswitch_id in inputs["vswitch_ids"]:
            find_vswitch(ctx.lab, vswitch_id)  # before anything is made
        pool_id = "np" + new_cluster_id()[1:]
        spec = self._spec(ctx, inputs["cluster_id"], pool_id, inputs)
        try:
            ack_cluster.scale(spec, int(inputs["desired_size"]))
        except Exception:
            ack_cluster.delete_pool(ctx.lab, pool_id)  # no node outlives a failed create
            raise
        return f"{inputs['cluster_id']}:{pool_id}", self._outputs(ctx, pool_id, inputs)

    def _outputs(self, ctx: Context, pool_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
        name = inputs.get("node_pool_name") or ctx.name
        return self.state({**inputs, "node_pool_id": pool_id, "scaling_group_id": "", "node_pool_name": name,
                           "name": name, "node_count": inputs.get("desired_size")})

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        from acklab.k8s import ack_cluster
        if not ack_cluster.pool_exists(ctx.lab, pool_id_of(id_)):
            return None
        nodes = ack_cluster.live_nodes(ctx.lab, pool_id_of(id_))  # a lost node shows as a smaller pool
        return self.state({**state, "desired_size": len(nodes), "node_count": len(nodes)})

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        from acklab.k8s import ack_cluster
        merged = self.merged(olds, news)
        spec = self._spec(ctx, merged["cluster_id"], pool_id_of(id_), merged)
        ack_cluster.scale(spec, int(merged["desired_size"]))  # also re-applies labels and taints
        return self._outputs(ctx, pool_id_of(id_), merged)

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        from acklab.k8s import ack_cluster
        ack_cluster.delete_pool(ctx.lab, pool_id_of(id_))


def _check_instance_type(label: str, name: Any) -> None:
    if isinstance(name, str) and known(name) and eni_quota(name) is None:
        _fail(label, "instance_types", f"{name!r}: its ENI quota is not known to the lab "
                                       "(netns/model/instance_types.py), and Terway's pod addresses follow from it")


def _check_exclusive_pool(label: str, name: Any, labels: list[Any]) -> None:
    """ACK's exclusive ENI node pools (the label ``k8s.aliyun.com/exclusive-mode-eni-type: eniOnly``) need an
    instance type with more than 6 ENIs."""
    wanted = {item.get("key"): item.get("value") for item in labels if isinstance(item, dict) and known(item)}
    quota = eni_quota(name) if isinstance(name, str) and known(name) else None
    if quota is not None and ipam.exclusive_pool(wanted) and quota.enis < ipam.EXCLUSIVE_MIN_ENIS:
        _fail(label, "instance_types", f"{name!r} allows {quota.enis} ENIs; an exclusive ENI node pool "
                                       f"({ipam.EXCLUSIVE_ENI_LABEL}: {ipam.EXCLUSIVE_ENI_ONLY}) "
                                       "needs more than 6")


def _check_taints(label: str, taints: list[Any]) -> None:
    for taint in taints:
        if not isinstance(taint, dict) or not known(taint):
            continue
        if not taint.get("key"):
            _fail(label, "taints", "a taint needs a key")
        if taint.get("effect") not in (None, *TAINT_EFFECTS):
            _fail(label, "taints", f"effect {taint.get('effect')!r} is not one of {', '.join(TAINT_EFFECTS)}")


# --- data sources -----------------------------------------------------------------------------------------------

_CREDENTIAL = "pulumi_alicloud.cs.get_cluster_credential"
_VERSION = "pulumi_alicloud.cs.get_kubernetes_version"


def get_cluster_credential(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The cluster's admin kubeconfig (the API server through its port on the host's loopback, usable by kubectl
    on the host) and its certificates, from the lab's control plane."""
    from acklab.k8s import ack_cluster
    args = arguments(_CREDENTIAL, "GetClusterCredentialResult", wire_args)
    cluster_id = args.get("cluster_id") or ""
    if lab is None:
        raise NotFoundError("cs.get_cluster_credential: the provider was not told its stack (lab)")
    creds = ack_cluster.credentials(lab, cluster_id)
    authority = sdk.wire(_OUTPUTS, "GetClusterCredentialCertificateAuthorityResult", {
        "cluster_cert": creds.cluster_cert, "client_cert": creds.client_cert, "client_key": creds.client_key})
    return sdk.wire(_CREDENTIAL, "GetClusterCredentialResult", {
        **args, "id": cluster_id, "cluster_name": cluster_id, "kube_config": creds.kubeconfig,
        "certificate_authorities": [authority], "expiration": creds.expiration})


def get_kubernetes_version(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The one version the lab runs: Kubernetes v1.37.2 (as ACK spells it, 1.37.2-aliyun.1), containerd's
    runtime named as ACK names it (the lab runs none)."""
    args = arguments(_VERSION, "GetKubernetesVersionResult", wire_args)
    runtime = sdk.wire(_OUTPUTS, "GetKubernetesVersionMetadataRuntimeResult", {"name": "containerd",
                                                                              "version": "2.1.1"})
    metadata = sdk.wire(_OUTPUTS, "GetKubernetesVersionMetadataResult", {"version": ACK_VERSION,
                                                                        "runtimes": [runtime]})
    wanted = args.get("kubernetes_version")
    found = [metadata] if wanted in (None, "", ACK_VERSION, KUBERNETES_VERSION) else []
    return sdk.wire(_VERSION, "GetKubernetesVersionResult", {
        **args, "id": data_id([ACK_VERSION] if found else []), "metadatas": found})


_CLUSTERS = "pulumi_alicloud.cs.get_managed_kubernetes_clusters"


def _cluster_item(view: ack_cluster.ClusterView, region: str, details: bool) -> dict[str, Any]:
    """One cluster; without ``enable_details`` only its id and name, as the real provider answers."""
    facts = view.facts
    item: dict[str, Any] = {"id": facts.cluster_id, "name": facts.name or facts.cluster_id}
    if not details:
        return sdk.result(_OUTPUTS, "GetManagedKubernetesClustersClusterResult", item)
    connection = sdk.result(_OUTPUTS, "GetManagedKubernetesClustersClusterConnectionResult",
                            connection_facts(facts.cluster_id, view.address, view.host_port, region, view.internet))
    nodes = [sdk.result(_OUTPUTS, "GetManagedKubernetesClustersClusterWorkerNodeResult",
                        {"id": n.instance_id, "name": n.name, "private_ip": n.ip}) for n in view.nodes]
    rrsa = sdk.result(_OUTPUTS, "GetManagedKubernetesClustersClusterRrsaConfigResult", {
        "enabled": False, "ram_oidc_provider_arn": "", "ram_oidc_provider_name": "", "rrsa_oidc_issuer_url": ""})
    return sdk.result(_OUTPUTS, "GetManagedKubernetesClustersClusterResult", {
        **item, "availability_zone": view.zone, "connections": [connection], "vpc_id": facts.vpc_id,
        "nat_gateway_id": facts.nat.ngw_id if facts.nat is not None else "", "rrsa_config": rrsa,
        "security_group_id": facts.security_group_id, "state": "running", "worker_nodes": nodes})


def cluster_wanted(args: dict[str, Any], cluster_id: str, name: str) -> bool:
    """``ids`` (left out or empty: every cluster) and ``name_regex`` (anywhere in the name, as Go's MatchString)."""
    return (not args.get("ids") or cluster_id in args["ids"]) and name_matches(name, args.get("name_regex"))


def get_managed_kubernetes_clusters(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None
                                    ) -> dict[str, Any]:
    """The lab's cluster (its control plane running) by id and name; with `enable_details`, its VPC, NAT gateway,
    security group, zone, endpoints and the nodes of its pools. `kube_config_file_prefix` and `output_file` write
    nothing."""
    from acklab.k8s import ack_cluster
    args = arguments(_CLUSTERS, "GetManagedKubernetesClustersResult", wire_args)
    views = [v for v in (ack_cluster.clusters(lab) if lab else [])
             if cluster_wanted(args, v.facts.cluster_id, v.facts.name or v.facts.cluster_id)]
    items = [_cluster_item(v, config.region, args.get("enable_details") is True) for v in views]
    ids = [i["id"] for i in items]
    return sdk.result(_CLUSTERS, "GetManagedKubernetesClustersResult", {
        **args, "id": data_id(ids), "ids": ids, "names": [i["name"] for i in items], "clusters": items})


KINDS = (ManagedKubernetes(), NodePool())
FUNCTIONS: dict[str, Function] = {
    "alicloud:cs/getClusterCredential:getClusterCredential": get_cluster_credential,
    "alicloud:cs/getKubernetesVersion:getKubernetesVersion": get_kubernetes_version,
    "alicloud:cs/getManagedKubernetesClusters:getManagedKubernetesClusters": get_managed_kubernetes_clusters,
}
