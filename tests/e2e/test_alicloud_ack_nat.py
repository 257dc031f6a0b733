"""`new_nat_gateway` of cs.ManagedKubernetes (the SDK's default, true), through the real engine and acklab's `alicloud`
plugin: the cluster's creation makes a NAT gateway in its VPC with an EIP and SNAT entries for its node and pod
vSwitches, as ACK does; a node and a pod reach a server on the lab's sealed internet, which sees the EIP;
cs.get_managed_kubernetes_clusters lists the cluster with its gateway and node; `acklab recover`'s pruning keeps what
the cluster made; `pulumi destroy` leaves nothing. A VPC that already has a NAT gateway is refused, naming the field,
before anything is made.
"""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from acklab.k8s import ack_cluster
from acklab.k8s.realize.pod_network import load_records
from acklab.recover import checkpoint_ids
from netns.kernel.namespace import list_namespaces
from netns.model.names import mark
from netns.realize import state_dir
from netns.realize.cleanup import prune_lab
from netns.realize.control_plane import control_planes
from netns.realize.nat_gateway import NatGateway
from tests.e2e.test_alicloud_ack import Kubectl
from tests.kernel.test_nat_gateway import SERVER, greeting
from tests.labtools import ProbeServer, wait_for

pytestmark = pytest.mark.e2e

PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud

name = "ack-nat"
zones = alicloud.get_zones(available_resource_creation="VSwitch")
vpc = alicloud.vpc.Network("vpc", vpc_name=name, cidr_block="10.4.0.0/16")
vswitch = alicloud.vpc.Switch("vswitch", vswitch_name=name, cidr_block="10.4.0.0/24", vpc_id=vpc.id,
                              zone_id=zones.zones[0].id)
pod_vswitch = alicloud.vpc.Switch("pod-vswitch", vswitch_name=f"{name}-pods", cidr_block="10.4.32.0/20",
                                  vpc_id=vpc.id, zone_id=zones.zones[0].id)
k8s = alicloud.cs.ManagedKubernetes("k8s",  # new_nat_gateway left out: the SDK's default, true
    name_prefix=name,
    cluster_spec="ack.pro.small",
    worker_vswitch_ids=[vswitch.id],
    pod_vswitch_ids=[pod_vswitch.id],
    proxy_mode="iptables",
    addons=[{"name": "terway-eniip"}])
pool = alicloud.cs.NodePool("default", node_pool_name="default", cluster_id=k8s.id, vswitch_ids=[vswitch.id],
                            instance_types=["ecs.g7.large"], desired_size=1)
listed = alicloud.cs.get_managed_kubernetes_clusters_output(ids=[pool.cluster_id], enable_details=True)
credential = alicloud.cs.get_cluster_credential_output(cluster_id=pool.cluster_id)
pulumi.export("cluster_id", k8s.id)
pulumi.export("nat_gateway_id", k8s.nat_gateway_id)
pulumi.export("listed", listed.clusters.apply(lambda found: [
    {"id": c.id, "name": c.name, "nat": c.nat_gateway_id, "nodes": [n.private_ip for n in c.worker_nodes]}
    for c in found]))
pulumi.export("kubeconfig", pulumi.Output.secret(credential.kube_config))
"""

POD = """
apiVersion: v1
kind: Pod
metadata: {name: egress, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    args: [netexec, --http-port=80]
    ports: [{containerPort: 80}]
"""


def _pod_netns(lab: str, name: str) -> tuple[str, str] | None:
    """The pod's namespace and address, once its node agent made it."""
    found = [r for r in load_records(lab).values() if r.pod.name == name]
    return (found[0].netns, found[0].ip) if found else None


def assert_seen_as_eip(lab: str, kubeconfig_text: str, tmp_path, node_ns: str, pod_block: str, eip: str) -> None:
    """A pod (its address in ``pod_block``) and the node both reach a server on the lab's internet, which sees
    the gateway's EIP from each."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig_text)
    Kubectl(kubeconfig)("apply", "-f", "-", stdin=POD)
    wait_for(lambda: _pod_netns(lab, "egress") is not None, "the pod's namespace", timeout=30)
    pod_ns, pod_ip = _pod_netns(lab, "egress") or ("", "")
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(pod_block)
    with ProbeServer(mark(lab) + "internet", tcp=(9000,), udp=()):
        assert greeting(node_ns, SERVER, 9000) == f"hello {eip}"
        assert greeting(pod_ns, SERVER, 9000) == f"hello {eip}"


def test_new_nat_gateway_gives_nodes_and_pods_egress_and_goes_with_the_cluster(lab, program_stack, tmp_path,
                                                                                root_unchanged):
    stack = program_stack(PROGRAM)
    start = time.monotonic()
    stack.run("up", "--yes")
    print(f"\npulumi up of the cluster with its NAT gateway and 1 node: {time.monotonic() - start:.1f}s")
    out = json.loads(stack.run("stack", "output", "--json", "--show-secrets").stdout)
    ngw_id, cluster_id = out["nat_gateway_id"], out["cluster_id"]
    assert ngw_id.startswith("ngw-")
    gateway = NatGateway(lab, ngw_id)
    (eip,) = gateway.eips()  # one EIP bound to it
    sources = {str(rule.source) for rule, _ in gateway.entries()}
    assert sources == {"10.4.0.0/24", "10.4.32.0/20"}  # the node vSwitch and the pod vSwitch
    (node_ns,) = [ns.name for ns in list_namespaces(mark(lab) + "i-")]
    listed = out["listed"]
    assert [(c["id"], c["nat"], c["name"]) for c in listed] == [(cluster_id, ngw_id, f"ack-nat-{cluster_id}")]
    assert len(listed[0]["nodes"]) == 1

    assert_seen_as_eip(lab, out["kubeconfig"], tmp_path, node_ns, "10.4.32.0/20", eip)

    # acklab recover's pruning keeps the gateway (the cluster's output), its EIP and its entries (the cluster's)
    deployment = json.loads(stack.run("stack", "export").stdout)["deployment"]
    assert prune_lab(lab, checkpoint_ids(deployment) | ack_cluster.owned_ids(lab)) == []
    assert len(gateway.entries()) == 2
    stack.run("up", "--yes", "--expect-no-changes")
    stack.run("refresh", "--yes", "--expect-no-changes")

    start = time.monotonic()
    stack.run("destroy", "--yes")
    print(f"pulumi destroy: {time.monotonic() - start:.1f}s")
    assert list_namespaces(mark(lab)) == []  # the gateway's namespace, and the internet's with the EIP's port
    assert control_planes(lab) == [] and not list(state_dir(lab).glob("cs/*"))


FLANNEL = PROGRAM.replace("""    pod_vswitch_ids=[pod_vswitch.id],
    proxy_mode="iptables",
    addons=[{"name": "terway-eniip"}])""", """    pod_cidr="172.20.0.0/16",
    proxy_mode="iptables",
    addons=[{"name": "flannel"}])""")


def test_with_flannel_the_node_vswitch_entry_takes_pods_out_too(lab, program_stack, tmp_path, root_unchanged):
    """ACK gives a Flannel cluster SNAT entries for its node vSwitches only: pods leave the VPC with their node's
    address (ip-masq-agent's defaults), so the gateway's EIP is what the internet sees from them too."""
    assert FLANNEL != PROGRAM
    stack = program_stack(FLANNEL)
    stack.run("up", "--yes")
    out = json.loads(stack.run("stack", "output", "--json", "--show-secrets").stdout)
    gateway = NatGateway(lab, out["nat_gateway_id"])
    (eip,) = gateway.eips()
    assert {str(rule.source) for rule, _ in gateway.entries()} == {"10.4.0.0/24"}  # the node vSwitch only
    (node_ns,) = [ns.name for ns in list_namespaces(mark(lab) + "i-")]
    assert_seen_as_eip(lab, out["kubeconfig"], tmp_path, node_ns, "172.20.0.0/16", eip)
    stack.run("destroy", "--yes")
    assert list_namespaces(mark(lab)) == []


REFUSED = """
import pulumi
import pulumi_alicloud as alicloud
vpc = alicloud.vpc.Network("vpc", cidr_block="10.4.0.0/16")
vswitch = alicloud.vpc.Switch("vswitch", cidr_block="10.4.0.0/24", vpc_id=vpc.id, zone_id="cn-hangzhou-a")
ngw = alicloud.vpc.NatGateway("ngw", vpc_id=vpc.id, vswitch_id=vswitch.id, nat_type="Enhanced")
alicloud.cs.ManagedKubernetes("k8s", worker_vswitch_ids=[vswitch.id], pod_vswitch_ids=[vswitch.id],
                              addons=[{"name": "terway-eniip"}], opts=pulumi.ResourceOptions(depends_on=[ngw]))
"""


def test_a_vpc_with_a_nat_gateway_is_refused_before_anything_is_made(lab, program_stack):
    stack = program_stack(REFUSED)
    up = stack.run("up", "--yes", check=False)
    text = up.stdout + up.stderr
    assert up.returncode != 0
    assert "new_nat_gateway: VPC vpc-" in text and "already has NAT gateway ngw-" in text, text[-3000:]
    assert control_planes(lab) == [] and not list(state_dir(lab).glob("cs/*"))
    assert len(list_namespaces(mark(lab) + "ngw-")) == 1  # the program's own gateway only
