"""The lab's stand-in for what kube-apiserver keeps about Services: allocations and status.

In a cluster the API server allocates a Service's ClusterIP and NodePorts when it is created and keeps them;
the cloud controller manager writes the SLB's address into ``status.loadBalancer``; kube-proxy and the ingress
controller read the result. Here both the Pulumi program (which creates the SLBs of LoadBalancer Services and
needs their NodePorts) and the Ansible roles (which program the nodes) call :func:`allocate`, which keeps the
allocations of a lab in ``/run/acklab/<lab>/k8s/allocations.json`` so both see the same, stable numbers.
The allocation itself is pure and deterministic (:mod:`acklab.k8s.services`): losing the file only loses
history, never consistency.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from acklab.k8s.agent import k8s_dir
from acklab.k8s.services import (
    Allocations,
    Manifest,
    health_check_key,
    node_port_key,
    service_key,
)
from acklab.k8s.services import allocate as allocate_pure
from netns.kernel.files import write_json
from netns.realize import file_lock

LB_ADDRESS_TYPE = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-address-type"
LB_SCHEDULER = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-scheduler"


def _allocations_file(lab: str) -> Path:
    return k8s_dir(lab) / "allocations.json"


def _services_file(lab: str) -> Path:
    return k8s_dir(lab) / "services.json"


def allocate(lab: str, services: Iterable[Manifest],
             check: Callable[[Allocations], object] | None = None) -> Allocations:
    """Allocate for ``services`` keeping what this lab allocated before; persist the result.

    ``check`` sees the result before anything is written (a caller's validation that may raise).
    """
    services = list(services)
    path = _allocations_file(lab)
    try:
        previous = Allocations.from_dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        previous = Allocations()
    if check is not None:
        check(allocate_pure(services, previous))
    with file_lock(path.with_suffix(".lock")):
        try:
            previous = Allocations.from_dict(json.loads(path.read_text()))
        except (FileNotFoundError, ValueError):
            previous = Allocations()
        result = allocate_pure(services, previous)
        if result != previous:
            write_json(path, result.to_dict())
    return result


def with_status(services: Iterable[Manifest], allocations: Allocations,
                load_balancers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The Services as the API server would return them: allocations in ``spec``, SLB address in ``status``.

    ``load_balancers`` maps ``namespace/name`` to the address of the SLB made for that Service.
    """
    out = []
    for manifest in services:
        svc = copy.deepcopy(dict(manifest))
        meta = svc.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta["name"])
        spec = svc.setdefault("spec", {})
        key = service_key(namespace, name)
        if key in allocations.cluster_ips:
            spec["clusterIP"] = allocations.cluster_ips[key]
        for port in spec.get("ports") or []:
            np = allocations.node_ports.get(node_port_key(namespace, name, str(port.get("name") or ""),
                                                          port.get("protocol", "TCP")))
            if np:
                port["nodePort"] = np
        health = allocations.node_ports.get(health_check_key(namespace, name))
        if health:
            spec["healthCheckNodePort"] = health
        address = (load_balancers or {}).get(key)
        if spec.get("type") == "LoadBalancer" and address:
            svc["status"] = {"loadBalancer": {"ingress": [{"ip": address}]}}
        out.append(svc)
    return out


def save_services(lab: str, services: list[dict[str, Any]]) -> None:
    """Keep the Services as last programmed (``acklab status`` shows them)."""
    write_json(_services_file(lab), services)


def load_services(lab: str) -> list[dict[str, Any]]:
    try:
        return json.loads(_services_file(lab).read_text())
    except (FileNotFoundError, ValueError):
        return []
