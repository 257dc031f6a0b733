"""labs/ack as a user runs it: `make ack-up` (the ACK cluster program through the real engine, kubectl apply of
labs/ack/k8s, the wait until the Ingress answers), then what labs/ack/README.md says to try (requests through both
SLBs from the lab's internet, the NetworkPolicy), `make ack-up` again, then `make ack-down`.

The lab has a unique name and its own Pulumi backend (the user's stacks are never touched); whatever happens,
`make ack-down` runs and the lab fixture cleans what is left.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from netns.kernel.namespace import list_namespaces
from netns.model.names import mark
from netns.realize.control_plane import control_planes
from tests.e2e.test_pulumi_up import PROJECT, VENV
from tests.k8stools import http_get
from tests.labtools import wait_for

pytestmark = pytest.mark.e2e

LAB_DIR = PROJECT / "labs" / "ack"
HOST, INGRESS_PATH = "web.acklab.test", "/app/hostname"  # labs/ack/k8s/ingress.yaml (rewritten to /hostname)


class AckLab:
    """`make` targets and kubectl for one lab, with a private backend and kubeconfig."""

    def __init__(self, lab: str, tmp_path: Path) -> None:
        self.lab = lab
        self.kubeconfig = tmp_path / "kubeconfig"
        backend = tmp_path / "pulumi"
        backend.mkdir()
        # MAKEFLAGS: nothing of an outer make (make test: -j, -s) leaks into the targets run here
        self.env = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}", "MAKEFLAGS": "",
                    "PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_HOME": str(backend / "home"),
                    "PULUMI_CONFIG_PASSPHRASE": "", "PULUMI_SKIP_UPDATE_CHECK": "true"}

    def make(self, target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", target, f"LAB={self.lab}", f"ACK_KUBECONFIG={self.kubeconfig}"], cwd=PROJECT,
                              env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                              check=False)

    def kubectl(self, *args: str) -> str:
        result = subprocess.run([str(VENV / "bin" / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
                                capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def address(self, kind: str, name: str, namespace: str = "default") -> str:
        """What `kubectl get` shows as the object's ADDRESS / EXTERNAL-IP: its SLB's address."""
        return self.get(kind, name, "-n", namespace)["status"]["loadBalancer"]["ingress"][0]["ip"]


def test_make_ack_up_serves_and_ack_down_leaves_nothing(lab, tmp_path, root_unchanged):
    ack = AckLab(lab, tmp_path)
    down_done = False
    try:
        start = time.monotonic()
        up = ack.make("ack-up")
        print(f"\nmake ack-up: {time.monotonic() - start:.1f}s")
        assert up.returncode == 0, up.stdout[-4000:]
        assert "csi-plugin accepted and ignored" in up.stdout  # the add-on the lab does not run is named
        assert f"lab {lab} serves after" in up.stdout and f"lab {lab} ready after" in up.stdout, up.stdout[-2000:]

        nodes = ack.get("nodes")["items"]
        ready = [n for n in nodes if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in n["status"]["conditions"])]
        assert len(ready) == len(nodes) == 2
        assert all(n["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "ecs.g7.large" for n in nodes)

        internet = f"{mark(lab)}internet"
        ingress_ip, service_ip = ack.address("ingress", "web"), ack.address("service", "web")
        assert ingress_ip == ack.address("service", "nginx-ingress-lb", "kube-system")  # the add-on's SLB
        assert ingress_ip != service_ip and service_ip.startswith("203.0.113.")

        def via_ingress() -> str:
            return http_get(internet, ingress_ip, 80, INGRESS_PATH, host=HOST) or ""

        def via_service() -> str:
            return http_get(internet, service_ip, 80, "/hostname") or ""

        # make ack-up returned once both answered: no waiting here, they answer now
        assert via_ingress().startswith("web-") and via_service().startswith("web-")

        # the README's NetworkPolicy: only the ingress controller's pods may reach the web pods
        ack.kubectl("apply", "-f", str(LAB_DIR / "k8s" / "networkpolicy"))
        wait_for(lambda: not via_service(), "the NetworkPolicy to cut the Service's own SLB", timeout=15)
        assert via_ingress().startswith("web-")
        ack.kubectl("delete", "-f", str(LAB_DIR / "k8s" / "networkpolicy"))
        wait_for(lambda: via_service().startswith("web-"), "the Service to answer again", timeout=15)

        # a second make ack-up (a user running it again) changes nothing and serves as before
        again = ack.make("ack-up")
        assert again.returncode == 0, again.stdout[-4000:]
        assert "10 unchanged" in again.stdout and f"lab {lab} serves after" in again.stdout, again.stdout[-2000:]

        start = time.monotonic()
        down = ack.make("ack-down")
        down_done = True
        print(f"make ack-down: {time.monotonic() - start:.1f}s")
        assert down.returncode == 0, down.stdout[-4000:]
        retried = re.search(r"^ack-down: pulumi destroy failed \(above\); once more$", down.stdout, re.MULTILINE)
        if retried:  # (the line make prints, not the recipe it echoes first)
            # the rare first destroy that fails at once (cause not yet known): shown in the run's warnings summary,
            # which a passing run prints too, so that the next one seen says why
            first = down.stdout[:retried.start()]
            warnings.warn(f"make ack-down needed a second pulumi destroy; the first said:\n{first[-3000:]}",
                          stacklevel=1)
        assert list_namespaces(mark(lab)) == []
        assert control_planes(lab) == []
        assert not ack.kubeconfig.exists()
        # stack rm took the stack's settings file (after a destroy that succeeded, at the latest the second time)
        assert not (LAB_DIR / f"Pulumi.{lab}.yaml").exists(), down.stdout[-6000:]
    finally:
        if not down_done:
            ack.make("ack-down")
        (LAB_DIR / f"Pulumi.{lab}.yaml").unlink(missing_ok=True)
