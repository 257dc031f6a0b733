"""A cluster driven by its API server, for kernel tests: the VPC of ``k8stools.build_vpc`` (node-1 and node-2 in
vSwitch vsw-0000000a, ecs-3 in another vSwitch), the control plane with its controllers and, on both nodes, what
``cluster_install.install_node`` puts on an ACK node (the node agent, upstream kube-proxy, the NetworkPolicy
agent). Workloads come in with ``kubectl apply``, as a user's would.

Datapaths: ``terway-eniip`` (Terway's live IPAM makes the pods' ENIs in pod vSwitch vsw-0000000c,
192.168.3.0/24), ``vpc-route`` and ``vxlan`` (Flannel: the controller-manager hands each Node a block of
10.244.0.0/16; with vpc-route the cloud controller routes it in the VPC).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acklab.k8s.cluster_install import NodeSpec, PodNetworkSpec, install_control_plane, install_node
from acklab.k8s.realize.pod_network import PodRecord, load_records
from netns.realize import control_plane as cp
from netns.realize.vpc import VSwitch
from tests import k8stools as k
from tests.labtools import clean_lab, new_lab, require_cluster_tools, wait_for

VENV_BIN = Path(sys.executable).parent
TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kube-proxy", "coredns")
CLUSTER_ID = "c0000a1ab"
NODE_VSWITCH, POD_VSWITCH = "vsw-0000000a", "vsw-0000000c"
FLANNEL_POD_CIDR = "10.244.0.0/16"
NODES = {"node-1": ("i-00000001", "192.168.1.10"), "node-2": ("i-00000002", "192.168.1.11")}


def until(predicate: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.05) -> float:
    """``labtools.wait_for`` with the API tests' deadline (a pod's start, a controller's resync)."""
    return wait_for(predicate, what, timeout, interval)


class Kubectl:
    """kubectl as the lab's admin (its kubeconfig on the host's loopback), for any test's lab object with ``lab``."""

    lab: str

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(VENV_BIN / "kubectl"), "--kubeconfig", str(cp.kubeconfig_path(self.lab)),
                                 *args], capture_output=True, text=True, timeout=60, input=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    def apply(self, manifest: str) -> str:
        return self.kubectl("apply", "-f", "-", stdin=textwrap.dedent(manifest)).stdout

    def delete(self, manifest: str) -> None:
        self.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=textwrap.dedent(manifest))

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)


@dataclass
class ApiLab(Kubectl):
    lab: str
    datapath: str
    netns: dict[str, str]  # node (and ecs-3) → its namespace
    node_ips: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    # --- pods -----------------------------------------------------------------------------------------------------

    def records(self) -> dict[str, PodRecord]:
        """The pods the node agents made (``namespace/name`` → record: namespace, address, node)."""
        return {r.pod.key: r for r in load_records(self.lab).values()}

    def running(self, namespace: str | None = None, selector: str | None = None) -> dict[str, dict]:
        """Running pods as the API shows them, with their pod network made (``namespace/name`` → the object)."""
        args = ["pods", *(["-n", namespace] if namespace else ["-A"]), *(["-l", selector] if selector else [])]
        records = self.records()
        return {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in self.get_json(*args)["items"]
                if p["status"].get("phase") == "Running" and p["status"].get("podIP")
                and p["metadata"].get("deletionTimestamp") is None
                and f"{p['metadata']['namespace']}/{p['metadata']['name']}" in records}

    def wait_running(self, count: int, namespace: str | None = None, selector: str | None = None,
                     timeout: float = 90.0) -> dict[str, dict]:
        """Exactly ``count`` pods Running (and no other pod of the selection still going away)."""
        found: dict[str, dict] = {}

        def settled() -> bool:
            nonlocal found
            found = self.running(namespace, selector)
            args = ["pods", *(["-n", namespace] if namespace else ["-A"]), *(["-l", selector] if selector else [])]
            return len(found) == count and len(self.get_json(*args)["items"]) == count

        until(settled, f"{count} pod(s) Running ({namespace or 'all namespaces'}, {selector or 'any'})", timeout,
              interval=0.2)
        return found

    def pod_netns(self, key: str) -> str:
        return self.records()[key].netns

    def pod_ip(self, key: str) -> str:
        return self.records()[key].ip

    def cluster_ip(self, namespace: str, name: str) -> str:
        return self.get_json("service", name, "-n", namespace)["spec"]["clusterIP"]

    def node_ports(self, namespace: str, name: str) -> dict[str, int]:
        """Port name (or number) → its NodePort."""
        spec = self.get_json("service", name, "-n", namespace)["spec"]
        return {p.get("name") or str(p["port"]): p["nodePort"] for p in spec["ports"] if p.get("nodePort")}


@contextlib.contextmanager
def api_lab(datapath: str = "terway-eniip", proxy_mode: str = "iptables", ingress_addon: bool = False
            ) -> Iterator[ApiLab]:
    """A new lab with the cluster; removed afterwards, also when the test fails."""
    require_cluster_tools(TOOLS)
    lab = new_lab()
    try:
        begin = time.monotonic()
        router, nodes, ecs3 = k.build_vpc(lab)
        if datapath == "terway-eniip":
            VSwitch(router, POD_VSWITCH).create(k.N(k.POD_VSWITCH_CIDR), "cn-hangzhou-h", "vsw-pods")
        elif datapath == "vpc-route":  # routed pod blocks need the group rule ACK adds in this mode
            k.allow(lab, k.NODE_SG, "sgr-0000000f", "all", -1, FLANNEL_POD_CIDR)
        network = PodNetworkSpec(datapath, FLANNEL_POD_CIDR if datapath != "terway-eniip" else None, 24)
        install_control_plane(lab, NODE_VSWITCH, CLUSTER_ID, ingress_addon=ingress_addon, network=network)
        netns = {name: instance.namespace.name for name, instance in zip(NODES, nodes, strict=True)}
        for name, (instance_id, ip) in NODES.items():
            install_node(NodeSpec(lab, name, instance_id, netns[name], ip, "ecs.g7.large", NODE_VSWITCH,
                                  (POD_VSWITCH,), (k.NODE_SG,), proxy_mode, network=network))
        netns["ecs-3"] = ecs3.namespace.name
        result = ApiLab(lab, datapath, netns, {name: ip for name, (_, ip) in NODES.items()} | {"ecs-3": "192.168.2.10"})
        result.timings["cluster installed"] = round(time.monotonic() - begin, 1)
        until(lambda: _nodes_ready(result), "both Nodes Ready", 60, interval=0.2)
        yield result
        print(f"\n{lab} ({datapath}) timings (s):", json.dumps(result.timings, sort_keys=True))
    finally:
        clean_lab(lab)


def _nodes_ready(lab: ApiLab) -> bool:
    items = lab.get_json("nodes")["items"]
    ready = {n["metadata"]["name"] for n in items
             if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))}
    return ready >= set(NODES)


def lab_fixture(datapath: str = "terway-eniip", **options: Any) -> Iterator[ApiLab]:
    """For a module-scoped fixture: ``yield from lab_fixture(...)``."""
    with api_lab(datapath, **options) as lab:
        yield lab
