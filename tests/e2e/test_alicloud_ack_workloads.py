"""Workloads in the same Pulumi program as the ACK cluster, as ACK users write them: pulumi-alicloud's
cs.ManagedKubernetes + cs.NodePool, then pulumi-kubernetes' Provider on the cluster's kubeconfig
(cs.get_cluster_credential) with a Namespace, a Deployment and a Service. The real engine runs acklab's `alicloud`
plugin and pulumi-kubernetes' own plugin, built from Go modules (scripts/build-k8s-provider.sh) and named in
Pulumi.yaml, so nothing is downloaded. `pulumi up` waits, as pulumi-kubernetes does, for the Deployment to become
available (the node agent reports the pods Ready) and the Service to have endpoints; kubectl then sees two Running
pods behind the Service, a pod answers through it, and `pulumi destroy` leaves nothing of the lab.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from netns.kernel.namespace import list_namespaces
from netns.model.names import mark
from netns.realize.control_plane import control_planes
from tests.e2e.test_alicloud_ack import Kubectl
from tests.e2e.test_pulumi_up import VENV, Stack, temp_project
from tests.k8stools import http_get
from tests.labtools import env_with_venv, wait_for

pytestmark = pytest.mark.e2e

PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud
import pulumi_kubernetes as kubernetes

name = "ack-lab"
zones = alicloud.get_zones(available_resource_creation="VSwitch")
vpc = alicloud.vpc.Network("vpc", vpc_name=name, cidr_block="10.4.0.0/16")
vswitch = alicloud.vpc.Switch("vswitch", vswitch_name=name, cidr_block="10.4.0.0/24", vpc_id=vpc.id,
                              zone_id=zones.zones[0].id)
pod_vswitch = alicloud.vpc.Switch("pod-vswitch", vswitch_name=f"{name}-pods", cidr_block="10.4.32.0/20",
                                  vpc_id=vpc.id, zone_id=zones.zones[0].id)
group = alicloud.ecs.SecurityGroup("nodes", security_group_name=f"{name}-nodes", vpc_id=vpc.id,
                                   inner_access_policy="Accept")
alicloud.ecs.SecurityGroupRule("from-vpc", security_group_id=group.id, type="ingress", policy="accept",
                               ip_protocol="all", port_range="-1/-1", cidr_ip="10.4.0.0/16", priority=1)
k8s = alicloud.cs.ManagedKubernetes("k8s",
    name_prefix=name,
    cluster_spec="ack.pro.small",
    worker_vswitch_ids=[vswitch.id],
    pod_vswitch_ids=[pod_vswitch.id],
    security_group_id=group.id,
    service_cidr="172.21.0.0/20",
    new_nat_gateway=False,
    slb_internet_enabled=False,
    addons=[{"name": "terway-eniip"}])
pool = alicloud.cs.NodePool("default",
    node_pool_name="default",
    cluster_id=k8s.id,
    vswitch_ids=[vswitch.id],
    instance_types=["ecs.g7.large"],
    system_disk_category="cloud_essd",
    system_disk_size=40,
    desired_size=1)
credential = alicloud.cs.get_cluster_credential_output(cluster_id=pool.cluster_id)

# The workloads, in the same program: pulumi-kubernetes on the cluster's kubeconfig
cluster = kubernetes.Provider("k8s", kubeconfig=credential.kube_config)
on_cluster = pulumi.ResourceOptions(provider=cluster)
namespace = kubernetes.core.v1.Namespace("web", metadata={"name": "web"}, opts=on_cluster)
labels = {"app": "web"}
deployment = kubernetes.apps.v1.Deployment("web",
    metadata={"name": "web", "namespace": namespace.metadata.name},
    spec={
        "replicas": 2,
        "selector": {"match_labels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "termination_grace_period_seconds": 1,
                "containers": [{
                    "name": "netexec",
                    "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
                    "args": ["netexec", "--http-port=8080"],
                    "ports": [{"container_port": 8080}],
                }],
            },
        },
    },
    opts=on_cluster)
service = kubernetes.core.v1.Service("web",
    metadata={"name": "web", "namespace": namespace.metadata.name},
    spec={"selector": labels, "ports": [{"port": 80, "target_port": 8080}]},
    opts=on_cluster)

pulumi.export("kubeconfig", pulumi.Output.secret(credential.kube_config))
pulumi.export("namespace", namespace.metadata.name)
pulumi.export("cluster_ip", service.spec.cluster_ip)
pulumi.export("ready_replicas", deployment.status.ready_replicas)
"""


def _acklab_exec(lab: str, target: str, *argv: str) -> str | None:
    result = subprocess.run([str(VENV / "bin" / "acklab"), "exec", "--lab", lab, target, "--", *argv],
                            capture_output=True, text=True, timeout=30, env=env_with_venv())
    return result.stdout if result.returncode == 0 else None


def test_workloads_in_the_cluster_program_up_serve_destroy(lab, tmp_path: Path, root_unchanged):
    assert (VENV / "bin" / "pulumi-resource-kubernetes").exists(), "run scripts/build-k8s-provider.sh (make setup-test)"
    stack = Stack(temp_project(tmp_path, PROGRAM, plugins=("alicloud", "kubernetes")), lab, tmp_path)
    # the engine must find both plugins through Pulumi.yaml alone: not on PATH, not in PULUMI_HOME (empty), never
    # downloaded (without the entry it would try get.pulumi.com for pulumi-resource-kubernetes-v4.25.0)
    stack.env["PULUMI_IGNORE_AMBIENT_PLUGINS"] = "true"
    stack.init()
    try:
        start = time.monotonic()
        up = stack.run("up", "--yes")
        print(f"\npulumi up of the cluster and its workloads: {time.monotonic() - start:.1f}s")
        home = Path(stack.env["PULUMI_HOME"])  # empty before the run: the engine would download plugins into it
        assert not list(home.glob("plugins/resource-kubernetes*")), "the engine used .venv/bin's plugin"
        text = (up.stdout + up.stderr).lower()
        assert "download" not in text and "from $path" not in text, up.stdout[-2000:]
        out = json.loads(stack.run("stack", "output", "--json", "--show-secrets").stdout)
        assert out["namespace"] == "web" and out["ready_replicas"] == 2
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(out["kubeconfig"])
        kubectl = Kubectl(kubeconfig)

        # pulumi up returned once the Deployment was available: nothing to wait for here
        pods = json.loads(kubectl("get", "pods", "-n", "web", "-l", "app=web", "-o", "json"))["items"]
        running = {p["metadata"]["name"]: p for p in pods if p["status"]["phase"] == "Running"
                   and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])}
        assert len(running) == 2, kubectl("get", "pods", "-n", "web", "-o", "wide")
        assert all(p["status"]["podIP"].startswith("10.4.") for p in running.values())  # Terway: the pod vSwitch
        slices = json.loads(kubectl("get", "endpointslices", "-n", "web", "-l", "kubernetes.io/service-name=web",
                                    "-o", "json"))["items"]
        ready = {a for s in slices for e in s.get("endpoints") or [] if e.get("conditions", {}).get("ready")
                 for a in e["addresses"]}
        assert ready == {p["status"]["podIP"] for p in running.values()}, slices
        print(kubectl("get", "deploy,pods,svc,endpointslices", "-n", "web", "-o", "wide"))

        # a pod answers through the Service: from the other pod (acklab exec ns/pod) and from the node
        cluster_ip = out["cluster_ip"]
        client = sorted(running)[0]
        answers: set[str] = set()

        def answered(body: str | None) -> bool:
            if body:
                answers.add(body.strip())
            return bool(body)

        wait_for(lambda: answered(_acklab_exec(lab, f"web/{client}", "curl", "-s", "-m", "2",
                                               f"http://{cluster_ip}/hostname")),
                 "a pod answering through the Service from a pod", timeout=20)
        node = running[client]["spec"]["nodeName"]
        wait_for(lambda: answered(http_get(f"{mark(lab)}{node}", cluster_ip, 80, "/hostname")),
                 "a pod answering through the Service from the node", timeout=20)
        assert answers <= set(running), answers

        stack.run("up", "--yes", "--expect-no-changes")

        start = time.monotonic()
        stack.run("destroy", "--yes")
        print(f"pulumi destroy: {time.monotonic() - start:.1f}s")
        assert list_namespaces(mark(lab)) == []
        assert control_planes(lab) == []
        resources = json.loads(stack.run("stack", "export").stdout)["deployment"].get("resources") or []
        assert resources == []
    finally:
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
