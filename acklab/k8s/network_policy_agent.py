"""The NetworkPolicy agent: one process per Kubernetes node, in the node's namespace, driven by the API server (as
Calico Felix, or Terway's policy agent, runs on every ACK node).

It lists and watches NetworkPolicies (``networking.k8s.io/v1``), Calico's NetworkPolicies and
GlobalNetworkPolicies (``projectcalico.org/v3`` custom resources, whose definitions :func:`install` applies so
that ``kubectl apply`` of Calico YAML works), Namespaces and Pods — each from its list's resourceVersion, a new
list after 410 Gone — and keeps them in a ``network_policy_api.ClusterView``. Every change that matters puts the
one key of the node on a work queue; the worker compiles the node's chains and ipsets
(``network_policy.compile_node``) and applies them with ``network_policy.apply_node`` only when they differ from
what it applied last (the kernel side is atomic and incremental: only chains and sets that differ are written,
flows now forbidden are cut). A periodic resync applies anyway, which repairs drift (kube-proxy, restarted,
prepends its jumps before ours in FORWARD).

Nothing is applied before every list has arrived: a partial view (pods but no policies yet) would lift rules. A
restarted agent (after ``kill -9``) finds the kernel still enforcing what it applied before, compiles the same
rules from a full view and changes nothing, or only what changed meanwhile: no window opens. A policy the
compiler refuses (a Calico field acklab does not support) is left out, reported in the log and in a Warning Event
``PolicyRejected`` on the object, and the others are enforced.

Installer (tests, ``ack_cluster._install``): :func:`install`, :class:`NetworkPolicyAgent` (``ensure``, ``stop``,
``pid``), :func:`end_leftovers`. Files under ``/run/acklab/<lab>/k8s/network-policy-agent/<node>/``:
``kubeconfig`` (mode 600, the client ``acklab:network-policy-agent``), ``agent.pid``, ``agent.log``, ``ready``.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from acklab.k8s import informer
from acklab.k8s.informer import WorkQueue
from acklab.k8s.model.network_policy import Ruleset, compile_node
from acklab.k8s.model.network_policy_api import CALICO_GLOBAL, CALICO_POLICY, K8S_POLICY, ClusterView, PolicyKind
from acklab.k8s.realize import network_policy
from acklab.k8s.realize.pod_agent import k8s_dir
from netns.kernel import process
from netns.kernel.files import read_text, tail, write_atomic
from netns.kernel.namespace import Namespace, end_processes
from netns.model.errors import LabError, NotFoundError
from netns.realize import file_lock

USER = "acklab:network-policy-agent"
COMPONENT = "acklab-network-policy-agent"
MODULE = "acklab.k8s.network_policy_agent"
RESYNC = 10.0  # seconds between applies that run even when nothing changed (drift repair)
SYNC, RESYNC_KEY = "sync", "resync"
REPO = Path(__file__).resolve().parents[2]
TOOLS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # iptables-restore, ipset, conntrack, nsenter

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: "{plural}.projectcalico.org"}}
spec:
  group: projectcalico.org
  scope: {scope}
  names: {{kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {singular}, shortNames: [{short}]}}
  versions:
  - name: v3
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""
# Calico's own API server serves these; acklab stores them as custom resources of the same group and version
CRDS = "---".join([
    CRD.format(plural="networkpolicies", scope="Namespaced", kind="NetworkPolicy", singular="networkpolicy",
               short="cnp"),
    CRD.format(plural="globalnetworkpolicies", scope="Cluster", kind="GlobalNetworkPolicy",
               singular="globalnetworkpolicy", short="gnp")])

RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "{USER}"}}
rules:
  - {{apiGroups: [""], resources: [pods, namespaces], verbs: [get, list, watch]}}
  - {{apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [get, list, watch]}}
  - {{apiGroups: [projectcalico.org], resources: [networkpolicies, globalnetworkpolicies], verbs: [get, list, watch]}}
  - {{apiGroups: ["", events.k8s.io], resources: [events], verbs: [create, patch, update]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "{USER}"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "{USER}"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{USER}"}}]
"""


def agents_dir(lab: str) -> Path:
    return k8s_dir(lab) / "network-policy-agent"


def _log(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
    print(f"{stamp} {COMPONENT}: {message}", file=sys.stderr, flush=True)


# --- the agent --------------------------------------------------------------------------------------------------

class Agent:
    def __init__(self, lab: str, node: str, netns: str, datapath: str, kubeconfig: str) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(kubeconfig)
        self.lab, self.node, self.netns = lab, node, netns
        self.interface_dispatch = datapath == "terway-eniip"  # Terway's routed veths; bridges: by address
        self.core = client.CoreV1Api(api)
        self.networking = client.NetworkingV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.view = ClusterView()
        self.lock = threading.Lock()  # the view: watch threads write, the worker reads
        self.queue = WorkQueue()
        self.applied: Ruleset | None = None  # what the last apply made the node enforce
        self.told: dict[str, str] = {}  # refused policy key → the reason already told in an Event
        self.stopping = threading.Event()
        self.synced = {name: threading.Event() for name in ("pods", "namespaces", *self._policy_watches())}
        self.failures = 0

    def _policy_watches(self) -> dict[str, tuple[PolicyKind, Callable[..., Any], tuple[Any, ...]]]:
        custom = self.custom.list_cluster_custom_object
        return {"k8s-policies": (K8S_POLICY, self.networking.list_network_policy_for_all_namespaces, ()),
                "calico-policies": (CALICO_POLICY, custom, ("projectcalico.org", "v3", "networkpolicies")),
                "calico-global": (CALICO_GLOBAL, custom, ("projectcalico.org", "v3", "globalnetworkpolicies"))}

    # -- watches --

    def _list_and_watch(self, what: str, call: Callable[..., Any], args: tuple[Any, ...],
                        on_list: Callable[[list[dict[str, Any]]], bool],
                        on_event: Callable[[str, dict[str, Any]], bool]) -> None:
        """The view changes under the agent's lock; only a change that matters for policies queues a sync."""
        def listed(items: list[dict[str, Any]]) -> None:
            with self.lock:
                changed = on_list(items)
            if changed:
                self.queue.add(SYNC)

        def changed(kind: str, raw: dict[str, Any]) -> None:
            with self.lock:
                mattered = on_event(kind, raw)
            if mattered:
                self.queue.add(SYNC)

        informer.list_and_watch(what, call, args, listed, changed, self.stopping, self.synced[what], _log)

    def _pause(self, failures: int, why: str) -> None:
        _log(why)
        self.stopping.wait(informer.backoff(failures))

    # -- apply --

    def sync(self, force: bool) -> None:
        """Compile the node's rules from the view; apply them when they differ from the last apply (or ``force``)."""
        if not all(s.is_set() for s in self.synced.values()):
            return  # a partial view would lift rules: wait for every list
        begin = time.monotonic()
        with self.lock:
            policies, refused = self.view.parsed_policies()
            endpoints = self.view.endpoints()
        ruleset = compile_node(policies, endpoints, self.node, self.interface_dispatch)
        self._tell_refused(refused)
        if ruleset == self.applied and not force:
            return
        changes = network_policy.apply_node(self.lab, self.node, self.netns, policies, endpoints,
                                           self.interface_dispatch)
        self.applied = ruleset
        if changes:
            _log(f"{len(policies)} policies, {len(endpoints)} pods: applied in "
                 f"{time.monotonic() - begin:.3f} s: {'; '.join(changes)}")

    def _tell_refused(self, refused: dict[str, Any]) -> None:
        for key, error in refused.items():
            if self.told.get(key) != str(error):
                self.told[key] = str(error)
                _log(f"policy {key} left out: {error}")
                self._event(key, str(error))
        for key in set(self.told) - set(refused):
            del self.told[key]

    def _event(self, key: str, message: str) -> None:
        """A Warning Event on the refused policy (from this node's agent: every node leaves it out)."""
        with self.lock:
            found = self.view.policies.get(key)
        if found is None:
            return
        kind, obj = found
        meta = obj.get("metadata") or {}
        informer.record(self.core, informer.event(
            {"apiVersion": kind.api_version, "kind": kind.kind, "namespace": meta.get("namespace"),
             "name": meta.get("name"), "uid": meta.get("uid")}, "Warning", "PolicyRejected", message, COMPONENT,
            host=self.node))

    def work(self) -> None:
        while not self.stopping.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                self.sync(force=key == RESYNC_KEY)
                self.failures = 0
            except Exception as exc:  # iptables-restore lost a race, a pod's veth vanished: try again soon
                self.failures += 1
                _log(f"apply failed: {exc!r}")
                self.applied = None
                self.queue.add(SYNC, informer.backoff(self.failures))
            finally:
                self.queue.done(key)

    def _first_sync(self) -> None:
        """The first apply, forced: the kernel may hold rules of an agent before this one (kept if they are still
        right). Retried until it succeeds: the agent is not ready before its node enforces the API's policies."""
        failures = 0
        while not self.stopping.is_set():
            try:
                self.sync(force=True)
                return
            except Exception as exc:
                failures += 1
                self._pause(failures, f"first apply failed: {exc!r}")

    def _resync(self) -> None:
        while not informer.pause(self.stopping, RESYNC):
            self.queue.add(RESYNC_KEY)

    def run(self, ready_file: Path | None = None) -> None:
        watches: list[tuple[str, Callable[..., Any], tuple[Any, ...], Callable[..., bool], Callable[..., bool]]] = [
            ("pods", self.core.list_pod_for_all_namespaces, (), self.view.replace_pods, self.view.pod_event),
            ("namespaces", self.core.list_namespace, (), self.view.replace_namespaces, self.view.namespace_event)]
        for what, (kind, call, args) in self._policy_watches().items():
            watches.append((what, call, args, functools.partial(self.view.replace_policies, kind),
                            functools.partial(self.view.policy_event, kind)))
        for what, call, args, on_list, on_event in watches:
            threading.Thread(target=self._list_and_watch, args=(what, call, args, on_list, on_event), daemon=True,
                             name=f"watch {what}").start()
        informer.wait_synced(self.synced.values(), self.stopping)
        self._first_sync()
        if ready_file is not None:
            write_atomic(ready_file, f"{os.getpid()}\n")
        _log(f"node {self.node}: watching; {len(self.view.policies)} policies, {len(self.view.pods)} pods")
        threading.Thread(target=self._resync, daemon=True, name="resync").start()
        self.work()


# --- the process: one per node, in the node's namespace -----------------------------------------------------------

@dataclass(frozen=True)
class NetworkPolicyAgent:
    lab: str
    node: str  # the Node's name
    netns: str  # the node's network namespace
    datapath: str = "terway-eniip"

    @property
    def folder(self) -> Path:
        return agents_dir(self.lab) / self.node

    @property
    def kubeconfig_path(self) -> Path:
        return self.folder / "kubeconfig"

    @property
    def pidfile(self) -> Path:
        return self.folder / "agent.pid"

    @property
    def ready_file(self) -> Path:
        return self.folder / "ready"

    @property
    def log(self) -> Path:
        return self.folder / "agent.log"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", MODULE, "--lab", self.lab, "--node", self.node, "--netns", self.netns,
                "--datapath", self.datapath, "--kubeconfig", str(self.kubeconfig_path)]

    def pid(self) -> int | None:
        """The agent's PID: the pidfile's process, in the node's namespace, with exactly our command line."""
        return process.tracked_pid(self.pidfile, Namespace(self.netns).inode(), lambda argv: argv == self.argv())

    def running(self) -> int | None:
        """This node's agent, whatever datapath it was started for (one to replace, or to stop)."""
        def node_part(argv: list[str]) -> list[str]:
            return [a for i, a in enumerate(argv) if a != "--datapath" and (i == 0 or argv[i - 1] != "--datapath")]

        wanted = node_part(self.argv())
        return process.tracked_pid(self.pidfile, Namespace(self.netns).inode(), lambda argv: node_part(argv) == wanted)

    def ensure(self, kubeconfig: str, timeout: float = 60.0) -> int:
        """Run the agent with the client kubeconfig text ``kubeconfig`` (restarted when it changed); wait until
        it has listed everything and applied its first rules. Returns its PID."""
        if not Namespace(self.netns).exists():
            raise NotFoundError(f"NetworkPolicy agent of node {self.node}: namespace {self.netns} does not exist")
        with file_lock(self.folder / "lock"):
            os.chmod(self.folder, 0o700)  # the kubeconfig carries a key
            pid, other = self.pid(), self.running()
            if pid is None and other is not None:  # started for another datapath
                end_processes([other])
            if read_text(self.kubeconfig_path) != kubeconfig:
                if pid is not None:
                    end_processes([pid])
                    pid = None
                write_atomic(self.kubeconfig_path, kubeconfig, 0o600)
            if pid is None:
                self.ready_file.unlink(missing_ok=True)
                path = f"{Path(sys.executable).parent}:{TOOLS_PATH}"
                pid = process.spawn_in(self.netns, self.argv(), self.pidfile, self.log, REPO,
                                       {**os.environ, "PATH": path})
        failed = process.wait_ready(self.ready_file, pid, self.pid, timeout)
        if failed == "exited":
            raise LabError(f"the NetworkPolicy agent of node {self.node} exited; its log ends:\n{tail(self.log)}")
        if failed == "timeout":
            raise LabError(f"the NetworkPolicy agent of node {self.node} did not sync in {timeout:.0f}s; its "
                           f"log ends:\n{tail(self.log)}")
        return pid

    def stop(self) -> None:
        """End the agent; the node keeps enforcing what it applied last (as when Felix stops)."""
        pid = self.running()
        if pid is not None:
            end_processes([pid])
        self.pidfile.unlink(missing_ok=True)
        self.ready_file.unlink(missing_ok=True)


def install_definitions(lab: str, kubeconfig: Path | None = None) -> None:
    """Calico's policy resources (as CRDs) and the agents' ClusterRole, applied once per lab by the admin (through
    the lab's kubeconfig on the host, or ``kubeconfig``: an admin's reaching the API server in the VPC); waits
    until the CRDs are served."""
    from netns.realize.control_plane import binary, kubeconfig_path, kubectl_apply

    kubeconfig = kubeconfig or kubeconfig_path(lab)
    kubectl = [binary("kubectl"), "--kubeconfig", str(kubeconfig)]
    # nodes are installed in parallel: one kubectl apply at a time (two creates of one object race)
    with file_lock(agents_dir(lab) / "definitions.lock"):
        kubectl_apply(lab, CRDS + "---\n" + RBAC, "the NetworkPolicy agent's definitions", kubeconfig)
        crds = ["crd/networkpolicies.projectcalico.org", "crd/globalnetworkpolicies.projectcalico.org"]
        result = subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s", *crds],
                                capture_output=True, text=True, timeout=90)
        if result.returncode != 0:
            raise LabError(f"lab {lab}: Calico's CRDs not established: {result.stderr.strip()}")


def install(lab: str, node: str, netns: str, datapath: str = "terway-eniip", timeout: float = 60.0,
            admin_kubeconfig: Path | None = None) -> int:
    """The entry point for ``cs.NodePool`` (``ack_cluster._install``), tests and an Ansible role: ``node``'s agent
    runs against the lab's control plane. ``admin_kubeconfig``: the definitions' (default the host's). Returns its
    PID."""
    from netns.realize.control_plane import control_planes

    planes = control_planes(lab)
    if not planes:
        raise NotFoundError(f"lab {lab} has no Kubernetes control plane for the NetworkPolicy agent to watch")
    install_definitions(lab, admin_kubeconfig)
    return NetworkPolicyAgent(lab, node, netns, datapath).ensure(planes[0].client_kubeconfig(USER), timeout)


def end_leftovers(lab: str) -> list[int]:
    """SIGKILL the lab's agents (by command line), for ``acklab clean`` when a node's namespace vanished behind
    the lab's back (otherwise the agents end with their namespaces)."""
    return process.kill_all(process.find(
        lambda argv: argv[1:3] == ["-m", MODULE] and argv[3:5] == ["--lab", lab]))


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=MODULE, description=__doc__.splitlines()[0])
    for name in ("--lab", "--node", "--netns", "--kubeconfig"):
        parser.add_argument(name, required=True)
    parser.add_argument("--datapath", default="terway-eniip")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    agent = Agent(args.lab, args.node, args.netns, args.datapath, args.kubeconfig)
    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    agent.run(NetworkPolicyAgent(args.lab, args.node, args.netns, args.datapath).ready_file)


if __name__ == "__main__":
    main()
