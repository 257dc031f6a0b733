"""An ACK cluster program in the shape of Alibaba's examples, unmodified, through the real engine and acklab's
`alicloud` plugin: zones → VPC → a node vSwitch and a pod vSwitch → cs.ManagedKubernetes (terway-eniip, an
ignored add-on, the SDK's default slb_internet_enabled, no security group given) → cs.NodePool → the kubeconfig
from cs.get_cluster_credential. Then, from the host, kubectl: Ready nodes; kubectl from the lab's internet at the
EIP of the API server's SLB; the cluster's own security group with ACK's rules, its nodes in it; a Deployment
behind a LoadBalancer Service reached from the lab's internet, the pool scaled to 3 and back to 2, and
`pulumi destroy` leaves nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from acklab.k8s import ack_cluster
from acklab.recover import checkpoint_ids
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark, pod_netns_name
from netns.realize import state_dir, words
from netns.realize.cleanup import prune_lab
from netns.realize.control_plane import control_planes
from netns.realize.security_group import load_group
from netns.realize.vpc import routers
from tests.e2e.test_pulumi_up import VENV
from tests.k8stools import http_get
from tests.labtools import env_with_venv, wait_for

pytestmark = pytest.mark.e2e

PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud

config = pulumi.Config()
desired_size = config.get_int("desiredSize") or 2
name = "ack-lab"
zones = alicloud.get_zones(available_resource_creation="VSwitch")
vpc = alicloud.vpc.Network("vpc", vpc_name=name, cidr_block="10.4.0.0/16")
vswitch = alicloud.vpc.Switch("vswitch", vswitch_name=name, cidr_block="10.4.0.0/24", vpc_id=vpc.id,
                              zone_id=zones.zones[0].id)
pod_vswitch = alicloud.vpc.Switch("pod-vswitch", vswitch_name=f"{name}-pods", cidr_block="10.4.32.0/20",
                                  vpc_id=vpc.id, zone_id=zones.zones[0].id)
k8s = alicloud.cs.ManagedKubernetes("k8s",
    name_prefix=name,
    cluster_spec="ack.pro.small",
    worker_vswitch_ids=[vswitch.id],
    pod_vswitch_ids=[pod_vswitch.id],
    new_nat_gateway=False,
    proxy_mode="ipvs",
    addons=[{"name": "terway-eniip"}, {"name": "csi-plugin"}, {"name": "nginx-ingress-controller"}])
pool = alicloud.cs.NodePool("default",
    node_pool_name="default",
    cluster_id=k8s.id,
    vswitch_ids=[vswitch.id],
    instance_types=["ecs.g7.large"],
    system_disk_category="cloud_essd",
    system_disk_size=40,
    desired_size=desired_size,
    labels=[{"key": "pool", "value": "default"}],
    taints=[{"key": "dedicated", "value": "web", "effect": "PreferNoSchedule"}])
credential = alicloud.cs.get_cluster_credential_output(cluster_id=pool.cluster_id)
pulumi.export("cluster_id", k8s.id)
pulumi.export("api_server_intranet", k8s.connections[0].api_server_intranet)
pulumi.export("api_server_internet", k8s.connections[0].api_server_internet)
pulumi.export("slb_internet", k8s.slb_internet)
pulumi.export("security_group_id", k8s.security_group_id)
pulumi.export("kubeconfig", pulumi.Output.secret(credential.kube_config))
"""

WORKLOAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: [netexec, --http-port=80]
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: default}
spec:
  ingressClassName: nginx
  rules:
  - host: web.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""

DENY_ALL = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: default}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([str(VENV / "bin" / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
                                input=stdin, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def ready_nodes(self) -> list[str]:
        nodes = json.loads(self("get", "nodes", "-o", "json"))["items"]
        return sorted(n["metadata"]["name"] for n in nodes
                      if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]))


def outputs_and_kubectl(stack, tmp_path: Path) -> tuple[dict, Kubectl]:
    """The stack's outputs (secrets shown) and kubectl on the kubeconfig it exports."""
    out = json.loads(stack.run("stack", "output", "--json", "--show-secrets").stdout)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(out["kubeconfig"])
    return out, Kubectl(kubeconfig)


def serve_web_through_slb(kubectl: Kubectl, lab: str) -> str:
    """WORKLOAD's Deployment and LoadBalancer Service applied; its external IP once a pod answers through it."""
    kubectl("apply", "-f", "-", stdin=WORKLOAD.split("---")[0] + "---" + WORKLOAD.split("---")[1])
    wait_for(lambda: json.loads(kubectl("get", "service", "web", "-o", "json"))["status"]
             .get("loadBalancer", {}).get("ingress"), "the Service's external IP", timeout=30)
    address = json.loads(kubectl("get", "service", "web", "-o", "json"))["status"]["loadBalancer"]["ingress"][0]["ip"]
    wait_for(lambda: (http_get(f"{mark(lab)}internet", address, 80, "/hostname") or "").startswith("web-"),
             "a pod answering through the SLB", timeout=45)
    return address


def kubectl_from_the_internet(lab: str, kubeconfig: Path, server: str, tmp_path: Path, *args: str) -> str:
    """kubectl in the lab's internet namespace, on the cluster's kubeconfig pointed at ``server``: it verifies the
    API server's certificate there (no --insecure-skip-tls-verify)."""
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = server
    path = tmp_path / "kubeconfig-internet"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([str(VENV / "bin" / "acklab"), "exec", "--lab", lab, "internet", "--",
                             str(VENV / "bin" / "kubectl"), "--kubeconfig", str(path), *args],
                            capture_output=True, text=True, timeout=30, env=env_with_venv())
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_acks_cluster_group(lab: str, sg_id: str) -> None:
    """The cluster's own group (no security_group_id given) exists with ACK's default rules; the nodes are in it."""
    group = load_group(lab, sg_id)
    assert group is not None and (group.group_type, group.inner_access_policy) == ("normal", "Accept")
    found = {(r.direction, r.protocol, r.ports, r.cidr, r.peer_group) for r in group.rules}
    assert found == {("ingress", "icmp", None, "0.0.0.0/0", None), ("ingress", "all", None, None, sg_id),
                     ("egress", "all", None, "0.0.0.0/0", None), ("ingress", "tcp", (30000, 32767), "0.0.0.0/0", None),
                     ("ingress", "udp", (30000, 32767), "0.0.0.0/0", None)}
    for path in state_dir(lab).glob("cs/np*.json"):
        for node in ack_cluster.load_nodes(lab, path.stem):
            assert _groups_of(lab, node.eni_id) == (sg_id,)


def _groups_of(lab: str, eni_id: str) -> tuple[str, ...]:
    for router in routers(lab):
        for vswitch in router.vswitches():
            facts = vswitch.enis().get(eni_id)
            if facts is not None:
                return words(facts, "sg")
    return ()


def _timings(path: Path) -> dict[str, float]:
    """Seconds the plugin spent creating each kind (ACKLAB_PROVIDER_TIMINGS)."""
    found: dict[str, float] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry["method"] == "Create":
            found[entry["type"].rsplit(":", 1)[-1]] = round(entry["seconds"], 1)
    return found


def test_ack_cluster_program_nodes_loadbalancer_scale_destroy(lab, program_stack, tmp_path, root_unchanged):
    stack = program_stack(PROGRAM)
    stack.env["ACKLAB_PROVIDER_TIMINGS"] = str(tmp_path / "timings.jsonl")
    start = time.monotonic()
    up = stack.run("up", "--yes")
    print(f"\npulumi up of the cluster program: {time.monotonic() - start:.1f}s; "
          f"creates: {_timings(tmp_path / 'timings.jsonl')}")
    assert "csi-plugin accepted and ignored" in up.stdout, up.stdout[-3000:]
    assert "kube-proxy runs in iptables mode" in up.stdout
    out, kubectl = outputs_and_kubectl(stack, tmp_path)
    assert out["api_server_intranet"].startswith("https://10.4.0.") and out["cluster_id"].startswith("c")
    assert len(kubectl.ready_nodes()) == 2  # the pool answers when its nodes are Ready
    # slb_internet_enabled (the SDK's default): an EIP bound to the API server's SLB; kubectl from the lab's internet
    eip = out["slb_internet"]
    assert eip.startswith("203.0.113.") and out["api_server_internet"] == f"https://{eip}:6443"
    start = time.monotonic()
    nodes = kubectl_from_the_internet(lab, kubectl.kubeconfig, out["api_server_internet"], tmp_path,
                                      "get", "nodes", "-o", "name")
    assert len(nodes.split()) == 2 and "namespace/kube-system" in kubectl_from_the_internet(
        lab, kubectl.kubeconfig, out["api_server_internet"], tmp_path, "get", "namespaces", "-o", "name")
    print(f"kubectl from the internet at {eip}: {time.monotonic() - start:.1f}s")
    assert_acks_cluster_group(lab, out["security_group_id"])
    print(kubectl("get", "nodes"))
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    assert all(n["metadata"]["labels"]["pool"] == "default" for n in nodes)
    assert all(n["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "ecs.g7.large" for n in nodes)
    assert all(n["spec"]["taints"] == [{"key": "dedicated", "value": "web", "effect": "PreferNoSchedule"}]
               for n in nodes)
    stack.run("up", "--yes", "--expect-no-changes")
    stack.run("refresh", "--yes", "--expect-no-changes")

    kubectl("apply", "-f", "-", stdin=WORKLOAD)

    def external_ip(name: str = "web", namespace: str = "default") -> str | None:
        service = json.loads(kubectl("get", "service", name, "-n", namespace, "-o", "json"))
        ingress = service["status"].get("loadBalancer", {})
        return (ingress.get("ingress") or [{}])[0].get("ip")

    wait_for(external_ip, "the Service's external IP", timeout=30)
    address = external_ip()
    assert address and address.startswith("203.0.113.")
    pods = set()

    def answered() -> bool:
        body = http_get(f"{mark(lab)}internet", address, 80, "/hostname")
        if body:
            pods.add(body)
        return bool(body)

    wait_for(answered, "a pod answering through the SLB", timeout=45)
    assert all(p.startswith("web-") for p in pods)
    print(f"pods answering via {address}: {sorted(pods)}")
    # ACK's NGINX Ingress add-on: the controller's own SLB, the Ingress routed to the pods; a NetworkPolicy cuts it
    def ingress_ip() -> str | None:
        return external_ip("nginx-ingress-lb", "kube-system")

    wait_for(ingress_ip, "the Ingress controller's external IP", timeout=30)

    def via_ingress() -> str | None:
        return http_get(f"{mark(lab)}internet", ingress_ip() or "", 80, "/hostname", host="web.test")

    wait_for(lambda: (via_ingress() or "").startswith("web-"), "a pod answering through the Ingress", timeout=45)
    kubectl("apply", "-f", "-", stdin=DENY_ALL)
    wait_for(lambda: via_ingress() is None, "the NetworkPolicy to cut the Ingress's requests", timeout=10)
    kubectl("delete", "networkpolicy", "deny-all")
    wait_for(lambda: (via_ingress() or "").startswith("web-"), "the Ingress to serve again", timeout=10)
    # acklab recover's pruning keeps what the cluster made (nodes, Terway's ENIs, the Service's SLB)
    deployment = json.loads(stack.run("stack", "export").stdout)["deployment"]
    assert prune_lab(lab, checkpoint_ids(deployment) | ack_cluster.owned_ids(lab)) == []

    stack.run("config", "set", "desiredSize", "3")
    start = time.monotonic()
    stack.run("up", "--yes")
    print(f"pulumi up to 3 nodes: {time.monotonic() - start:.1f}s")
    assert len(kubectl.ready_nodes()) == 3
    stack.run("config", "set", "desiredSize", "2")
    start = time.monotonic()
    stack.run("up", "--yes")
    print(f"pulumi up back to 2 nodes: {time.monotonic() - start:.1f}s")
    assert len(kubectl.ready_nodes()) == 2 and len(kubectl("get", "nodes", "-o", "name").split()) == 2
    wait_for(answered, "a pod answering after the drain", timeout=30)

    # a node's instance deleted behind the lab's back: refresh sees a smaller pool, up replaces the node
    lost = kubectl.ready_nodes()[0]
    Namespace(f"{mark(lab)}{lost}").remove()
    stack.run("refresh", "--yes")
    stack.run("up", "--yes")
    assert len(kubectl.ready_nodes()) == 2 and lost not in kubectl("get", "nodes", "-o", "name")
    wait_for(answered, "a pod answering after the repair", timeout=30)

    start = time.monotonic()
    stack.run("destroy", "--yes")
    print(f"pulumi destroy: {time.monotonic() - start:.1f}s")
    assert list_namespaces(mark(lab)) == []
    assert control_planes(lab) == []
    assert not list(state_dir(lab).glob("cs/*")) and not list(state_dir(lab).glob("k8s/ccm/slbs/*"))
    assert load_group(lab, out["security_group_id"]) is None  # the cluster's group went with it (its EIP with the
    # internet namespace: list_namespaces above)
    resources = json.loads(stack.run("stack", "export").stdout)["deployment"].get("resources") or []
    assert resources == []


FLANNEL_PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud

config = pulumi.Config()
zones = alicloud.get_zones(available_resource_creation="VSwitch")
vpc = alicloud.vpc.Network("vpc", vpc_name="ack-flannel", cidr_block="10.4.0.0/16")
vswitch = alicloud.vpc.Switch("vswitch", cidr_block="10.4.0.0/24", vpc_id=vpc.id, zone_id=zones.zones[0].id)
k8s = alicloud.cs.ManagedKubernetes("k8s",
    name_prefix="ack-flannel",
    cluster_spec="ack.pro.small",
    worker_vswitch_ids=[vswitch.id],
    pod_cidr="172.20.0.0/16",
    node_cidr_mask=26,
    new_nat_gateway=False,
    is_enterprise_security_group=True,
    proxy_mode="ipvs",
    addons=[{"name": "flannel"}, {"name": "nginx-ingress-controller", "disabled": True}])
pool = alicloud.cs.NodePool("default", node_pool_name="default", cluster_id=k8s.id, vswitch_ids=[vswitch.id],
                            instance_types=["ecs.g7.large"], desired_size=config.get_int("desiredSize") or 2)
credential = alicloud.cs.get_cluster_credential_output(cluster_id=pool.cluster_id)
pulumi.export("vpc_id", vpc.id)
pulumi.export("slb_id", k8s.slb_id)
pulumi.export("slb_intranet", k8s.slb_intranet)
pulumi.export("api_server_intranet", k8s.connections[0].api_server_intranet)
pulumi.export("security_group_id", k8s.security_group_id)
pulumi.export("kubeconfig", pulumi.Output.secret(credential.kube_config))
"""


def test_a_flannel_cluster_gives_each_node_a_routed_block(lab, program_stack, tmp_path, root_unchanged):
    """ACK's Flannel: a /26 of pod_cidr per node, routed in the VPC by the cloud controller; scaling the pool adds
    and removes routes; the cluster's own enterprise group (ACK's rules, the pod CIDR's included) lets pods, the
    API server and the SLB through; destroy leaves nothing."""
    stack = program_stack(FLANNEL_PROGRAM)
    stack.run("up", "--yes")
    out, kubectl = outputs_and_kubectl(stack, tmp_path)
    vpc = Namespace(f"{mark(lab)}{out['vpc_id']}")
    group = load_group(lab, out["security_group_id"])
    assert group is not None and (group.group_type, group.inner_access_policy) == ("enterprise", "Drop")
    assert {(r.direction, r.cidr, r.peer_group) for r in group.rules if r.protocol == "all"} == {
        ("ingress", None, group.sg_id), ("egress", "0.0.0.0/0", None), ("ingress", "172.20.0.0/16", None)}

    def blocks() -> dict[str, str]:
        nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
        return {n["metadata"]["name"]: n["spec"].get("podCIDR") for n in nodes}

    def vpc_routes() -> set[str]:
        text = vpc.run(["ip", "route"]).stdout
        return {line.split()[0] for line in text.splitlines() if line.startswith("172.20.")}

    assert len(kubectl.ready_nodes()) == 2
    assert all(b and b.startswith("172.20.") and b.endswith("/26") for b in blocks().values()), blocks()
    # the API server's SLB, as ACK makes one: the intranet endpoint, in the certificate, reached from a node
    assert out["slb_id"].startswith("lb-") and out["slb_intranet"].startswith("10.4.0.")
    assert out["api_server_intranet"] == f"https://{out['slb_intranet']}:6443"
    node_ns = f"{mark(lab)}{kubectl.ready_nodes()[0]}"
    version = subprocess.run(["ip", "netns", "exec", node_ns, str(VENV / "bin" / "kubectl"), "--kubeconfig",
                              str(kubectl.kubeconfig), "--server", out["api_server_intranet"], "get", "--raw",
                              "/version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and '"gitVersion"' in version.stdout, version.stderr
    wait_for(lambda: vpc_routes() == set(blocks().values()), "a VPC route per node's block", timeout=20)
    serve_web_through_slb(kubectl, lab)
    pod_ips = [p["status"].get("podIP") for p in json.loads(kubectl("get", "pods", "-o", "json"))["items"]]
    assert pod_ips and all(ip and ip.startswith("172.20.") for ip in pod_ips), pod_ips

    stack.run("config", "set", "desiredSize", "3")
    stack.run("up", "--yes")
    assert len(kubectl.ready_nodes()) == 3
    wait_for(lambda: len(vpc_routes()) == 3 and vpc_routes() == set(blocks().values()), "the third node's route")
    stack.run("config", "set", "desiredSize", "2")
    stack.run("up", "--yes")
    wait_for(lambda: len(vpc_routes()) == 2 and vpc_routes() == set(blocks().values()), "the drained node's route "
             "to go", timeout=20)

    stack.run("destroy", "--yes")
    assert list_namespaces(mark(lab)) == [] and control_planes(lab) == []
    assert not list(state_dir(lab).glob("k8s/ccm/routes/*")) and load_group(lab, group.sg_id) is None


EXCLUSIVE_ENI_PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud

zones = alicloud.get_zones(available_resource_creation="VSwitch")
vpc = alicloud.vpc.Network("vpc", vpc_name="ack-eni", cidr_block="10.4.0.0/16")
vswitch = alicloud.vpc.Switch("vswitch", cidr_block="10.4.0.0/24", vpc_id=vpc.id, zone_id=zones.zones[0].id)
pod_vswitch = alicloud.vpc.Switch("pod-vswitch", cidr_block="10.4.32.0/20", vpc_id=vpc.id, zone_id=zones.zones[0].id)
k8s = alicloud.cs.ManagedKubernetes("k8s",
    name_prefix="ack-eni",
    worker_vswitch_ids=[vswitch.id],
    pod_vswitch_ids=[pod_vswitch.id],
    new_nat_gateway=False,
    addons=[{"name": "terway-eni"}])
pool = alicloud.cs.NodePool("default", node_pool_name="default", cluster_id=k8s.id, vswitch_ids=[vswitch.id],
                            instance_types=["ecs.g7.large"], desired_size=2)
credential = alicloud.cs.get_cluster_credential_output(cluster_id=pool.cluster_id)
pulumi.export("kubeconfig", pulumi.Output.secret(credential.kube_config))
"""


def test_a_terway_eni_cluster_gives_each_pod_an_eni_of_its_own(lab, program_stack, tmp_path, root_unchanged):
    """Terway's exclusive ENI mode from the add-on's name: allocatable pods are the ENIs a node has for pods, each
    pod's address is an ENI's primary one in the pod vSwitch, a LoadBalancer Service answers from the lab's
    internet, and destroy leaves nothing (the ENIs in pods included)."""
    stack = program_stack(EXCLUSIVE_ENI_PROGRAM)
    up = stack.run("up", "--yes")
    assert "terway-eni: pods with an exclusive ENI are not subject to NetworkPolicy" in up.stdout + up.stderr
    _, kubectl = outputs_and_kubectl(stack, tmp_path)
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    assert len(kubectl.ready_nodes()) == 2 and {n["status"]["allocatable"]["pods"] for n in nodes} == {"2"}
    serve_web_through_slb(kubectl, lab)
    pods = json.loads(kubectl("get", "pods", "-o", "json"))["items"]
    for pod in pods:
        ip = pod["status"]["podIP"]
        netns = Namespace(pod_netns_name(lab, "default", pod["metadata"]["name"]))
        eth0 = json.loads(netns.run(["ip", "-4", "-j", "address", "show", "eth0"]).stdout)[0]
        assert ip.startswith("10.4.3") and [a["local"] for a in eth0["addr_info"]] == [ip]

    stack.run("destroy", "--yes")
    assert list_namespaces(mark(lab)) == [] and control_planes(lab) == []


MIXED_POOLS_PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud

zones = alicloud.get_zones(available_resource_creation="VSwitch")
vpc = alicloud.vpc.Network("vpc", cidr_block="10.4.0.0/16")
vswitch = alicloud.vpc.Switch("vswitch", cidr_block="10.4.0.0/24", vpc_id=vpc.id, zone_id=zones.zones[0].id)
pod_vswitch = alicloud.vpc.Switch("pod-vswitch", cidr_block="10.4.32.0/20", vpc_id=vpc.id, zone_id=zones.zones[0].id)
k8s = alicloud.cs.ManagedKubernetes("k8s", worker_vswitch_ids=[vswitch.id], pod_vswitch_ids=[pod_vswitch.id],
                                    new_nat_gateway=False, addons=[{"name": "terway-eniip"}])
shared = alicloud.cs.NodePool("shared", cluster_id=k8s.id, vswitch_ids=[vswitch.id], instance_types=["ecs.g7.large"],
                              desired_size=1)
exclusive = alicloud.cs.NodePool("exclusive", cluster_id=k8s.id, vswitch_ids=[vswitch.id],
                                 instance_types=["ecs.g7.4xlarge"], desired_size=1,
                                 labels=[{"key": "k8s.aliyun.com/exclusive-mode-eni-type", "value": "eniOnly"}])
# ENI backends get the client's address on the pods' own port: the cluster's group admits ICMP, itself and the
# NodePorts, so the application's port is opened as ACK's docs ask for an exposed application
alicloud.ecs.SecurityGroupRule("web", security_group_id=k8s.security_group_id, type="ingress", ip_protocol="tcp",
                               port_range="80/80", cidr_ip="0.0.0.0/0")
credential = alicloud.cs.get_cluster_credential_output(cluster_id=exclusive.cluster_id)
pulumi.export("kubeconfig", pulumi.Output.secret(credential.kube_config))
"""

PINNED = """
apiVersion: v1
kind: Pod
metadata: {name: pinned, namespace: default, labels: {app: web}}
spec:
  nodeSelector: {k8s.aliyun.com/exclusive-mode-eni-type: eniOnly}
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    args: [netexec, --http-port=80]
    ports: [{containerPort: 80}]
"""


ENI_BACKED = """
apiVersion: v1
kind: Service
metadata:
  name: web-eni
  namespace: default
  annotations: {service.beta.kubernetes.io/backend-type: eni}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"""


def test_a_node_pool_labelled_for_exclusive_enis_runs_beside_a_shared_one(lab, program_stack, tmp_path,
                                                                         root_unchanged):
    """ACK's exclusive ENI node pools (Terway >= 1.11): a terway-eniip cluster whose pool labelled
    ``k8s.aliyun.com/exclusive-mode-eni-type: eniOnly`` gives its pods ENIs of their own (allocatable pods: its
    ENIs - 1), while the other pool's pods share ENIs; pods of both answer each other."""
    stack = program_stack(MIXED_POOLS_PROGRAM)
    stack.run("up", "--yes")
    _, kubectl = outputs_and_kubectl(stack, tmp_path)
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    allocatable = {("eniOnly" if n["metadata"]["labels"].get("k8s.aliyun.com/exclusive-mode-eni-type") else "shared"):
                   n["status"]["allocatable"]["pods"] for n in nodes}
    assert allocatable == {"eniOnly": "7", "shared": "10"}
    kubectl("apply", "-f", "-", stdin=PINNED + "---" + WORKLOAD.split("---")[0])
    wait_for(lambda: len([p for p in json.loads(kubectl("get", "pods", "-o", "json"))["items"]
                          if p["status"].get("phase") == "Running"]) == 3, "3 pods running", timeout=40)
    pods = {p["metadata"]["name"]: p for p in json.loads(kubectl("get", "pods", "-o", "json"))["items"]}
    pinned = Namespace(pod_netns_name(lab, "default", "pinned"))
    assert "veth1" in pinned.run(["ip", "-o", "link"]).stdout  # exclusive: eth0 is its ENI, veth1 to the node
    for name, pod in pods.items():
        if name == "pinned":
            continue
        netns = pod_netns_name(lab, "default", name)
        assert (http_get(netns, pods["pinned"]["status"]["podIP"], 80, "/hostname")) == "pinned"
        if pod["spec"]["nodeName"] != pods["pinned"]["spec"]["nodeName"]:  # a shared-ENI pod: no veth1
            assert "veth1" not in Namespace(netns).run(["ip", "-o", "link"]).stdout

    # ACK's ENI backends: the SLB forwards to the pods themselves (a shared ENI's secondary IP, an exclusive ENI)
    kubectl("apply", "-f", "-", stdin=ENI_BACKED)
    wait_for(lambda: json.loads(kubectl("get", "service", "web-eni", "-o", "json"))["status"]
             .get("loadBalancer", {}).get("ingress"), "the ENI-backed Service's external IP", timeout=30)
    address = json.loads(kubectl("get", "service", "web-eni", "-o", "json"))["status"]["loadBalancer"]["ingress"][0]
    answered: dict[str, str] = {}

    def every_pod_with_the_clients_address() -> bool:
        body = http_get(f"{mark(lab)}internet", address["ip"], 80, "/hostname")
        if body:
            answered[body] = http_get(f"{mark(lab)}internet", address["ip"], 80, "/clientip") or ""
        return set(pods) <= set(answered)

    wait_for(every_pod_with_the_clients_address, "every pod answering through the ENI-backed SLB", timeout=45)
    clients = {seen.split(":")[0] for seen in answered.values() if seen}
    assert clients and all(c.startswith("203.0.113.") for c in clients), answered  # no node in between

    stack.run("destroy", "--yes")
    assert list_namespaces(mark(lab)) == [] and control_planes(lab) == []


BAD_CLUSTER = """
import pulumi_alicloud as alicloud
vpc = alicloud.vpc.Network("vpc", cidr_block="10.4.0.0/16")
vswitch = alicloud.vpc.Switch("vswitch", cidr_block="10.4.0.0/24", vpc_id=vpc.id, zone_id="cn-hangzhou-a")
alicloud.cs.ManagedKubernetes("k8s", worker_vswitch_ids=[vswitch.id], pod_vswitch_ids=[vswitch.id],
                              service_cidr="10.96.0.0/12", pod_cidr="10.244.0.0/16", addons=[{"name": "terway-eni"}])
"""

BAD_POOL = """
import pulumi_alicloud as alicloud
alicloud.cs.NodePool("pool", cluster_id="c01234567", vswitch_ids=["vsw-0000000a"], instance_types=["ecs.c6.large"],
                     desired_size=1)
"""


def test_what_the_lab_cannot_run_fails_the_preview_naming_the_field(lab, program_stack):
    stack = program_stack(BAD_CLUSTER)
    preview = stack.run("preview", check=False)
    text = preview.stdout + preview.stderr
    assert preview.returncode != 0
    assert "service_cidr: '10.96.0.0/12': acklab's control plane serves ACK's default 172.21.0.0/20 only" in text
    assert "pod_cidr: is flannel's; with terway-eni pods take addresses of pod_vswitch_ids" in text
    (stack.project / "__main__.py").write_text(BAD_POOL)  # the engine stops at the first resource that fails
    preview = stack.run("preview", check=False)
    assert preview.returncode != 0
    assert "instance_types: 'ecs.c6.large': its ENI quota is not known to the lab" in preview.stdout + preview.stderr
    assert list_namespaces(mark(lab)) == []
