"""Shared by the cluster-installing modules: the acklab import check and the error boundary, so each module is
its argument spec and one call into ``acklab.k8s.cluster_install``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

LAB_ARGS: dict[str, dict[str, Any]] = {
    "lab": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
}


POD_NETWORK_ARGS: dict[str, dict[str, Any]] = {  # doc fragment acklab.lab.pod_network
    "datapath": {"type": "str", "choices": ["terway-eniip", "terway-eni", "vpc-route", "vxlan"],
                 "default": "terway-eniip"},
    "pod_cidr": {"type": "str"},
    "node_cidr_mask": {"type": "int", "default": 24},
}
FLANNEL_REQUIRES = [("datapath", "vpc-route", ("pod_cidr",)), ("datapath", "vxlan", ("pod_cidr",))]


def pod_network(install: Any, params: dict[str, Any]) -> Any:
    """The installer's ``PodNetworkSpec`` from the module's pod network options."""
    return install.PodNetworkSpec(params["datapath"], params["pod_cidr"], params["node_cidr_mask"])


def installer(module: Any) -> Any:
    """``acklab.k8s.cluster_install``, or the task fails saying which interpreter to use."""
    try:
        from acklab.k8s import cluster_install
    except ImportError as exc:
        module.fail_json(msg=f"acklab is not importable by this interpreter: {exc} "
                             "(set ansible_python_interpreter to the project's .venv/bin/python)")
        raise  # fail_json exits; this only satisfies type checkers
    return cluster_install


def run(module: Any, call: Callable[[], dict[str, Any]]) -> None:
    """Run ``call`` and exit with its result; the lab's own errors fail the task with their message."""
    from netns.model.errors import LabError

    try:
        result = call()
    except (LabError, ValueError, OSError, subprocess.SubprocessError) as exc:
        module.fail_json(msg=str(exc))
        return
    changes = list(result.pop("changes", []))
    module.exit_json(changed=bool(changes), changes=changes, **result)
