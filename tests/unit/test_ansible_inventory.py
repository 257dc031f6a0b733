"""The inventory plugin's mapping of a Pulumi stack export onto hosts and groups (pure part)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleParserError

from acklab.sshmode import ssh_dir

PLUGIN = Path(__file__).resolve().parents[2] / "ansible/collections/ansible_collections/acklab/lab/plugins/inventory" \
    / "pulumi_stack.py"


def load_plugin():
    spec = importlib.util.spec_from_file_location("acklab_pulumi_stack", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ecs(name: str, ip: str, tags: dict | None = None) -> dict:
    return {"type": "pulumi-python:dynamic:Resource", "id": f"i-{name}",
            "outputs": {"instance_name": name, "instance_type": "ecs.g7.large", "netns": f"acklab-x-i-{name}",
                        "private_ip": ip, "tags": tags, "vswitch_id": "vsw-1"}}


def test_nodes_are_ecs_with_the_ack_tag_and_the_cluster_output_is_kept():
    plugin = load_plugin()
    assert Path(__file__).resolve().parents[2] == plugin.REPO
    resources = [
        {"type": "pulumi:pulumi:Stack", "outputs": {"kubernetes": {"datapath": "vxlan", "pod_cidr": "10.244.0.0/16"}}},
        ecs("n1", "192.168.1.10", {"ack.aliyun.com": "c-1"}),
        ecs("plain", "192.168.1.20", {"team": "a"}),
        {"type": "pulumi-python:dynamic:Resource", "id": "vsw-1", "outputs": {"cidr_block": "192.168.1.0/24"}},
    ]
    hosts, outputs = plugin.classify(resources)
    assert {name: h["group"] for name, h in hosts.items()} == {"n1": "k8s_nodes", "plain": "ecs"}
    assert hosts["n1"]["vars"]["acklab_netns"] == "acklab-x-i-n1"
    assert outputs["kubernetes"]["datapath"] == "vxlan"


def test_ssh_connection_uses_the_labs_own_ssh_config():
    plugin = load_plugin()
    group = plugin.ssh_group_vars("lab1")
    assert group["ansible_ssh_common_args"] == "-F /run/acklab/lab1/ssh/ssh_config"
    assert group["ansible_ssh_private_key_file"] == "/run/acklab/lab1/ssh/id_ed25519"
    assert group["ansible_user"] == "root" and group["ansible_pipelining"] is True
    assert plugin.SSH_STATE.format(lab="lab1") == str(ssh_dir("lab1"))


def test_ssh_connection_without_ssh_mode_is_a_clear_error():
    plugin = load_plugin()
    with pytest.raises(AnsibleParserError, match=r"no SSH mode .*python -m acklab.sshmode up --lab nosuchlab0"):
        plugin.InventoryModule()._ssh_hosts("nosuchlab0")


def test_pulumi_alicloud_resources_are_hosts_by_type_with_namespaces_named_by_their_ids():
    """The default lab's stack: ``alicloud:ecs/instance:Instance`` and ``slb.ApplicationLoadBalancer`` carry no
    namespace output; the namespace follows from the lab (the URN's stack) and the id."""
    plugin = load_plugin()
    urn = "urn:pulumi:lab1::acklab::alicloud:{}::{}".format
    resources = [
        {"type": "alicloud:ecs/instance:Instance", "id": "i-0000000a", "urn": urn("ecs/instance:Instance", "ecs-1"),
         "outputs": {"instanceName": "ecs-1", "instanceType": "ecs.g7.large", "privateIp": "192.168.1.10",
                     "tags": {"ack.aliyun.com": "c-acklab"}, "vswitchId": "vsw-0000000a"}},
        {"type": "alicloud:ecs/instance:Instance", "id": "i-0000000b", "urn": urn("ecs/instance:Instance", "ecs-3"),
         "outputs": {"instanceName": "ecs-3", "instanceType": "ecs.g7.large", "privateIp": "192.168.2.10",
                     "tags": None, "securityGroups": ["sg-0000000a"]}},
        {"type": "alicloud:slb/applicationLoadBalancer:ApplicationLoadBalancer", "id": "lb-0000000a",
         "urn": urn("slb/applicationLoadBalancer:ApplicationLoadBalancer", "svc"),
         "outputs": {"loadBalancerName": "kube-system-nginx", "address": "203.0.113.10"}},
        {"type": "alicloud:vpc/switch:Switch", "id": "vsw-0000000a", "outputs": {"cidr_block": "192.168.1.0/24"}},
    ]
    hosts, _ = plugin.classify(resources)
    assert {name: h["group"] for name, h in hosts.items()} == {"ecs-1": "k8s_nodes", "ecs-3": "ecs",
                                                               "kube-system-nginx": "slb"}
    assert hosts["ecs-1"]["vars"]["acklab_netns"] == "acklab-lab1-i-0000000a"
    assert hosts["ecs-3"]["vars"]["security_groups"] == ["sg-0000000a"]  # the engine records the wire names
    assert (hosts["ecs-1"]["vars"]["private_ip"], hosts["ecs-1"]["vars"]["vswitch_id"]) == ("192.168.1.10",
                                                                                           "vsw-0000000a")
    assert hosts["kube-system-nginx"]["vars"]["acklab_netns"] == "acklab-lab1-lb-0000000a"
