"""The logs a lab writes, found under its state folder ``/run/acklab/<lab>/``.

Known kinds: HAProxy of each SLB (``slb/<lb id>/*.log``), user data of each ECS (``<instance>.user-data.log``),
the pod agent of each node (``k8s/<node>.agent.log``); with a control plane, its components
(``cp/<cluster>/<component>.log``: etcd, kube-apiserver, ...; ``cp/<cluster>/coredns/``; owner: the component),
and per node the node agent (``k8s/<node>.node-agent.log``), kube-proxy (``k8s/kube-proxy/<node>/``) and the
NetworkPolicy agent (``k8s/network-policy-agent/<node>/``), the cloud controller (``k8s/ccm/``). Any other ``*.log``
(nginx of an Ingress, ...) is listed under the folder it is in, so logs that later parts of a lab write show up
without a change here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from netns.realize import state_dir


@dataclass(frozen=True)
class LogFile:
    path: Path
    kind: str  # one of KINDS
    owner: str  # the object it belongs to: an SLB id, an instance id, a node name, a folder

    def describe(self) -> str:
        return f"{self.kind} {self.owner}"


KINDS = ("haproxy", "user-data", "pod-agent", "node-agent", "control-plane", "kube-proxy", "policy-agent",
         "cloud-controller", "nginx", "other")
# k8s/<folder>/<node>/*.log: per-node daemons of an API-driven cluster
NODE_DAEMONS = {"kube-proxy": "kube-proxy", "network-policy-agent": "policy-agent"}


def classify(root: Path, path: Path) -> LogFile:
    parts = path.relative_to(root).parts
    name = path.name
    if parts[0] == "slb" and len(parts) >= 3:
        return LogFile(path, "haproxy" if "haproxy" in name else "other", parts[1])
    if name.endswith(".user-data.log"):
        return LogFile(path, "user-data", name.removesuffix(".user-data.log"))
    if parts[0] == "cp" and len(parts) == 3:
        return LogFile(path, "control-plane", name.removesuffix(".log"))
    if parts[0] == "cp" and len(parts) == 4:  # a cluster add-on with a folder of its own: CoreDNS
        return LogFile(path, "control-plane", parts[2])
    if parts[0] == "k8s" and name.endswith(".node-agent.log"):
        return LogFile(path, "node-agent", name.removesuffix(".node-agent.log"))
    if parts[0] == "k8s" and name.endswith(".agent.log"):
        return LogFile(path, "pod-agent", name.removesuffix(".agent.log"))
    if parts[0] == "k8s" and len(parts) == 4 and parts[1] in NODE_DAEMONS:
        return LogFile(path, NODE_DAEMONS[parts[1]], parts[2])
    if parts[:2] == ("k8s", "ccm"):
        return LogFile(path, "cloud-controller", "ccm")
    owner = "/".join(parts[:-1]) or "."
    return LogFile(path, "nginx" if "nginx" in "/".join(parts) else "other", owner)


def find_logs(lab: str) -> list[LogFile]:
    root = state_dir(lab)
    if not root.is_dir():
        return []
    return sorted((classify(root, p) for p in root.rglob("*.log") if p.is_file()), key=lambda f: str(f.path))


def select(logs: list[LogFile], keys: set[str], kind: str | None) -> list[LogFile]:
    """Logs owned by any of ``keys`` (ids or names; a folder name on the path counts), all when empty; of ``kind``
    (any when None)."""
    return [log for log in logs if (not keys or log.owner in keys or any(k in log.path.parts for k in keys))
            and (kind is None or log.kind == kind)]


def tail(path: Path, lines: int) -> list[str]:
    with open(path, errors="replace") as f:
        return list(deque(f, maxlen=lines)) if lines > 0 else f.readlines()
