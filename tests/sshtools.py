"""Hosts for connectivity tests over either backend, so one matrix runs on this machine's namespaces or over
SSH (as it would against separate hosts).

``ACKLAB_TESTINFRA_BACKEND=ssh`` selects testinfra's ssh backend with the lab's own ssh_config (keys and
pinned host keys from ``python -m acklab.sshmode up``); it must run inside the lab's controller namespace:
``python -m acklab.sshmode exec --lab L -- pytest ...``. The default, ``netns``, is testinfra's local backend
with every command entered into the node's namespace.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass

import testinfra

from acklab.sshmode import ssh_dir

BACKENDS = ("netns", "ssh")


def backend() -> str:
    chosen = os.environ.get("ACKLAB_TESTINFRA_BACKEND", "netns")
    if chosen not in BACKENDS:
        raise ValueError(f"ACKLAB_TESTINFRA_BACKEND={chosen!r}: must be one of {', '.join(BACKENDS)}")
    return chosen


@dataclass(frozen=True)
class NodeShell:
    """Commands on a Kubernetes node (its namespace), or in a pod's namespace on that node."""

    lab: str
    name: str
    netns: str
    kind: str = "netns"

    @property
    def host(self) -> testinfra.host.Host:
        if self.kind == "ssh":
            return testinfra.get_host(f"ssh://root@{self.name}", ssh_config=str(ssh_dir(self.lab) / "ssh_config"))
        return testinfra.get_host("local://")

    def command(self, cmd: str, netns: str | None = None) -> str:
        """The shell command that runs ``cmd`` in ``netns`` (a pod on this node) or in the node itself."""
        inner = f"nsenter --net=/run/netns/{netns} -- sh -c {shlex.quote(cmd)}" if netns else cmd
        if self.kind == "netns":  # the local backend starts in the host's namespace: enter the node's first
            return f"nsenter --net=/run/netns/{self.netns} -- sh -c {shlex.quote(inner)}"
        return inner  # over ssh the session already runs in the node's namespace (its sshd is there)

    def run(self, cmd: str, netns: str | None = None):
        return self.host.run(self.command(cmd, netns))

    def http_get(self, address: str, port: int, path: str, netns: str | None = None,
                 deadline: float = 10.0) -> str | None:
        """An HTTP GET's body from the node or a pod on it; None when it keeps failing until ``deadline``."""
        cmd = f"curl -sf --max-time 2 http://{address}:{port}{path}"
        end = time.monotonic() + deadline
        while True:
            result = self.run(cmd, netns)
            if result.rc == 0:
                return result.stdout
            if time.monotonic() > end:
                return None
            time.sleep(0.2)


def node_shell(lab: str, name: str, netns: str) -> NodeShell:
    return NodeShell(lab, name, netns, backend())
