"""A lab's Kubernetes cluster as its API server lists it, for ``acklab status`` / ``graph``.

One list call each for Nodes, pods and Services, with a short timeout, so a stopped API server cannot hang
``status``; the objects come back as dictionaries (as ``kubectl get -o json`` prints them). What the status shows
of them, and how pods are joined with the kernel's namespaces, is ``acklab/inventory.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REQUEST_TIMEOUT = 5.0  # seconds per list call: status answers even when the API server does not


@dataclass
class ClusterRead:
    """The cluster's objects as listed, or why they could not be (``error``: the API server did not answer)."""

    server: str
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def read(kubeconfig: str) -> ClusterRead:
    """Nodes, pods and Services of the cluster ``kubeconfig`` names (the lab's admin kubeconfig)."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    found = ClusterRead(api_client.configuration.host)
    core = client.CoreV1Api(api_client)
    try:
        for kind, call in (("nodes", core.list_node), ("pods", core.list_pod_for_all_namespaces),
                           ("services", core.list_service_for_all_namespaces)):
            listed = api_client.sanitize_for_serialization(call(_request_timeout=REQUEST_TIMEOUT))
            setattr(found, kind, listed.get("items") or [])
    except Exception as exc:  # refused, timed out, 5xx: status shows the kernel's side and says why
        found.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    finally:
        api_client.close()
    return found
