"""Upstream kube-proxy's configuration for one node, as a pure function: settings → KubeProxyConfiguration.

The file (``apiVersion: kubeproxy.config.k8s.io/v1alpha1``) is what ``kube-proxy --config`` reads. What acklab
sets beyond upstream's defaults, and why:

- ``mode``: ``iptables`` (ACK's default) or ``nftables``. IPVS is refused: this kernel has no IPVS.
- ``conntrack``: ``maxPerCore: 0`` and ``min: 0`` (kube-proxy then leaves ``nf_conntrack_max`` alone: outside the
  initial namespace it is read-only, and raising it would also grow the module's ``hashsize`` parameter, both
  host-wide); ``tcpEstablishedTimeout: 0s`` and ``tcpCloseWaitTimeout: 0s`` (no sysctl written at all), as kind
  sets them for nodes that share a kernel.
- ``hostnameOverride``: the Node's name; ``bindAddress``: the node's primary address (also its node IP).
- health on ``0.0.0.0:10256`` and metrics on ``127.0.0.1:10249``: addresses of the node's own namespace.
- ``oomScoreAdj: 0``: upstream lowers its own OOM score to -999; on a shared machine a lab's process keeps the
  ordinary score.

No kernel, no root: this module only builds data and text.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import yaml

from netns.model.errors import ValidationError

API_VERSION = "kubeproxy.config.k8s.io/v1alpha1"
MODES = ("iptables", "nftables")
HEALTHZ_PORT = 10256
METRICS_PORT = 10249
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class ProxySettings:
    """What differs from node to node and lab to lab."""

    node_name: str  # the Node object's name (``hostnameOverride``)
    node_ip: str  # the node's primary address
    mode: str = "iptables"
    cluster_cidr: str | None = None  # ``clusterCIDR``: pods' addresses (local-traffic detection); None: none
    verbosity: int = 0  # ``logging.verbosity`` (2 logs every sync with its duration)


def check(settings: ProxySettings) -> None:
    """One clear error per wrong field, before anything starts."""
    where = f"kube-proxy of node {settings.node_name!r}"
    if settings.mode not in MODES:
        why = " (this kernel has no IPVS)" if settings.mode == "ipvs" else ""
        raise ValidationError(where, "mode", f"{settings.mode!r} must be one of {', '.join(MODES)}{why}")
    if len(settings.node_name) > 253 or not _NODE_NAME.match(settings.node_name):
        raise ValidationError(where, "node_name", "must be a DNS subdomain (lower-case letters, digits, '-', '.')")
    try:
        ipaddress.IPv4Address(settings.node_ip)
    except ValueError:
        raise ValidationError(where, "node_ip", f"{settings.node_ip!r} is not an IPv4 address") from None
    if settings.cluster_cidr is not None:
        try:
            ipaddress.IPv4Network(settings.cluster_cidr)
        except ValueError:
            raise ValidationError(where, "cluster_cidr", f"{settings.cluster_cidr!r} is not an IPv4 CIDR") from None
    if not 0 <= settings.verbosity <= 10:
        raise ValidationError(where, "verbosity", "must be 0-10")


def render_config(settings: ProxySettings, kubeconfig: str) -> dict[str, Any]:
    """The KubeProxyConfiguration for ``settings``; ``kubeconfig`` is the path of the client's kubeconfig."""
    check(settings)
    return {
        "apiVersion": API_VERSION,
        "kind": "KubeProxyConfiguration",
        "mode": settings.mode,
        "hostnameOverride": settings.node_name,
        "bindAddress": settings.node_ip,
        "clusterCIDR": settings.cluster_cidr or "",
        "clientConnection": {"kubeconfig": kubeconfig},
        "healthzBindAddress": f"0.0.0.0:{HEALTHZ_PORT}",
        "metricsBindAddress": f"127.0.0.1:{METRICS_PORT}",
        "conntrack": {
            "maxPerCore": 0,  # nf_conntrack_max and the hashsize module parameter are host-wide: leave them
            "min": 0,
            "tcpEstablishedTimeout": "0s",  # 0: kube-proxy writes no conntrack timeout sysctl
            "tcpCloseWaitTimeout": "0s",
        },
        "oomScoreAdj": 0,
        "logging": {"verbosity": settings.verbosity},
    }


def render_yaml(settings: ProxySettings, kubeconfig: str) -> str:
    return yaml.safe_dump(render_config(settings, kubeconfig), sort_keys=False)


def argv(binary: str, config_path: str) -> list[str]:
    """kube-proxy's command line: everything else is in the file."""
    return [binary, f"--config={config_path}"]
