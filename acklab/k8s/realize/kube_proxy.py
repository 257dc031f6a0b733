"""Upstream kube-proxy (the binary built with the control plane) as a daemon in a node's network namespace.

Not to be confused with ``kube_proxy_rules`` (acklab's own compiler of kube-proxy's iptables rules, a test
oracle, in ``model/``, and its applier in ``realize/``): this module runs the real one, which
watches the lab's API server and writes the rules itself.

Files, under ``/run/acklab/<lab>/k8s/kube-proxy/<node>/`` (removed with the lab): ``config.yaml`` (the
KubeProxyConfiguration rendered by :mod:`acklab.k8s.model.kube_proxy`), ``kubeconfig`` (mode 600, the client
``system:kube-proxy``, bound to ``system:node-proxier`` by the bootstrap RBAC), ``kube-proxy.pid``,
``kube-proxy.log``.

A kube-proxy counts as running when the pidfile's PID lives in the node's network namespace (same inode), is no
zombie, and its command line is exactly the one planned (binary + ``--config=<this node's file>``): a stale
pidfile never matches a process that reused the PID. ``ensure`` is idempotent: it starts kube-proxy when it is
not running, restarts it when its configuration or kubeconfig changed (kube-proxy reads them once), leaves it
alone otherwise, and waits for ``/healthz`` to answer 200 (upstream answers so after its first sync of rules).
Removing the node's namespace ends it with every other process inside; :func:`end_leftovers` (``acklab clean``)
ends those whose namespace vanished behind the lab's back.

:func:`install` is the one entry point for callers that know a lab, a node and its address (an Ansible module,
the ``cs.NodePool`` provider): it takes the client credentials from the lab's control plane.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from acklab.k8s.model import kube_proxy
from acklab.k8s.model.kube_proxy import ProxySettings
from acklab.k8s.realize.pod_agent import k8s_dir
from netns.kernel import process
from netns.kernel.files import read_text, tail, write_atomic
from netns.kernel.namespace import Namespace, end_processes
from netns.model.errors import LabError, NotFoundError
from netns.realize import file_lock
from netns.realize.control_plane import binary, control_planes, http_status

BINARY = "kube-proxy"
USER = "system:kube-proxy"  # the bootstrap ClusterRoleBinding system:node-proxier names this user
DEFAULT_TIMEOUT = 60.0
POLL = 0.1
# kube-proxy runs iptables(-save/-restore), ip6tables and nft from PATH
TOOLS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def proxies_dir(lab: str) -> Path:
    return k8s_dir(lab) / "kube-proxy"


@dataclass(frozen=True)
class ProxyState:
    node: str
    netns: str
    pid: int
    mode: str
    config: str  # the configuration file's path
    started: float | None  # seconds from start to healthy in this call; None: it was running already


@dataclass(frozen=True)
class KubeProxyDaemon:
    """Upstream kube-proxy on one node: ``node`` is the Node's name, ``netns`` the node's namespace."""

    lab: str
    node: str
    netns: str

    @property
    def folder(self) -> Path:
        return proxies_dir(self.lab) / self.node

    @property
    def namespace(self) -> Namespace:
        return Namespace(self.netns)

    @property
    def config_path(self) -> Path:
        return self.folder / "config.yaml"

    @property
    def kubeconfig_path(self) -> Path:
        return self.folder / "kubeconfig"

    @property
    def pidfile(self) -> Path:
        return self.folder / f"{BINARY}.pid"

    @property
    def log(self) -> Path:
        return self.folder / f"{BINARY}.log"

    def argv(self) -> list[str]:
        return kube_proxy.argv(binary(BINARY), str(self.config_path))

    # -- ensure / read / stop --

    def ensure(self, settings: ProxySettings, kubeconfig: str, timeout: float = DEFAULT_TIMEOUT) -> ProxyState:
        """Run kube-proxy with ``settings`` and the client kubeconfig text ``kubeconfig``; wait until healthy.

        Raises NotFoundError without the node's namespace, LabError (with the end of the log) when kube-proxy
        exits or is not healthy within ``timeout`` seconds.
        """
        config = kube_proxy.render_yaml(settings, str(self.kubeconfig_path))  # validates first
        argv = self.argv()
        if not self.namespace.exists():
            raise NotFoundError(f"kube-proxy of node {self.node}: namespace {self.netns} does not exist")
        deadline = time.monotonic() + timeout
        with file_lock(self.folder / "lock"):
            os.chmod(self.folder, 0o700)  # the kubeconfig carries a key
            pid = self.pid()
            changed = read_text(self.config_path) != config or read_text(self.kubeconfig_path) != kubeconfig
            if pid is not None and changed:
                end_processes([pid])  # kube-proxy reads its files once; it exits by itself if they change
                pid = None
            if changed:
                write_atomic(self.kubeconfig_path, kubeconfig, 0o600)
                write_atomic(self.config_path, config, 0o644)
            begin = time.monotonic()
            spawned = pid is None
            if pid is None:
                pid = self._spawn(argv)
            self._wait_healthy(deadline)
            started = round(time.monotonic() - begin, 2) if spawned else None
        return ProxyState(self.node, self.netns, pid, settings.mode, str(self.config_path), started)

    def read(self) -> ProxyState | None:
        """The running kube-proxy, from /proc and the state folder; None when it does not run."""
        pid = self.pid()
        if pid is None:
            return None
        mode = "iptables"
        for line in read_text(self.config_path).splitlines():
            if line.startswith("mode:"):
                mode = line.split(":", 1)[1].strip()
        return ProxyState(self.node, self.netns, pid, mode, str(self.config_path), None)

    def stop(self, flush_rules: bool = False, grace: float = 5.0) -> None:
        """End kube-proxy (SIGTERM, SIGKILL after ``grace``) and, with ``flush_rules``, remove its rules with
        upstream's ``kube-proxy --cleanup`` (iptables and nftables alike) inside the node's namespace."""
        pid = self.pid()
        if pid is not None:
            end_processes([pid], grace)
        if flush_rules and self.namespace.exists():
            self.namespace.run([binary(BINARY), "--cleanup", f"--config={self.config_path}"], check=False,
                               timeout=60)
        for path in (self.pidfile, self.config_path, self.kubeconfig_path):
            path.unlink(missing_ok=True)

    def pid(self) -> int | None:
        """kube-proxy's PID if it runs in the node's namespace with the planned command line."""
        return process.tracked_pid(self.pidfile, self.namespace.inode(), lambda argv: argv == self.argv())

    # -- internals --

    def _spawn(self, argv: list[str]) -> int:
        """Start kube-proxy detached inside the node's namespace (its PID in the pidfile)."""
        return process.spawn_in(self.netns, argv, self.pidfile, self.log, self.folder, {"PATH": TOOLS_PATH})

    def _healthy(self) -> bool:
        port = kube_proxy.HEALTHZ_PORT
        return http_status(lambda: self.namespace.socket(), "127.0.0.1", port, "/healthz", None) == 200

    def _wait_healthy(self, deadline: float) -> None:
        while not self._healthy():
            if self.pid() is None:
                raise LabError(f"kube-proxy of node {self.node} exited; its log ends:\n{tail(self.log)}")
            if time.monotonic() > deadline:
                raise LabError(f"kube-proxy of node {self.node} not healthy in time; its log ends:\n"
                               f"{tail(self.log)}")
            time.sleep(POLL)


def install(lab: str, node: str, netns: str, node_ip: str, mode: str = "iptables",
            cluster_cidr: str | None = None, verbosity: int = 0,
            timeout: float = DEFAULT_TIMEOUT) -> ProxyState:
    """Run upstream kube-proxy on ``node`` (namespace ``netns``, primary address ``node_ip``) against the lab's
    control plane, as the client ``system:kube-proxy``."""
    planes = control_planes(lab)
    if not planes:
        raise NotFoundError(f"lab {lab} has no Kubernetes control plane: kube-proxy has no API server to watch")
    kubeconfig = planes[0].client_kubeconfig(USER)
    # a node prerequisite that kubeadm checks and kubespray sets (not kube-proxy): NodePort and external traffic
    # DNATed to another host is forwarded. Per namespace: the node's own setting.
    Namespace(netns).sysctl("net.ipv4.ip_forward", 1)
    settings = ProxySettings(node, node_ip, mode, cluster_cidr, verbosity)
    return KubeProxyDaemon(lab, node, netns).ensure(settings, kubeconfig, timeout)


def end_leftovers(lab: str) -> list[int]:
    """SIGKILL the lab's kube-proxy processes (found by command line: the binary with ``--config=`` under the
    lab's folder), for ``acklab clean`` after namespaces vanished behind the lab's back."""
    prefix = f"--config={proxies_dir(lab)}/"
    return process.kill_all(process.find(
        lambda argv: os.path.basename(argv[0]) == BINARY and any(arg.startswith(prefix) for arg in argv[1:])))
