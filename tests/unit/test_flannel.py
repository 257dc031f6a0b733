"""Flannel on the API, pure: a node's block, peers and annotations from Node objects; host-local IPAM on the
block; the cloud controller's route table (VPC-route mode); a node NotReady until its network is up."""

from __future__ import annotations

import json

import pytest

from acklab.k8s.model import flannel, kubelet, load_balancer
from acklab.k8s.model.ipam import HostLocalPool
from acklab.k8s.model.pod_network import Node
from netns.model.errors import ValidationError


def node(name: str, ip: str | None, cidr: str | None, instance: str | None = None) -> dict:
    spec = {"podCIDR": cidr} if cidr else {}
    if instance:
        spec["providerID"] = f"cn-hangzhou.{instance}"
    addresses = [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}] if ip else []
    return {"metadata": {"name": name}, "spec": spec, "status": {"addresses": addresses}}


NODES = [node("n2", "192.168.1.12", "10.244.1.0/24", "i-2"), node("n1", "192.168.1.11", "10.244.0.0/24", "i-1"),
         node("n3", "192.168.1.13", None, "i-3"), node("n4", None, "10.244.3.0/24")]


def test_peers_are_the_other_nodes_with_a_block_and_an_address_by_name():
    assert flannel.peers(NODES, "n1") == (Node("n2", "", "192.168.1.12", "10.244.1.0/24"),)
    assert [p.name for p in flannel.peers(NODES, "n3")] == ["n1", "n2"]


def test_annotations_are_flannels_vxlan_carries_the_vtep_mac():
    notes = flannel.annotations("vxlan", "192.168.1.11")
    assert notes["flannel.alpha.coreos.com/backend-type"] == "vxlan"
    assert json.loads(notes["flannel.alpha.coreos.com/backend-data"]) == {"VNI": 1, "VtepMAC": "0e:fe:c0:a8:01:0b"}
    assert notes["flannel.alpha.coreos.com/public-ip"] == "192.168.1.11"
    assert flannel.annotations("vpc-route", "192.168.1.11")["flannel.alpha.coreos.com/backend-type"] == "ali-vpc"


def test_max_pods_is_the_blocks_addresses_at_most_the_kubelets_default():
    assert flannel.max_pods("10.244.0.0/26") == 61  # 64 - network, broadcast, the bridge's
    assert flannel.max_pods("10.244.0.0/24") == 110


def test_host_local_skips_the_bridge_and_reuses_a_released_address_last():
    pool = HostLocalPool.of("10.244.0.0/29")  # hosts .1-.6, .1 the bridge's
    assert pool.addresses == ["10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.0.5", "10.244.0.6"]
    assert [pool.allocate(k) for k in ("a", "b")] == ["10.244.0.2", "10.244.0.3"]
    pool.release("a", 1.0)
    assert pool.allocate("c") == "10.244.0.4"
    for key in ("d", "e", "f"):
        pool.allocate(key)
    with pytest.raises(ValidationError, match=r"no free address in the node's pod CIDR 10.244.0.0/29"):
        pool.allocate("g")


def test_the_route_table_has_a_route_per_node_with_a_block_and_an_instance():
    wanted = load_balancer.wanted_routes(NODES, {})
    assert wanted == {"n1": ("10.244.0.0/24", "i-1"), "n2": ("10.244.1.0/24", "i-2")}


def test_route_changes_delete_gone_and_changed_routes_and_make_missing_ones():
    wanted = {"n1": ("10.244.0.0/24", "i-1"), "n2": ("10.244.1.0/24", "i-2"), "n5": ("10.244.5.0/24", "i-5")}
    made = {"n1": ("10.244.0.0/24", "i-1"), "n2": ("10.244.9.0/24", "i-2"), "old": ("10.244.7.0/24", "i-7")}
    delete, create = load_balancer.route_changes(wanted, made, present=lambda name: True)
    assert (delete, create) == (["n2", "old"], ["n2", "n5"])
    _, create = load_balancer.route_changes(wanted, made, present=lambda name: name != "n1")  # removed behind our back
    assert create == ["n1", "n2", "n5"]


def test_a_flannel_node_is_not_ready_until_its_network_is_built():
    identity = kubelet.NodeIdentity("n1", "i-1", "cn-hangzhou-h", "ecs.g7.large", "192.168.1.11")
    ready = next(c for c in kubelet.node_status(identity, 10.0, 5.0, network_ready=False)["conditions"]
                 if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "KubeletNotReady")
    assert "cni plugin not initialized" in ready["message"]


def test_a_clusters_pod_network_is_fixed_once_it_is_made(tmp_path, monkeypatch):
    import ipaddress

    from netns.model.control_plane import PodNetwork
    from netns.model.errors import ValidationError as Refused
    from netns.realize import control_plane as cp

    monkeypatch.setattr(cp, "clusters_dir", lambda lab: tmp_path)
    plane = cp.ControlPlane("lab1", "c0a1b2c3d")
    plane.root.mkdir(parents=True)
    flannel_net = PodNetwork(ipaddress.IPv4Network("10.244.0.0/16"), 24)
    plane._settle_pod_network(flannel_net)  # a new cluster takes it
    assert plane.pod_network() == flannel_net
    plane.layout.pki.mkdir()
    plane.layout.cert("ca").write_text("made")  # now the cluster exists
    plane._settle_pod_network(cp.KEEP)
    plane._settle_pod_network(flannel_net)
    with pytest.raises(Refused, match=r"pod_cidr: no pod CIDR \(Terway\) asked for, but the cluster was made with "
                                      r"pod CIDR 10.244.0.0/16 /24"):
        plane._settle_pod_network(None)
    with pytest.raises(Refused, match="cannot change"):
        plane._settle_pod_network(PodNetwork(ipaddress.IPv4Network("10.244.0.0/16"), 26))


def test_another_network_plug_in_or_node_mask_replaces_the_cluster():
    from acklab.provider.cs import ManagedKubernetes

    terway = {"worker_vswitch_ids": ["vsw-0000000a"], "pod_vswitch_ids": ["vsw-0000000b"],
              "addons": [{"name": "terway-eniip"}]}
    flannel_cluster = {"worker_vswitch_ids": ["vsw-0000000a"], "pod_cidr": "172.20.0.0/16", "node_cidr_mask": 24,
                       "addons": [{"name": "flannel"}]}
    assert "addons" in ManagedKubernetes().diff(terway, {**terway, "addons": [{"name": "flannel"}]}).replaces
    more = {**terway, "addons": [{"name": "terway-eniip"}, {"name": "csi-plugin"}]}
    assert ManagedKubernetes().diff(terway, more).replaces == ()  # another add-on: changed in place
    assert "node_cidr_mask" in ManagedKubernetes().diff(flannel_cluster, {**flannel_cluster,
                                                                          "node_cidr_mask": 26}).replaces
