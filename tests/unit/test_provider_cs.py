"""cs.ManagedKubernetes and cs.NodePool at Check: what the lab cannot run is refused at preview, naming the field;
ACK's defaults are filled in; add-ons the lab does not run are accepted; the data sources' answers; the pure parts
of new_nat_gateway (which vSwitches get SNAT entries, the refusal of a VPC with a gateway, the cluster's record), of
slb_internet_enabled (the endpoints reported) and of the cluster's own security group (ACK's rules)."""

from __future__ import annotations

import pytest

from acklab.k8s import ack_cluster, cluster_nat, cluster_sg
from acklab.provider import sdk
from acklab.provider.base import Context
from acklab.provider.config import ProviderConfig
from acklab.provider.cs import (
    ManagedKubernetes,
    NodePool,
    connection_facts,
    effective_proxy_mode,
    get_kubernetes_version,
    get_managed_kubernetes_clusters,
    ignored_addons,
    network_plugin,
)
from acklab.provider.wire import UNKNOWN
from netns.model.errors import ValidationError
from netns.model.names import is_cloud_id

CLUSTER = {"worker_vswitch_ids": ["vsw-0000000a"], "pod_vswitch_ids": ["vsw-0000000b"],
           "addons": [{"name": "terway-eniip"}, {"name": "csi-plugin"}, {"name": "logtail-ds", "disabled": True}]}
POOL = {"cluster_id": "c01234567", "vswitch_ids": ["vsw-0000000a"], "instance_types": ["ecs.g7.large"],
        "desired_size": 2}


def ctx(label: str) -> Context:
    return Context(lab="lab1", name=label.split("'")[1], region="cn-hangzhou", label=label)


def failures(kind, news: dict) -> dict[str, str]:
    _, found = kind.check(ctx(f"{kind.label} 'x'"), news)
    return {f.field: f.reason for f in found}


def test_a_terway_cluster_passes_with_acks_defaults():
    inputs, found = ManagedKubernetes().check(ctx("cs.ManagedKubernetes 'k8s'"), CLUSTER)
    assert found == []
    assert (inputs["service_cidr"], inputs["proxy_mode"]) == ("172.21.0.0/20", "ipvs")
    assert network_plugin(inputs) == "terway-eniip" and ignored_addons(inputs) == ["csi-plugin"]
    assert effective_proxy_mode("ipvs") == "iptables" and effective_proxy_mode("nftables") == "nftables"


def test_cluster_errors_name_the_field():
    assert "172.21.0.0/20 only" in failures(ManagedKubernetes(), {**CLUSTER, "service_cidr": "10.96.0.0/12"})[
        "service_cidr"]
    exclusive = {**CLUSTER, "addons": [{"name": "terway-eni"}]}
    assert failures(ManagedKubernetes(), exclusive) == {}
    assert failures(ManagedKubernetes(), {**exclusive, "pod_vswitch_ids": []})["pod_vswitch_ids"] == (
        "is required by terway-eni: Terway takes pod addresses from them")
    assert "with terway-eni pods take addresses" in failures(ManagedKubernetes(), {
        **exclusive, "pod_cidr": "10.244.0.0/16"})["pod_cidr"]
    assert "no network plug-in" in failures(ManagedKubernetes(), {**CLUSTER, "addons": [{"name": "csi-plugin"}]})[
        "addons"]
    assert "is required by terway-eniip" in failures(ManagedKubernetes(), {**CLUSTER, "pod_vswitch_ids": []})[
        "pod_vswitch_ids"]
    assert "is not one of" in failures(ManagedKubernetes(), {**CLUSTER, "proxy_mode": "userspace"})["proxy_mode"]
    assert "is required by acklab" in failures(ManagedKubernetes(), {**CLUSTER, "worker_vswitch_ids": []})[
        "vswitch_ids"]
    assert "flannel" in failures(ManagedKubernetes(), {**CLUSTER, "pod_cidr": "10.244.0.0/16"})["pod_cidr"]


FLANNEL = {"worker_vswitch_ids": ["vsw-0000000a"], "pod_cidr": "172.20.0.0/16", "node_cidr_mask": 26,
           "addons": [{"name": "flannel"}]}


def test_a_flannel_cluster_passes_with_its_pod_cidr():
    inputs, found = ManagedKubernetes().check(ctx("cs.ManagedKubernetes 'k8s'"), FLANNEL)
    assert found == [] and network_plugin(inputs) == "flannel"


@pytest.mark.parametrize("change, field, reason", [
    ({"pod_cidr": None}, "pod_cidr", "is required by flannel"),
    ({"pod_cidr": "172.20.0.1/16"}, "pod_cidr", "host bits zero"),
    ({"pod_cidr": "172.16.0.0/12"}, "pod_cidr", "overlaps the Service CIDR 172.21.0.0/20"),
    ({"node_cidr_mask": 20}, "node_cidr_mask", "from 24 to 28"),
])
def test_flannel_errors_name_the_field(change: dict, field: str, reason: str):
    assert reason in failures(ManagedKubernetes(), {**FLANNEL, **change})[field]


def test_a_flannel_cluster_record_keeps_its_network():
    facts = ack_cluster.ClusterFacts("c01234567", "vpc-00000001", (), "iptables", datapath="vpc-route",
                                     pod_cidr="172.20.0.0/16", node_cidr_mask=26)
    again = ack_cluster._facts({**facts.__dict__, "nat": None})
    assert again == facts and again.network.flannel
    assert str(again.network.control_plane("c").cluster_cidr) == "172.20.0.0/16"
    old = ack_cluster._facts({"cluster_id": "c1", "vpc_id": "v", "pod_vswitch_ids": [], "proxy_mode": "iptables"})
    assert old is not None and old.datapath == "terway-eniip" and old.network.control_plane("c") is None


def test_unknown_values_pass_in_a_preview():
    news = {**CLUSTER, "worker_vswitch_ids": [UNKNOWN], "pod_vswitch_ids": UNKNOWN}
    assert failures(ManagedKubernetes(), news) == {}
    assert failures(NodePool(), {**POOL, "cluster_id": UNKNOWN, "vswitch_ids": UNKNOWN}) == {}


def test_a_node_pool_passes_and_node_count_is_desired_size():
    inputs, found = NodePool().check(ctx("cs.NodePool 'pool'"), {**POOL, "desired_size": None, "node_count": 3})
    assert found == [] and inputs["desired_size"] == 3


def test_node_pool_errors_name_the_field():
    unknown_type = failures(NodePool(), {**POOL, "instance_types": ["ecs.c6.large"]})["instance_types"]
    assert unknown_type.startswith("'ecs.c6.large': its ENI quota is not known to the lab")
    assert "is required by acklab" in failures(NodePool(), {**POOL, "instance_types": None})["instance_types"]
    assert "0 to 20" in failures(NodePool(), {**POOL, "desired_size": 50})["desired_size"]
    assert "effect" in failures(NodePool(), {**POOL, "taints": [{"key": "a", "effect": "Never"}]})["taints"]
    assert "auto scaling" in failures(NodePool(), {**POOL, "scaling_config": {"min_size": 1}})["scaling_config"]


def test_an_exclusive_eni_node_pool_needs_more_than_six_enis_and_a_terway_cluster():
    from acklab.k8s import ack_cluster
    from acklab.k8s.model.ipam import EXCLUSIVE_ENI_LABEL

    exclusive = {**POOL, "labels": [{"key": EXCLUSIVE_ENI_LABEL, "value": "eniOnly"}]}
    assert failures(NodePool(), exclusive)["instance_types"] == (
        "'ecs.g7.large' allows 3 ENIs; an exclusive ENI node pool (k8s.aliyun.com/exclusive-mode-eni-type: "
        "eniOnly) needs more than 6")
    assert failures(NodePool(), {**exclusive, "instance_types": ["ecs.g7.4xlarge"]}) == {}
    assert failures(NodePool(), {**POOL, "labels": [{"key": EXCLUSIVE_ENI_LABEL, "value": "other"}]}) == {}
    spec = ack_cluster.PoolSpec("l", "c01234567", "np1", ("vsw-0000000a",), "ecs.g7.4xlarge", (),
                                {EXCLUSIVE_ENI_LABEL: "eniOnly"})
    terway = ack_cluster.ClusterFacts("c01234567", "vpc-1", ("vsw-0000000c",), "iptables")
    assert ack_cluster.pool_network(spec, terway).datapath == "terway-eni"
    plain = ack_cluster.PoolSpec("l", "c01234567", "np2", ("vsw-0000000a",), "ecs.g7.large", ())
    assert ack_cluster.pool_network(plain, terway).datapath == "terway-eniip"


def test_kubernetes_version_answers_the_labs_one():
    found = get_kubernetes_version(ProviderConfig(), {"clusterType": "ManagedKubernetes"}, None)
    assert [m["version"] for m in found["metadatas"]] == ["1.37.2-aliyun.1"]
    assert get_kubernetes_version(ProviderConfig(), {"kubernetesVersion": "1.30.1-aliyun.1"}, None)["metadatas"] == []


def test_new_nat_gateway_is_on_by_default_as_in_the_sdk():
    inputs, _ = ManagedKubernetes().check(ctx("cs.ManagedKubernetes 'k8s'"), CLUSTER)
    assert inputs["new_nat_gateway"] is True
    inputs, _ = ManagedKubernetes().check(ctx("cs.ManagedKubernetes 'k8s'"), {**CLUSTER, "new_nat_gateway": False})
    assert inputs["new_nat_gateway"] is False
    assert "new_nat_gateway" in ManagedKubernetes.realized and "new_nat_gateway" not in ManagedKubernetes.replace_on


def test_snat_entries_for_the_node_and_pod_vswitches_each_once():
    sources = cluster_nat.snat_sources(["vsw-0000000a", "vsw-0000000c"], ["vsw-0000000b", "vsw-0000000a"])
    assert sources == ("vsw-0000000a", "vsw-0000000c", "vsw-0000000b")
    nat = cluster_nat.plan(sources)
    assert is_cloud_id(nat.ngw_id, "ngw") and nat.eip_id.startswith("eip-")
    assert [source for _, source in nat.entries] == list(sources)
    assert all(is_cloud_id(entry, "snat") for entry, _ in nat.entries) and len(nat.ids()) == 5
    assert cluster_nat.ClusterNat.from_dict(nat.to_dict()) == nat and cluster_nat.ClusterNat.from_dict(None) is None


def test_a_vpc_with_a_nat_gateway_is_refused_naming_the_field():
    label = "cs.ManagedKubernetes 'k8s'"
    cluster_nat.check_no_gateway(label, "vpc-0000000a", [("ngw-0000000f", "vpc-0000000b")])  # another VPC's: fine
    with pytest.raises(ValidationError) as found:
        cluster_nat.check_no_gateway(label, "vpc-0000000a", [("ngw-0000000f", "vpc-0000000a")])
    assert found.value.field == "new_nat_gateway"
    assert "VPC vpc-0000000a already has NAT gateway ngw-0000000f" in found.value.reason
    assert "set new_nat_gateway = false" in found.value.reason


LAB = "unitcsnat"


@pytest.fixture
def records_in(tmp_path, monkeypatch):
    monkeypatch.setattr(ack_cluster, "state_dir", lambda lab: tmp_path / lab)
    return tmp_path / LAB / "cs"


def test_the_cluster_record_names_what_new_nat_gateway_made(records_in):
    nat = cluster_nat.plan(["vsw-0000000a", "vsw-0000000b"])
    facts = ack_cluster.ClusterFacts("c0123abcd", "vpc-0000000a", ("vsw-0000000b",), "iptables", "", "ack-lab",
                                     ("vsw-0000000a",), nat)
    ack_cluster.save_cluster(LAB, facts)
    assert ack_cluster.load_cluster(LAB, "c0123abcd") == facts
    assert ack_cluster.cluster_records(LAB) == [facts]
    # acklab recover keeps the EIP and the entries; the gateway is the cluster's output nat_gateway_id
    assert ack_cluster.owned_ids(LAB) == nat.ids() - {nat.ngw_id}
    # a record written before new_nat_gateway existed reads with no gateway
    (records_in / "c0123abcd.json").write_text('{"cluster_id": "c0123abcd", "vpc_id": "vpc-0000000a", '
                                               '"pod_vswitch_ids": ["vsw-0000000b"], "proxy_mode": "iptables"}')
    old = ack_cluster.load_cluster(LAB, "c0123abcd")
    assert old is not None and (old.nat, old.name, old.vswitch_ids) == (None, "", ())
    assert ack_cluster.owned_ids(LAB) == set()


def _view(cluster_id: str, name: str, nat: cluster_nat.ClusterNat | None) -> ack_cluster.ClusterView:
    facts = ack_cluster.ClusterFacts(cluster_id, "vpc-0000000a", ("vsw-0000000b",), "iptables", "sg-0000000c", name,
                                     ("vsw-0000000a",), nat)
    node = ack_cluster.PoolNode("i-0000000d", "i-0000000d", "eni-0000000e", "10.4.0.7", "cn-hangzhou-a",
                                "vsw-0000000a")
    return ack_cluster.ClusterView(facts, "10.4.0.5", 40123, "cn-hangzhou-a", (node,))


def test_managed_kubernetes_clusters_answer_the_labs_clusters(monkeypatch):
    nat = cluster_nat.plan(["vsw-0000000a"])
    views = [_view("c0123abcd", "ack-lab-c0123abcd", nat), _view("c4567cdef", "other", None)]
    monkeypatch.setattr(ack_cluster, "clusters", lambda lab: views)
    config = ProviderConfig("cn-hangzhou")
    answer = get_managed_kubernetes_clusters(config, {}, "lab1")
    assert answer["ids"] == ["c0123abcd", "c4567cdef"] and answer["names"] == ["ack-lab-c0123abcd", "other"]
    brief = answer["clusters"][0]  # without enable_details: the id and the name only, as the real provider's
    assert (brief["id"], brief["name"], brief["vpcId"], brief["workerNodes"]) == ("c0123abcd", "ack-lab-c0123abcd",
                                                                                 None, None)
    module = "pulumi_alicloud.cs.outputs"
    assert set(brief) == set(sdk.output_type_names(module, "GetManagedKubernetesClustersClusterResult").values())
    detailed = get_managed_kubernetes_clusters(config, {"nameRegex": "^ack", "enableDetails": True}, "lab1")
    assert detailed["ids"] == ["c0123abcd"] and detailed["nameRegex"] == "^ack" and detailed["enableDetails"] is True
    cluster = detailed["clusters"][0]
    assert (cluster["natGatewayId"], cluster["vpcId"], cluster["securityGroupId"], cluster["availabilityZone"],
            cluster["state"]) == (nat.ngw_id, "vpc-0000000a", "sg-0000000c", "cn-hangzhou-a", "running")
    assert cluster["connections"][0]["apiServerIntranet"] == "https://10.4.0.5:6443"
    assert cluster["connections"][0]["apiServerInternet"] == "https://127.0.0.1:40123"
    assert cluster["workerNodes"] == [{"id": "i-0000000d", "name": "i-0000000d", "privateIp": "10.4.0.7"}]
    assert cluster["rrsaConfig"]["enabled"] is False
    assert get_managed_kubernetes_clusters(config, {"ids": ["c4567cdef"], "enableDetails": True}, "lab1")[
        "clusters"][0]["natGatewayId"] == ""  # made with new_nat_gateway = false
    assert get_managed_kubernetes_clusters(config, {"ids": ["c00000000"]}, "lab1")["clusters"] == []
    nothing = get_managed_kubernetes_clusters(config, {}, None)  # no lab known: nothing
    assert nothing["ids"] == [] and nothing["id"] == get_managed_kubernetes_clusters(config, {"ids": ["x"]}, None)["id"]


def test_slb_internet_is_on_and_the_enterprise_group_off_by_default_as_in_the_sdk():
    inputs, _ = ManagedKubernetes().check(ctx("cs.ManagedKubernetes 'k8s'"), CLUSTER)
    assert inputs["slb_internet_enabled"] is True and inputs["is_enterprise_security_group"] is False
    for field in ("slb_internet_enabled", "is_enterprise_security_group"):  # ACK: create only, never a replace
        assert field in ManagedKubernetes.realized and field not in ManagedKubernetes.replace_on


def test_an_enterprise_group_conflicts_with_a_given_group_naming_the_field():
    found = failures(ManagedKubernetes(), {**CLUSTER, "is_enterprise_security_group": True,
                                           "security_group_id": "sg-0000000c"})
    assert list(found) == ["is_enterprise_security_group"] and "conflicts with security_group_id" in found[
        "is_enterprise_security_group"]
    assert failures(ManagedKubernetes(), {**CLUSTER, "is_enterprise_security_group": True}) == {}


def test_the_internet_endpoint_is_the_eip_when_there_is_one_else_the_hosts_relay():
    with_eip = connection_facts("c0123abcd", "10.4.0.5", 40123, "cn-hangzhou", "203.0.113.7")
    assert (with_eip["api_server_internet"], with_eip["master_public_ip"]) == ("https://203.0.113.7:6443",
                                                                             "203.0.113.7")
    assert with_eip["api_server_intranet"] == "https://10.4.0.5:6443"
    without = connection_facts("c0123abcd", "10.4.0.5", 40123, "cn-hangzhou")
    assert (without["api_server_internet"], without["master_public_ip"]) == ("https://127.0.0.1:40123", "127.0.0.1")


def test_the_clusters_own_group_has_acks_default_rules():
    group = cluster_sg.plan(enterprise=False)
    assert is_cloud_id(group.sg_id, "sg") and all(is_cloud_id(r, "sgr") for r in group.rule_ids)
    assert len(set(group.rule_ids)) == cluster_sg.RULE_COUNT and group.group_type == "normal"
    assert cluster_sg.plan(enterprise=True).group_type == "enterprise"
    rules = {(r.direction, r.protocol, r.ports, r.cidr, r.peer_group, r.policy) for r in cluster_sg.rules(group, None)}
    assert rules == {("ingress", "icmp", None, "0.0.0.0/0", None, "accept"),  # ping from anywhere
                     ("ingress", "all", None, None, group.sg_id, "accept"),  # everything within the group
                     ("egress", "all", None, "0.0.0.0/0", None, "accept"),  # everything out
                     # the lab's addition: SLB-forwarded clients keep their address and reach NodePorts
                     ("ingress", "tcp", (30000, 32767), "0.0.0.0/0", None, "accept"),
                     ("ingress", "udp", (30000, 32767), "0.0.0.0/0", None, "accept")}
    flannel = cluster_sg.rules(group, "10.244.0.0/16")  # Flannel's routed pod blocks are no group members
    assert [(r.protocol, r.cidr) for r in flannel if r.cidr == "10.244.0.0/16"] == [("all", "10.244.0.0/16")]
    assert len({r.rule_id for r in flannel}) == len(flannel) == 6
    assert cluster_sg.ClusterGroup.from_dict(group.to_dict()) == group
    assert cluster_sg.ClusterGroup.from_dict(None) is None


def test_the_cluster_record_names_the_api_servers_eip_and_the_clusters_group(records_in):
    group = cluster_sg.plan(enterprise=True)
    facts = ack_cluster.ClusterFacts("c0123abcd", "vpc-0000000a", ("vsw-0000000b",), "iptables", group.sg_id,
                                     "ack-lab", ("vsw-0000000a",), None, api_slb_id="lb-0000000d",
                                     api_eip_id="eip-0000000e", group=group)
    ack_cluster.save_cluster(LAB, facts)
    assert ack_cluster.load_cluster(LAB, "c0123abcd") == facts
    # acklab recover keeps the SLB, its EIP and the group's rules; the group is the output security_group_id
    assert ack_cluster.owned_ids(LAB) == {"lb-0000000d", "eip-0000000e", *group.rule_ids}
