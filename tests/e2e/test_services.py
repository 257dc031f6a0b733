"""Services end to end: the default program makes an SLB per LoadBalancer Service (like ACK's CCM), the playbook
programs kube-proxy's rules on the nodes; an internet client reaches the pods through SLB → NodePort → kube-proxy;
ClusterIPs answer from pods and nodes; a second playbook run changes nothing."""

from __future__ import annotations

import collections
import json
import subprocess

import pytest

from netns.kernel.namespace import list_namespaces
from netns.model.names import mark
from netns.realize import state_dir
from tests.e2e.test_k8s_ansible import PROJECT, lab_stack, playbook, recap
from tests.labtools import clean_lab, env_with_venv, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def services_stack(lab, tmp_path):
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    (manifests / "demo.yaml").write_text((PROJECT / "labs" / "default" / "k8s" / "demo.yaml").read_text())
    stack = lab_stack(lab, tmp_path, "terway-eniip")
    stack.run("config", "set", "acklab:manifests", str(manifests))
    try:
        yield stack, manifests
    finally:
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
        clean_lab(lab)


def acklab(lab: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["acklab", *args], capture_output=True, text=True, timeout=60, check=check,
                          env={**env_with_venv(), "ACKLAB_LAB": lab})


def curl(lab: str, target: str, url: str) -> str | None:
    result = acklab(lab, "exec", "--lab", lab, target, "--", "curl", "-s", "-m", "2", url, check=False)
    return result.stdout if result.returncode == 0 else None


def test_load_balancer_service_through_slb_nodeport_and_kube_proxy(services_stack, lab):
    stack, manifests = services_stack
    stack.run("up", "--yes")
    first = playbook(stack, manifests)
    assert recap(first.stdout)["failed"] == 0
    assert "kube_proxy : Sync kube-proxy's rules on the node" in first.stdout

    status = json.loads(acklab(lab, "status", "--lab", lab, "--json").stdout)
    services = {f"{s['namespace']}/{s['name']}": s for s in status["services"]}
    public, web = services["demo/web-public"], services["demo/web"]
    assert public["type"] == "LoadBalancer" and public["ports"][0]["node_port"] >= 30000
    slb = next(lb for lb in status["slbs"] if lb["address"] == public["load_balancer"])
    assert slb["address_type"] == "internet" and slb["address"].startswith("203.0.113.")
    listener = slb["listeners"][0]
    assert (listener["frontend_port"], listener["backend_port"]) == (80, public["ports"][0]["node_port"])

    # the SLB's health checks reach the NodePort on both nodes once kube-proxy's rules are in
    def healthy() -> bool:
        lbs = json.loads(acklab(lab, "status", "--lab", lab, "--json").stdout)["slbs"]
        rows = next(lb for lb in lbs if lb["id"] == slb["id"])["listeners"][0]["backends"]
        return len(rows) == 2 and all(r["status"] == "normal" for r in rows)

    wait_for(healthy, "both nodes healthy behind the SLB", timeout=30)
    web_pods = {p["name"] for p in status["pods"] if p["labels"].get("app") == "web"}
    seen = collections.Counter(curl(lab, "internet", f"http://{slb['address']}/hostname") for _ in range(30))
    assert set(seen) == web_pods, seen  # internet → SLB → NodePort (either node) → kube-proxy → every web pod

    # ClusterIP from a pod and from a node; the client pod's address is kept inside the cluster
    client = next(p for p in status["pods"] if p["name"] == "client-1")
    assert curl(lab, "demo/client-1", f"http://{web['cluster_ip']}/hostname") in web_pods
    assert curl(lab, "demo/client-1", f"http://{web['cluster_ip']}/clientip").startswith(client["ip"] + ":")
    assert curl(lab, "ecs-2", f"http://{web['cluster_ip']}/hostname") in web_pods

    second = playbook(stack, manifests)
    assert recap(second.stdout)["changed"] == 0, second.stdout


def test_bad_load_balancer_annotation_is_refused_before_anything_is_made(lab, tmp_path):
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    text = (PROJECT / "labs" / "default" / "k8s" / "demo.yaml").read_text()
    (manifests / "demo.yaml").write_text(text.replace("loadbalancer-scheduler: rr", "loadbalancer-scheduler: fastest"))
    stack = lab_stack(lab, tmp_path, "terway-eniip")
    stack.run("config", "set", "acklab:manifests", str(manifests))
    try:
        result = stack.run("up", "--yes", check=False)
        assert result.returncode != 0
        assert "Service demo/web-public" in result.stdout + result.stderr
        assert "alibaba-cloud-loadbalancer-scheduler" in result.stdout + result.stderr
        assert "'fastest' is not one of rr, wrr, wlc" in result.stdout + result.stderr
        assert not list_namespaces(mark(lab)), "nothing of the lab may be made when a Service is refused"
        assert not state_dir(lab).exists(), "not even the API server's allocations"
    finally:
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
        clean_lab(lab)

