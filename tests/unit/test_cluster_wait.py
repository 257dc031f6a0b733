"""scripts/cluster-wait.py's pure share (no root, no cluster): which requests `make up` waits for, found from the
API's objects (``--all``), and which pods keep it waiting. A fake kubectl answers with fixed lists."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cluster_wait", PROJECT / "scripts" / "cluster-wait.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


cw = load_script()


class FakeKubectl:
    def __init__(self, **lists: list[dict[str, Any]] | None) -> None:
        self.lists = lists

    def get(self, kind: str, *args: str) -> Any | None:
        items = self.lists.get(kind)
        return None if items is None else {"items": items}


def ingress(name: str, rules: list[dict], namespace: str = "demo") -> dict:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"rules": rules}}


def path(value: str, kind: str) -> dict:
    return {"path": value, "pathType": kind, "backend": {"service": {"name": "web", "port": {"number": 80}}}}


def service(name: str, kind: str, ports: list[tuple[int, str]]) -> dict:
    return {"metadata": {"name": name, "namespace": "demo"},
            "spec": {"type": kind, "ports": [{"port": p, "protocol": proto} for p, proto in ports]}}


def pod(name: str, phase: str, ready: bool) -> dict:
    return {"metadata": {"name": name, "namespace": "demo"},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]}}


def test_an_ingress_is_asked_on_its_first_literal_path_with_its_host() -> None:
    rules = [{"host": "a.test", "http": {"paths": [path("/app(/|$)(.*)", "ImplementationSpecific")]}},
             {"host": "b.test", "http": {"paths": [path("/hostname", "Exact"), path("/", "Prefix")]}}]
    assert cw.ingress_target(ingress("web", rules)) == cw.Target("ingress", "demo", "web", "b.test", "/hostname")


def test_a_tls_host_is_asked_last_and_its_https_redirect_counts_as_served() -> None:
    secure = {"host": "s.test", "http": {"paths": [path("/", "Prefix")]}}
    plain = {"host": "p.test", "http": {"paths": [path("/", "Prefix")]}}
    both = ingress("web", [secure, plain])
    both["spec"]["tls"] = [{"hosts": ["s.test"], "secretName": "s"}]
    assert cw.ingress_target(both) == cw.Target("ingress", "demo", "web", "p.test", "/")
    only_tls = ingress("secure", [secure])
    only_tls["spec"]["tls"] = both["spec"]["tls"]
    assert cw.ingress_target(only_tls) == cw.Target("ingress", "demo", "secure", "s.test", "/", (200, 308))


def test_an_ingress_without_a_literal_path_is_asked_at_its_address() -> None:
    regex_only = [{"host": "a.test", "http": {"paths": [path("/app(/|$)(.*)", "ImplementationSpecific")]}}]
    assert cw.ingress_target(ingress("web", regex_only)) == cw.Target("ingress", "demo", "web", "", "/", None)
    assert cw.ingress_target(ingress("bare", [])) == cw.Target("ingress", "demo", "bare", "", "/", None)


def test_only_load_balancer_services_with_tcp_port_80_are_asked() -> None:
    kubectl = FakeKubectl(ingress=[], services=[
        service("public", "LoadBalancer", [(80, "TCP"), (443, "TCP")]),
        service("dns", "LoadBalancer", [(80, "UDP")]),
        service("other-port", "LoadBalancer", [(8080, "TCP")]),
        service("inside", "ClusterIP", [(80, "TCP")])])
    assert cw.discovered_targets(kubectl) == [cw.Target("service", "demo", "public", "", "/", None)]  # any answer


def test_nothing_is_found_while_the_api_does_not_answer() -> None:
    assert cw.discovered_targets(FakeKubectl(ingress=None, services=[])) is None


def test_pods_not_running_or_not_ready_keep_the_wait_finished_ones_do_not() -> None:
    kubectl = FakeKubectl(pods=[pod("ready", "Running", True), pod("starting", "Pending", False),
                                pod("unready", "Running", False), pod("job", "Succeeded", False)])
    assert cw.pod_problems(kubectl) == ["pod demo/starting is Pending", "pod demo/unready is Running, not Ready"]
    assert cw.pod_problems(FakeKubectl(pods=None)) == ["the API server does not answer"]


def workload(kind: str, name: str, spec: dict, status: dict) -> dict:
    return {"metadata": {"name": name, "namespace": "demo"}, "spec": spec, "status": status}


def test_workloads_keep_the_wait_until_every_replica_is_ready_even_before_their_pods_exist() -> None:
    kubectl = FakeKubectl(
        deployments=[workload("deployments", "web", {"replicas": 3}, {}),  # just applied: no pod yet
                     workload("deployments", "done", {"replicas": 2}, {"readyReplicas": 2, "updatedReplicas": 2}),
                     workload("deployments", "rolling", {"replicas": 2}, {"readyReplicas": 2, "updatedReplicas": 1}),
                     workload("deployments", "zero", {"replicas": 0}, {})],
        statefulsets=[], daemonsets=[workload("daemonsets", "agent", {}, {"numberReady": 1,
                                                                        "desiredNumberScheduled": 2})])
    assert cw.workload_problems(kubectl) == ["deployment demo/web: 0 of 3 ready",
                                             "deployment demo/rolling: 1 of 2 ready",
                                             "daemonset demo/agent: 1 of 2 ready"]
    assert cw.workload_problems(FakeKubectl(deployments=[], statefulsets=None, daemonsets=[])) == [
        "the API server does not answer"]
