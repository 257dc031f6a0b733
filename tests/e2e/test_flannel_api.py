"""Flannel on the lab's API server: `make up` of the default program with `acklab:datapath vpc-route` (what ACK
calls Flannel) and `vxlan` (community Flannel), the same way as the Terway lab (tests/e2e/test_make_up.py).

The controller-manager's range allocator gives each Node a block of the pod CIDR; the node agent builds its bridge
on it and gives pods its addresses; vpc-route: the cloud controller routes each block in the VPC (the VPC's other
ECS reach pods directly), vxlan: the nodes carry the blocks in VXLAN among themselves (the VPC knows nothing of
them). A node that leaves takes its route (vpc-route) or its VXLAN peer entry (vxlan) with it.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path

import pytest

from acklab.k8s import cluster_install
from acklab.k8s.realize.pod_network import load_records
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark
from tests.e2e.test_make_up import DefaultLab
from tests.e2e.test_pulumi_up import PROJECT
from tests.k8stools import http_get

pytestmark = pytest.mark.e2e

POD_CIDR = ipaddress.ip_network("10.244.0.0/16")  # __main__.py's acklab:podCidr default


def wait_for(check, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stack_output(lab: DefaultLab, name: str):
    result = subprocess.run(["pulumi", "stack", "output", name, "--json", "--stack", lab.lab], cwd=PROJECT,
                            env=lab.env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def routes(netns: str) -> dict[str, str]:
    """Destination block → gateway (or device) of the namespace's main table."""
    out = subprocess.run(["ip", "netns", "exec", netns, "ip", "-j", "route"], capture_output=True, text=True,
                         check=True).stdout
    return {r["dst"]: r.get("gateway") or r.get("dev") for r in json.loads(out)}


@pytest.mark.parametrize("datapath", ["vpc-route", "vxlan"])
def test_make_up_with_flannel_gives_nodes_blocks_and_pods_their_addresses(datapath, lab, tmp_path: Path,
                                                                          root_unchanged):
    default = DefaultLab(lab, tmp_path)
    down_done = False
    try:
        default.configure(datapath=datapath)
        start = time.monotonic()
        up = default.make("up")
        print(f"\nmake up ({datapath}): {time.monotonic() - start:.1f}s")
        assert up.returncode == 0, up.stdout[-4000:]
        assert not [t for t in default.stack_types() if t.endswith(":RouteEntry")]  # the routes are the CCM's

        # each Node has its block of the pod CIDR, Flannel's annotations, and is Ready
        nodes = {n["metadata"]["name"]: n for n in default.get("nodes")["items"]}
        blocks = {name: ipaddress.ip_network(n["spec"]["podCIDR"]) for name, n in nodes.items()}
        assert sorted(blocks) == ["ecs-1", "ecs-2"] and blocks["ecs-1"] != blocks["ecs-2"]
        assert all(b.subnet_of(POD_CIDR) and b.prefixlen == 24 for b in blocks.values()), blocks
        backend = {"vpc-route": "ali-vpc", "vxlan": "vxlan"}[datapath]
        for name, node in nodes.items():
            assert node["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-type"] == backend
            conditions = {c["type"]: c for c in node["status"]["conditions"]}
            assert conditions["Ready"]["status"] == "True", name
            assert conditions["NetworkUnavailable"]["status"] == "False", name
            assert conditions["NetworkUnavailable"]["reason"] == {"vpc-route": "RouteCreated",
                                                                   "vxlan": "FlannelIsUp"}[datapath]

        # every pod's address is in its node's block, and is what the kernel has
        pods = default.get("pods", "--all-namespaces")["items"]
        records = load_records(lab)
        assert len(pods) == 7
        for pod in pods:
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            assert pod["status"]["phase"] == "Running", key
            assert ipaddress.ip_address(pod["status"]["podIP"]) in blocks[pod["spec"]["nodeName"]], key
            assert records[key].ip == pod["status"]["podIP"], key

        # pod to pod across nodes, and to the Service's ClusterIP
        client = records["demo/client-1"]
        far = next(p for p in pods if p["metadata"]["name"].startswith("web-") and p["spec"]["nodeName"] != client.node)
        assert (http_get(client.netns, far["status"]["podIP"], 8080, "/hostname") or "") == far["metadata"]["name"]
        cluster_ip = default.get("service", "web", "-n", "demo")["spec"]["clusterIP"]
        assert (http_get(client.netns, cluster_ip, 80, "/hostname") or "").startswith("web-")
        public = default.address("service", "web-public", "demo")
        assert (http_get(f"{mark(lab)}internet", public, 80, "/hostname") or "").startswith("web-")

        # vpc-route: the VPC routes each block to its node, so another ECS reaches pods; vxlan: the VPC does not
        instances = stack_output(default, "instances")
        vpc_routes = routes(stack_output(default, "vpc_netns"))
        ecs3 = instances["ecs-3"]["netns"]
        reached = http_get(ecs3, far["status"]["podIP"], 8080, "/hostname")
        if datapath == "vpc-route":
            assert {str(b): instances[n]["private_ip"] for n, b in blocks.items()}.items() <= vpc_routes.items()
            assert reached == far["metadata"]["name"]
        else:
            assert not [dst for dst in vpc_routes if dst.startswith("10.244.")]
            assert reached is None
            assert routes(instances["ecs-1"]["netns"])[str(blocks["ecs-2"])] == str(blocks["ecs-2"][0])

        # ecs-2 leaves: its route goes from the VPC (the cloud controller), its peer entry from ecs-1 (vxlan)
        leaving = instances["ecs-2"]
        cluster_install.remove_node(lab, "ecs-2", leaving["netns"], leaving["private_ip"])
        gone = str(blocks["ecs-2"])
        if datapath == "vpc-route":
            wait_for(lambda: gone not in routes(stack_output(default, "vpc_netns")), "the VPC route of ecs-2 to go")
        else:
            wait_for(lambda: gone not in routes(instances["ecs-1"]["netns"]), "ecs-1's VXLAN route to ecs-2")
        if datapath == "vpc-route":  # the node that stays keeps its route
            assert str(blocks["ecs-1"]) in routes(stack_output(default, "vpc_netns"))

        down = default.make("down")
        down_done = True
        assert down.returncode == 0, down.stdout[-4000:]
        assert f"removed {mark(lab)}pod-" not in down.stdout, down.stdout[-3000:]
        assert list_namespaces(mark(lab)) == [] and not Namespace(client.netns).exists()
    finally:
        if not down_done:
            default.make("down")
        (PROJECT / f"Pulumi.{lab}.yaml").unlink(missing_ok=True)
