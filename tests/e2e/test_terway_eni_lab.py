"""The default lab with Terway's exclusive ENI mode: `make up` with `acklab:datapath terway-eni` (the nodes are then
ecs.g7.4xlarge, as ACK wants more than 6 ENIs for such nodes), its workloads through the API, each pod on an ENI of
its own, the VPC's ecs-3 and the lab's internet reaching them, `make down` leaving nothing.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest

from acklab.k8s.realize.pod_network import load_records
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark
from netns.realize.vpc import routers
from tests.e2e.test_flannel_api import stack_output
from tests.e2e.test_make_up import POD_VSWITCH, DefaultLab
from tests.e2e.test_pulumi_up import PROJECT
from tests.k8stools import http_get

pytestmark = pytest.mark.e2e


def test_make_up_with_terway_eni_gives_each_pod_an_eni(lab, tmp_path: Path, root_unchanged):
    default = DefaultLab(lab, tmp_path)
    down_done = False
    try:
        default.configure(datapath="terway-eni")
        start = time.monotonic()
        up = default.make("up")
        print(f"\nmake up (terway-eni): {time.monotonic() - start:.1f}s")
        assert up.returncode == 0, up.stdout[-4000:]

        nodes = default.get("nodes")["items"]
        assert sorted(n["status"]["allocatable"]["pods"] for n in nodes) == ["7", "7"]  # 8 ENIs - the primary
        pods = default.get("pods", "--all-namespaces")["items"]
        records = load_records(lab)
        enis = {facts["ip"]: eni for router in routers(lab) for vswitch in router.vswitches()
                for eni, facts in vswitch.enis().items() if facts.get("owner") == "terway"}
        assert len(pods) == 7
        for pod in pods:
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            ip = pod["status"]["podIP"]
            assert pod["status"]["phase"] == "Running" and ipaddress.ip_address(ip) in POD_VSWITCH, key
            assert ip in enis and records[key].eni, key  # the pod's address is its own ENI's
        assert len(set(enis)) >= len(pods)

        client = records["demo/client-1"]
        web = [p for p in pods if p["metadata"]["name"].startswith("web-")]
        far = next(p for p in web if p["spec"]["nodeName"] != client.node)
        assert http_get(client.netns, far["status"]["podIP"], 8080, "/hostname") == far["metadata"]["name"]
        cluster_ip = default.get("service", "web", "-n", "demo")["spec"]["clusterIP"]
        assert (http_get(client.netns, cluster_ip, 80, "/hostname") or "").startswith("web-")
        ecs3 = stack_output(default, "instances")["ecs-3"]["netns"]
        seen = http_get(ecs3, far["status"]["podIP"], 8080, "/clientip")
        assert seen is not None and seen.split(":")[0] == "192.168.2.10"  # ENI to ENI: the client's own address
        public = default.address("service", "web-public", "demo")
        assert (http_get(f"{mark(lab)}internet", public, 80, "/hostname") or "").startswith("web-")

        down = default.make("down")
        down_done = True
        assert down.returncode == 0, down.stdout[-4000:]
        assert list_namespaces(mark(lab)) == [] and not Namespace(client.netns).exists()
    finally:
        if not down_done:
            default.make("down")
        (PROJECT / f"Pulumi.{lab}.yaml").unlink(missing_ok=True)
