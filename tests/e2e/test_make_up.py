"""The default lab as a user brings it up: `make up` (the program through the real engine, `cluster.yml` for the
control plane and the node agents, `kubectl apply` of labs/default/k8s, the wait until it serves), then what the
README says to look at (kubectl's nodes and pods, the SLBs from the lab's internet), `make up` again (nothing
changes), then `make down` (nothing left, also not the API server's loopback listener).

The lab has a unique name and its own Pulumi backend (the user's stacks are never touched); whatever happens,
`make down` runs and the lab fixture cleans what is left.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from acklab.k8s.realize.pod_network import load_records
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark
from netns.realize.control_plane import control_planes, kubeconfig_path
from tests.ansibletools import recap
from tests.e2e.test_ack_lab import AckLab
from tests.e2e.test_pulumi_up import PROJECT
from tests.k8stools import http_get

pytestmark = pytest.mark.e2e

POD_VSWITCH = ipaddress.ip_network("192.168.3.0/24")  # __main__.py's vsw-pods-h: Terway's pod addresses
ACK_LABELS = ("topology.kubernetes.io/zone", "topology.kubernetes.io/region", "node.kubernetes.io/instance-type",
              "kubernetes.io/hostname")


class DefaultLab(AckLab):
    """`make up`/`make down` and kubectl for one lab of the default program (test_ack_lab's harness: a private
    Pulumi backend), with the default lab's workloads and the kubeconfig `make up` writes."""

    def __init__(self, lab: str, tmp_path: Path) -> None:
        super().__init__(lab, tmp_path)
        self.env["ACKLAB_MANIFESTS"] = str(PROJECT / "labs" / "default" / "k8s")
        self.kubeconfig = kubeconfig_path(lab)

    def configure(self, **settings: str) -> None:
        """A new stack of the lab with ``acklab:<key>`` settings (before `make up`)."""
        commands = [["stack", "init", self.lab]]
        commands += [["config", "set", f"acklab:{key}", value, "--stack", self.lab] for key, value in settings.items()]
        for args in commands:
            subprocess.run(["pulumi", *args], cwd=PROJECT, env=self.env, capture_output=True, timeout=60, check=True)

    def stack_types(self) -> list[str]:
        result = subprocess.run(["pulumi", "stack", "export", "--stack", self.lab], cwd=PROJECT, env=self.env,
                                capture_output=True, text=True, timeout=60, check=True)
        return [r["type"] for r in json.loads(result.stdout)["deployment"].get("resources") or []]


def loopback_listeners() -> set[str]:
    """The root namespace's listening TCP sockets on 127.0.0.1 (``ss -ltn``)."""
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3] for line in out.splitlines() if line.split()[3].startswith("127.0.0.1:")}


def test_make_up_runs_the_default_lab_on_the_api_and_make_down_leaves_nothing(lab, tmp_path, root_unchanged):
    default = DefaultLab(lab, tmp_path)
    listeners_before = loopback_listeners()
    down_done = False
    try:
        start = time.monotonic()
        up = default.make("up")
        print(f"\nmake up: {time.monotonic() - start:.1f}s")
        assert up.returncode == 0, up.stdout[-4000:]
        assert f"lab {lab} serves after" in up.stdout and f"lab {lab} ready after" in up.stdout, up.stdout[-2000:]

        # the ENIs of the pods are Terway's (the node agents'), not the stack's; no SLB is the stack's either
        types = default.stack_types()
        assert "alicloud:ecs/ecsNetworkInterface:EcsNetworkInterface" not in types
        assert not [t for t in types if t.startswith("alicloud:slb/")]

        nodes = {n["metadata"]["name"]: n for n in default.get("nodes")["items"]}
        assert sorted(nodes) == ["ecs-1", "ecs-2"]
        for name, node in nodes.items():
            assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]), name
            labels = node["metadata"]["labels"]
            assert all(key in labels for key in ACK_LABELS), labels
            assert labels["topology.kubernetes.io/zone"] == "cn-hangzhou-h"
            assert re.fullmatch(r"cn-hangzhou\.i-[0-9a-f]+", node["spec"]["providerID"]), node["spec"]

        # every pod Running with a Terway address, the address the kernel has in the pod's namespace
        pods = default.get("pods", "--all-namespaces")["items"]
        records = load_records(lab)
        assert len(pods) == 7  # 3 web, client-1, client-2, 2 ingress controllers (labs/default/k8s)
        for pod in pods:
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            assert pod["status"]["phase"] == "Running", key
            assert ipaddress.ip_address(pod["status"]["podIP"]) in POD_VSWITCH, key
            assert records[key].ip == pod["status"]["podIP"] and Namespace(records[key].netns).exists(), key

        # from the lab's internet: the LoadBalancer Service's SLB and the Ingress's (the controller's Service's)
        internet = f"{mark(lab)}internet"
        public = default.get("service", "web-public", "-n", "demo")["status"]["loadBalancer"]["ingress"][0]["ip"]
        ingress = default.get("ingress", "web", "-n", "demo")["status"]["loadBalancer"]["ingress"][0]["ip"]
        assert public != ingress
        assert (http_get(internet, public, 80, "/hostname") or "").startswith("web-")
        assert (http_get(internet, ingress, 80, "/hostname", host="web.acklab.test") or "").startswith("web-")

        # one listening socket on loopback for the lab's API server, nothing else in the root namespace
        (api,) = loopback_listeners() - listeners_before
        state = control_planes(lab)[0].read()
        assert state is not None and api == f"127.0.0.1:{state.host_port}"

        again = default.make("up")
        assert again.returncode == 0, again.stdout[-4000:]
        pulumi_summary = again.stdout.split("Resources:", 1)[1].split("Duration:", 1)[0].split()
        assert pulumi_summary[1:] == ["unchanged"], pulumi_summary  # "17 unchanged" and nothing else
        assert recap(again.stdout)["changed"] == 0, again.stdout[-3000:]
        applied = re.findall(r"^\S+/\S+ (created|configured|unchanged)$", again.stdout, re.MULTILINE)
        assert applied and set(applied) == {"unchanged"}, again.stdout[-3000:]

        start = time.monotonic()
        down = default.make("down")
        down_done = True
        print(f"make down: {time.monotonic() - start:.1f}s")
        assert down.returncode == 0, down.stdout[-4000:]
        # the nodes' pods went with the cluster (drained), not with acklab clean, the safety net
        assert f"removed {mark(lab)}pod-" not in down.stdout, down.stdout[-3000:]
        assert list_namespaces(mark(lab)) == []
        assert control_planes(lab) == []
        assert loopback_listeners() - listeners_before == set()
    finally:
        if not down_done:
            default.make("down")
        (PROJECT / f"Pulumi.{lab}.yaml").unlink(missing_ok=True)  # the stack's settings (its encryption salt)
