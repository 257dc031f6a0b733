"""The node agent: the kubelet's share of the network, one process per Kubernetes node, in the node's namespace.

It registers the Node (ACK's labels and providerID) and renews its Lease, builds the node's pod network (Terway:
its live ENI pool; Flannel, ``acklab.k8s.model.flannel``: a bridge on the Node's ``spec.podCIDR``, VXLAN peers from the
other Nodes), watches the pods bound to the node
(list + watch from the resourceVersion, a new list after 410 Gone), builds their namespaces with the node's
datapath (``acklab.k8s.realize.pod_network``), has the pod agent serve their containerPorts, runs their readiness and
liveness probes, reports their status, and removes a deleted pod after its graceful termination (then deletes the
object, as the kubelet does). The pure part is ``acklab.k8s.model.kubelet``.

Installer (one implementation for tests, the Ansible role and ``cs.NodePool``): ``ensure_node_agent``,
``stop_node_agent``, ``node_agent_pid``. Files under ``/run/acklab/<lab>/k8s/``: ``<node>.node-agent.json``
(configuration), ``.kubeconfig`` (mode 600; with Flannel also ``.flannel-kubeconfig``, Flannel's own identity,
which reads every Node: a node's identity reads only its own), ``.pid``, ``.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from acklab.k8s import informer
from acklab.k8s.model import flannel, ipam, kubelet
from acklab.k8s.model.ipam import (
    EniAddressPool,
    HostLocalPool,
    NoFreeAddress,
    PodAddressPool,
    TerwayConfig,
    TerwayEniPool,
    TerwayExclusivePool,
)
from acklab.k8s.model.objects import Pod, Probe
from acklab.k8s.model.pod_network import CIDR_DATAPATHS, EXCLUSIVE_ENI, Network, Node, Placement, node_from_dict
from acklab.k8s.realize.pod_agent import k8s_dir
from netns.kernel import netns_etc, process
from netns.kernel.files import read_text, write_atomic
from netns.kernel.namespace import NETNS_DIR, end_processes
from netns.model.errors import LabError, ValidationError
from netns.model.instance_types import eni_quota
from netns.model.names import pod_netns_name

log = logging.getLogger("acklab.node-agent")
TERWAY_GATEWAY = "169.254.1.1"
STRATEGIC = "application/strategic-merge-patch+json"
RESOLV_CONF = "resolv.conf"
FLANNEL_IDENTITY = "flannel-kubeconfig"


# --- configuration and installer -------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeAgentConfig:
    lab: str
    identity: kubelet.NodeIdentity
    node: Node  # its namespace, address and pod addressing (Terway: the pod ENI and its secondary IPs)
    datapath: str = "terway-eniip"  # or Flannel's vpc-route, vxlan: the block is the Node's spec.podCIDR
    cluster_cidr: str | None = None  # Flannel: the cluster's pod CIDR (what VXLAN's masquerade leaves alone)
    terway: TerwayConfig | None = None  # live ENI IP management; None: the pod ENI's pre-made secondary IPs
    # the kubelet's --cluster-dns and --cluster-domain; no server: pods get the node's resolv.conf (as a kubelet
    # without --cluster-dns does)
    dns: kubelet.ClusterDns = field(default_factory=kubelet.ClusterDns)

    def to_dict(self) -> dict[str, Any]:
        node = self.node
        data = {"lab": self.lab, "datapath": self.datapath, "identity": self.identity.to_dict(),
                "node": {"name": node.name, "netns": node.netns, "ip": node.ip, "pod_cidr": node.pod_cidr,
                         "eni_ifname": node.eni_ifname, "eni_gateway": node.eni_gateway,
                         "eni_ips": list(node.eni_ips)}}
        if self.cluster_cidr is not None:  # only Flannel's (an agent's file from before keeps its text)
            data["cluster_cidr"] = self.cluster_cidr
        if self.terway is not None:
            data["terway"] = self.terway.to_dict()
        if self.dns.servers:
            data["dns"] = {"servers": list(self.dns.servers), "domain": self.dns.domain}
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> NodeAgentConfig:
        terway = TerwayConfig.from_dict(data["terway"]) if data.get("terway") else None
        dns = data.get("dns") or {}
        return NodeAgentConfig(data["lab"], kubelet.NodeIdentity(**data["identity"]), node_from_dict(data["node"]),
                               data.get("datapath", "terway-eniip"), data.get("cluster_cidr"), terway,
                               kubelet.ClusterDns(tuple(dns.get("servers") or ()),
                                                  dns.get("domain", kubelet.CLUSTER_DOMAIN)))


def _path(lab: str, node: str, suffix: str) -> Path:
    return k8s_dir(lab) / f"{node}.node-agent.{suffix}"


def node_agent_pid(lab: str, node: str) -> int | None:
    """The running agent's PID: the pidfile's process, if its command line is this node's agent."""
    pid = process.read_pidfile(_path(lab, node, "pid"))
    argv = process.cmdline(pid) if pid is not None else None
    if pid is None or not argv or not process.alive(pid):
        return None
    return pid if "acklab.k8s.node_agent" in argv and str(_path(lab, node, "json")) in argv else None


def ensure_node_agent(config: NodeAgentConfig, kubeconfig: str, flannel_kubeconfig: str | None = None) -> int:
    """Make the node's agent run with this configuration and client kubeconfig (with Flannel, also Flannel's);
    returns its PID. Idempotent: a running agent with the same files is left alone, one with other files is
    restarted."""
    lab, name = config.lab, config.node.name
    files = {_path(lab, name, "json"): json.dumps(config.to_dict(), sort_keys=True),
             _path(lab, name, "kubeconfig"): kubeconfig}
    if flannel_kubeconfig is not None:
        files[_path(lab, name, "flannel-kubeconfig")] = flannel_kubeconfig
    changed = any(read_text(path) != text for path, text in files.items())
    pid = node_agent_pid(lab, name)
    if pid is not None and not changed:
        return pid
    if pid is not None:
        stop_node_agent(lab, name, keep_files=True)
    for path, text in files.items():
        write_atomic(path, text, 0o600)
    return _start(config)


def _start(config: NodeAgentConfig) -> int:
    """The agent, detached, inside the node's network namespace (it sees /run/netns: the network namespace only)."""
    lab, name = config.lab, config.node.name
    return process.spawn_in(config.node.netns, [sys.executable, "-m", "acklab.k8s.node_agent",
                                                str(_path(lab, name, "json"))],
                            _path(lab, name, "pid"), _path(lab, name, "log"), cwd="/")


def stop_node_agent(lab: str, node: str, timeout: float = 5.0, keep_files: bool = False) -> None:
    """End the node's agent (SIGTERM, then SIGKILL); its pods keep running, as when a kubelet stops."""
    pid = node_agent_pid(lab, node)
    if pid is not None:
        end_processes([pid], timeout)
    suffixes = ("pid",) if keep_files else ("pid", "json", "kubeconfig", "flannel-kubeconfig")
    for suffix in suffixes:
        _path(lab, node, suffix).unlink(missing_ok=True)


# --- probes (the node's side of a pod's network) ---------------------------------------------------------------

def run_probe(probe: Probe, pod: Pod, ip: str) -> bool:
    """One probe run from the node, as the kubelet makes it: HTTP 200-399, a TCP connect, an exec exit 0."""
    if probe.action == "exec":
        return kubelet.exec_command(probe.command, pod.name) == 0
    if probe.action not in ("httpGet", "tcpSocket") or not probe.port:
        return False
    try:
        with socket.create_connection((ip, probe.port), timeout=probe.timeout) as conn:
            if probe.action == "tcpSocket":
                return True
            conn.sendall(f"GET {probe.path} HTTP/1.1\r\nHost: {ip}:{probe.port}\r\nUser-Agent: kube-probe/1.37\r\n"
                         "Connection: close\r\n\r\n".encode())
            head = conn.recv(64).split(b" ", 2)
            return len(head) >= 2 and head[1].isdigit() and 200 <= int(head[1]) < 400
    except OSError:
        return False


# --- the agent process -----------------------------------------------------------------------------------------

class NodeAgent:
    def __init__(self, config: NodeAgentConfig, kubeconfig: Path) -> None:
        self.config = config
        self.name = config.node.name
        self.kubeconfig = kubeconfig
        self.flannel = config.datapath in CIDR_DATAPATHS
        self.node = config.node  # Flannel: with its podCIDR once the range allocator gave it
        self.peers: tuple[Node, ...] = ()  # VXLAN: the other Nodes with a block
        self.node_objects: dict[str, dict[str, Any]] = {}  # VXLAN: the Nodes, as the watch last delivered them
        self.network_ready = not self.flannel
        self.flannel_core: Any = None  # Flannel's API client (``_flannel_core``)
        self.identity = config.identity
        self.pool: PodAddressPool = EniAddressPool(config.node.eni_ips, released=self._load_released())
        if config.terway is not None:
            self.pool = self._terway_pool(config.terway)
        if not self.flannel:
            self.network = self._node_network()
        self.waiting: dict[str, str] = {}  # pod key → why its sandbox cannot be made (no address left)
        self.told: dict[str, tuple[str, str]] = {}  # pod key → (uid, message) last reported as waiting
        self.eni_tables: set[str] = set()  # pod ENIs whose table and return path are in place
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stop = threading.Event()
        self.objects: dict[str, dict[str, Any]] = {}  # pod key → the latest object the watch delivered
        self.records: dict[str, Any] = {}  # pod key → PodRecord (what the kernel has)
        self.runtimes: dict[str, kubelet.PodRuntime] = {}
        self.reported: dict[str, dict[str, Any]] = {}  # pod key → the status last patched
        self.ending: dict[str, float] = {}  # pod key → when its graceful termination ends
        self.mtu = 1500
        self.node_uid = ""

    def _terway_pool(self, terway: TerwayConfig) -> TerwayEniPool | TerwayExclusivePool:
        """Terway's live pool on the node's instance (shared ENIs' secondary IPs, or exclusive ENIs); the Node's
        allocatable pods become the type's quota."""
        from acklab.k8s.realize.ipam import LiveEniBackend

        quota = eni_quota(self.identity.instance_type)
        if quota is None:
            raise LabError(f"node {self.name}: the ENI quota of instance type {self.identity.instance_type} is "
                           "not known to the lab (netns/model/instance_types.py); Terway will not guess it")
        backend = LiveEniBackend(self.config.lab, self.identity.instance_id, self.name, terway, self.identity.zone)
        if self.config.datapath == EXCLUSIVE_ENI:
            self.identity = replace(self.identity, max_pods=quota.pod_enis)
            return TerwayExclusivePool(backend, quota, terway.min_pool_size, terway.max_pool_size,
                                       released=self._load_released())
        self.identity = replace(self.identity, max_pods=quota.max_pods)
        return TerwayEniPool(backend, quota, terway.min_pool_size, terway.max_pool_size,
                             released=self._load_released())

    def _start_terway(self) -> None:
        """Before the datapath: the warm pool filled, and (shared ENIs) at least one Terway ENI attached, whose
        table the node's base datapath is built on (the configured ``eni_ifname``, eth1)."""
        if isinstance(self.pool, TerwayExclusivePool):
            self.pool.warm()
        if not isinstance(self.pool, TerwayEniPool):
            return
        self.pool.warm()
        if not self.pool.enis:
            try:
                self.pool.enis.append(self.pool.backend.create_eni())
            except NoFreeAddress as exc:  # no pod vSwitch in its zone: the node runs, its pods wait with an Event
                log.warning("node %s: %s", self.name, exc)

    def _node_network(self) -> Any:
        from acklab.k8s.realize.pod_network import (
            NodeNetwork,  # pyroute2 only in the agent process, not in the installer
        )

        service_cidr = self.config.terway.service_cidr if self.config.terway is not None else None
        network = Network(self.config.lab, self.config.datapath, (self.node, *self.peers), self.config.cluster_cidr,
                          service_cidr)
        return NodeNetwork(network, self.node)

    # Flannel ---------------------------------------------------------------------------------------------------
    def _start_flannel(self) -> None:
        """The Node's block and host-local IPAM on it (``_take_block``), and (VXLAN) the peers, listed then
        watched."""

        if not self._take_block():
            return
        if self.config.datapath == "vxlan":
            nodes = json.loads(self._flannel_core().list_node(_preload_content=False).data).get("items") or []
            self.node_objects = {n["metadata"]["name"]: n for n in nodes}
            self.peers = flannel.peers(nodes, self.name)
            threading.Thread(target=self._watch_nodes, name="watch nodes", daemon=True).start()
        self.network = self._node_network()
        log.info("node %s: %s on podCIDR %s, %d peer(s)", self.name, self.config.datapath, self.node.pod_cidr,
                 len(self.peers))

    def _take_block(self) -> bool:
        """Wait for the Node's block (the range allocator sets it right after registration); a new block gets a
        new host-local pool; Flannel's annotations go on the Node. False when the agent stops meanwhile."""
        from kubernetes import client

        core = self._flannel_core()
        told = False
        while True:
            cidr = flannel.pod_cidr_of(json.loads(core.read_node(self.name, _preload_content=False).data))
            if cidr or self.stop.is_set():
                break
            if not told:
                log.info("node %s: waiting for the controller-manager to give it a podCIDR", self.name)
                told = True
            self.stop.wait(0.1)
        if not cidr:
            return False
        if cidr != self.node.pod_cidr:
            self.node = replace(self.node, pod_cidr=cidr)
            self.pool = HostLocalPool.of(cidr, self._load_released())
            self.identity = replace(self.identity, max_pods=flannel.max_pods(cidr))
        # as the node (it may annotate its own Node); Flannel's identity only reads
        client.CoreV1Api(self.api).patch_node(self.name, {"metadata": {"annotations": flannel.annotations(
            self.config.datapath, self.node.ip)}})
        return True

    def _flannel_core(self) -> Any:
        """Flannel's client of the main thread (made once; the Node watch's thread has its own)."""
        if self.flannel_core is None:
            from kubernetes import client

            self.flannel_core = client.CoreV1Api(self._client(FLANNEL_IDENTITY))
        return self.flannel_core

    def _rejoin_flannel(self) -> None:
        """The Node was made again: its (perhaps new) block, the bridge on it, Flannel's annotations. Pods of the
        old Node go with it (the pod garbage collector deletes them); new ones take the new block."""
        previous = self.node.pod_cidr
        if self._take_block() and self.node.pod_cidr != previous:
            self.network = self._node_network()
            self.network.ensure_base()
            log.info("node %s: registered again, podCIDR %s (was %s)", self.name, self.node.pod_cidr, previous)

    def _watch_nodes(self) -> None:
        from kubernetes import client

        def on_list(items: list[dict[str, Any]]) -> None:
            self.events.put(("NODES", {n["metadata"]["name"]: n for n in items}))

        def on_event(kind: str, obj: dict[str, Any]) -> None:
            self.events.put(("NODE", (kind, obj)))

        informer.list_and_watch("nodes", client.CoreV1Api(self._client(FLANNEL_IDENTITY)).list_node, (), on_list,
                                on_event, self.stop, threading.Event(),
                                lambda why: log.warning("node %s: %s", self.name, why))

    def _update_peers(self) -> None:
        """VXLAN: a Node joined, left or got its block: the overlay's routes, neighbours and FDB follow."""
        peers = flannel.peers(self.node_objects.values(), self.name)
        if peers == self.peers:
            return
        old = self.peers
        self.peers = peers
        self.network = self._node_network()
        try:
            self.network.ensure_base()
        except Exception:
            self.peers = old  # so that the next Node event tries again
            raise
        log.info("node %s: VXLAN peers now %s", self.name, ", ".join(p.name for p in peers) or "none")

    def _ensure_eni_tables(self) -> None:
        if isinstance(self.pool, TerwayEniPool):
            for eni in self.pool.enis:
                if eni.ifname not in self.eni_tables:
                    self.network.ensure_eni(eni.ifname, eni.gateway)
                    self.eni_tables.add(eni.ifname)

    def _released_file(self) -> Path:
        return _path(self.config.lab, self.name, "released")

    def _load_released(self) -> dict[str, float]:
        """When each address was given back: the cool-down outlives a restart of the agent."""
        try:
            return {str(a): float(t) for a, t in json.loads(self._released_file().read_text()).items()}
        except (FileNotFoundError, ValueError, AttributeError):
            return {}

    def _client(self, identity: str = "kubeconfig") -> Any:
        """An API client as the node (``system:node:<name>``), or as Flannel (``flannel-kubeconfig``)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig.with_suffix(f".{identity}")))

    def run(self) -> None:
        from acklab.k8s.realize.pod_network import load_records

        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        self.api = self._client()
        if self.flannel:  # the Node first: its block comes from the controller-manager
            self.register()
            self._start_flannel()
            if self.stop.is_set():
                return
        self._start_terway()
        self.network.ensure_base()
        self._ensure_eni_tables()
        self.mtu = self.network.underlay_mtu()
        self.network_ready = True
        self.register()
        links = self.network.link_names()
        for key, record in load_records(self.config.lab).items():  # after a restart: adopt what the kernel has
            if record.node != self.name or not record.pod.uid:  # (pods built from a pod plan are not ours)
                continue
            if self._namespace_present(record) and record.host_ifname in links:
                self.records[key] = record
                self.pool.adopt(key, record.ip)
            else:
                self.network.remove_pods([record])
        threading.Thread(target=self._watch_pods, name="watch", daemon=True).start()
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        log.info("node %s: agent running, %d pod(s) adopted", self.name, len(self.records))
        while not self.stop.is_set():
            try:
                self._drain(self._wait_seconds())
                self.reconcile()
                self.probe()
                self.report()
            except Exception:  # a failed step is retried on the next turn; the agent keeps serving
                log.exception("node %s: reconcile failed", self.name)
                self.stop.wait(1.0)

    @staticmethod
    def _namespace_present(record: Any) -> bool:
        return os.path.exists(os.path.join(NETNS_DIR, record.netns))

    # node and lease ------------------------------------------------------------------------------------------
    def register(self) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self.api)
        identity = self.identity
        try:
            node = core.create_node(kubelet.node_object(identity))
        except ApiException as exc:
            if exc.status != 409:
                raise
            # already registered (a restart): labels and providerID as ACK sets them
            node = core.patch_node(identity.name, kubelet.node_object(identity), _content_type=STRATEGIC)
        self.node_uid = node.metadata.uid
        self.since = time.time()
        self._post_status()

    def _post_status(self) -> None:
        from kubernetes import client

        now = time.time()
        status = kubelet.node_status(self.identity, now, self.since, self.network_ready)
        if self.network_ready and self.config.datapath == "vxlan":
            status["conditions"].append(flannel.network_up(kubelet.rfc3339(now), kubelet.rfc3339(self.since)))
        client.CoreV1Api(self.api).patch_node_status(self.name, {"status": status}, _content_type=STRATEGIC)

    def _renew_lease(self, api: Any) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        coordination = client.CoordinationV1Api(api)
        lease = kubelet.lease_object(self.name, time.time(), self.node_uid)
        try:
            coordination.patch_namespaced_lease(self.name, "kube-node-lease", {"spec": lease["spec"]},
                                                _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status != 404:
                raise
            coordination.create_namespaced_lease("kube-node-lease", lease)

    def _heartbeat(self) -> None:
        from kubernetes.client.rest import ApiException

        api = self._client()
        last_status = time.monotonic()
        while not self.stop.is_set():
            try:
                self._renew_lease(api)
                if time.monotonic() - last_status >= kubelet.STATUS_SECONDS:
                    self._post_status()
                    last_status = time.monotonic()
            except ApiException as exc:
                if exc.status == 404:  # the Node was deleted (kubectl delete node): register again, as kubelet does
                    with contextlib.suppress(Exception):
                        self.register()
                        if self.flannel:  # its block comes anew from the controller-manager: the main loop follows
                            self.events.put(("REGISTERED", None))
                else:
                    log.warning("node %s: heartbeat: %s", self.name, exc)
            except Exception:
                log.exception("node %s: heartbeat failed", self.name)
            informer.pause(self.stop, kubelet.RENEW_SECONDS)

    # pods: the watch -----------------------------------------------------------------------------------------
    def _watch_pods(self) -> None:
        """The pods bound to this node (the kubelet's field selector), listed then watched (``informer``): each
        listing and event goes on the agent's queue, worked by its main loop."""
        from kubernetes import client

        informer.list_and_watch(
            "pods", client.CoreV1Api(self._client()).list_pod_for_all_namespaces, (),
            lambda items: self.events.put(("LIST", items)), lambda kind, obj: self.events.put((kind, obj)),
            self.stop, threading.Event(), lambda why: log.warning("node %s: %s", self.name, why),
            {"field_selector": f"spec.nodeName={self.name}"})

    def _wait_seconds(self) -> float:
        soon = [r.next_due() for r in self.runtimes.values()] + list(self.ending.values())
        due = min((t for t in soon if t is not None), default=time.time() + 1.0)
        return min(max(due - time.time(), 0.0), 1.0)

    def _drain(self, timeout: float) -> None:
        try:
            first = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        batch = [first]
        with contextlib.suppress(queue.Empty):
            while True:
                batch.append(self.events.get_nowait())
        nodes_changed = False
        for kind, obj in batch:
            if kind == "REGISTERED":
                self._rejoin_flannel()
            elif kind in ("NODES", "NODE"):
                nodes_changed = True
                if kind == "NODES":
                    self.node_objects = obj
                elif obj[0] == "DELETED":
                    self.node_objects.pop(obj[1]["metadata"]["name"], None)
                else:
                    self.node_objects[obj[1]["metadata"]["name"]] = obj[1]
            elif kind == "LIST":
                self.objects = {_key(o): o for o in obj}
            elif kind == "DELETED":
                self.objects.pop(_key(obj), None)
            else:
                self.objects[_key(obj)] = obj
        if nodes_changed:
            self._update_peers()

    # pods: the kernel ----------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Make the kernel hold exactly the pods bound here (terminating ones until their grace ends)."""
        now = time.time()
        wanted = {k: o for k, o in self.objects.items() if kubelet.must_realize(o, self.name)}
        gone, repair = [], []
        for key, record in self.records.items():
            obj = self.objects.get(key)
            if not self._namespace_present(record):  # deleted behind the lab's back: made again, as a sandbox is
                (repair if key in wanted else gone).append(record)
                continue
            if obj is not None and obj["metadata"].get("uid") == record.pod.uid and kubelet.is_terminating(obj):
                end = self.ending.setdefault(key, now + kubelet.termination_seconds(record.pod, obj))
                if now < end:
                    continue  # still serving through its grace period
            elif key in wanted and wanted[key]["metadata"].get("uid") == record.pod.uid:
                continue
            gone.append(record)
        new = [kubelet.pod_from_api(o) for k, o in sorted(wanted.items()) if k not in self.records or
               self.records[k] in gone + repair]
        for key in [k for k in self.waiting if k not in wanted]:  # a waiting pod deleted: nothing to retry
            self.waiting.pop(key)
            self.told.pop(key, None)
        if gone or repair:
            self._remove(gone, now, repaired=repair)
        if new:
            self._create(new, now)
        for key, record in self.records.items():  # found running after a restart: probes and status go on
            if key not in self.runtimes and key in self.objects:
                self.runtimes[key] = kubelet.PodRuntime.start(record.pod, record.ip, self.config.node.ip, now,
                                                              self.objects[key].get("status"))
        self._finish_deletions()

    def _create(self, pods: list[Pod], now: float) -> None:
        placements = [p for p in (self._place(pod) for pod in pods) if p is not None]
        if not placements:
            return
        for placement in placements:  # before the namespace: nothing run in the pod sees it without its DNS
            self._write_resolv_conf(placement.pod)
        if isinstance(self.pool, TerwayEniPool | TerwayExclusivePool):
            self.pool.warm()  # Terway refills its pool to the low watermark after taking from it
        self._ensure_eni_tables()  # an ENI attached for these pods needs its table before their rules
        records = self.network.ensure_pods(placements)
        for record in records:
            self.records[record.pod.key] = record
        self._serve()
        for record in records:
            self.runtimes[record.pod.key] = kubelet.PodRuntime.start(record.pod, record.ip, self.config.node.ip, now)
            log.info("pod %s: %s on %s (uid %s)", record.pod.key, record.ip, self.name, record.pod.uid)

    def _write_resolv_conf(self, pod: Pod) -> None:
        """The pod's resolv.conf (``kubelet.pod_resolv_conf``) in ``/etc/netns/<pod namespace>/``, which
        ``ip netns exec`` (``acklab exec``) binds over /etc/resolv.conf; it goes with the pod
        (``NodeNetwork.remove_pods``)."""
        obj = self.objects.get(pod.key) or {"metadata": {"namespace": pod.namespace, "name": pod.name}}
        conf = kubelet.pod_resolv_conf(obj, self.config.dns, kubelet.parse_resolv_conf(self._node_resolv_conf()))
        netns_etc.write(pod_netns_name(self.config.lab, pod.namespace, pod.name), RESOLV_CONF, conf.render())

    def _node_resolv_conf(self) -> str:
        """The node's resolv.conf (the kubelet's --resolv-conf): what ``ip netns exec <node>`` shows, its own file
        in /etc/netns if it has one, else the host's."""
        for path in (netns_etc.folder(self.config.node.netns) / RESOLV_CONF, Path("/etc") / RESOLV_CONF):
            with contextlib.suppress(OSError):
                return path.read_text()
        return ""

    def _place(self, pod: Pod) -> Placement | None:
        """The pod's placement with an address from the pool; None (the pod waits, retried on every turn) when
        the node has none left: as on ACK, the pod stays ContainerCreating with an event saying why."""
        try:
            ip = self.pool.allocate(pod.key)
        except (NoFreeAddress, ValidationError, ValueError) as exc:  # ValueError: the ENI's facts are full
            if self.waiting.get(pod.key) != str(exc):
                log.warning("pod %s: cannot start on %s: %s", pod.key, self.name, exc)
            self.waiting[pod.key] = str(exc)
            return None
        self.waiting.pop(pod.key, None)
        self.told.pop(pod.key, None)
        if self.flannel:  # on the node's bridge, the bridge's address as gateway (flannel's CNI: bridge + host-local)
            block = ipaddress.IPv4Network(self.node.pod_cidr)
            mtu = ipam.overlay_mtu(self.mtu) if self.config.datapath == "vxlan" else self.mtu
            return Placement(pod, self.name, ip, block.prefixlen, str(ipam.bridge_gateway(block)), mtu)
        if isinstance(self.pool, TerwayExclusivePool):  # its own ENI; the gateway is its vSwitch's, on link
            eni = self.pool.eni_of(ip)
            return Placement(pod, self.name, ip, 32, eni.gateway or str(self.node.eni_gateway), self.mtu,
                             {"eni": eni.ifname})
        extra = {"eni": self.pool.interface_of(ip)} if isinstance(self.pool, TerwayEniPool) else {}
        return Placement(pod, self.name, ip, 32, TERWAY_GATEWAY, self.mtu, extra)

    def _remove(self, records: list[Any], now: float, repaired: list[Any] | None = None) -> None:
        """Remove pods from the kernel. ``repaired`` pods are made again at once: they keep their address (a
        pod's IP never changes while it exists) and their status."""
        everything = records + (repaired or [])
        for record in everything:
            self.records.pop(record.pod.key, None)
        self._serve()  # first: the pod agent's sockets keep the namespaces alive
        self.network.remove_pods(everything)
        if repaired and isinstance(self.pool, TerwayExclusivePool):
            self.pool.resync()  # an exclusive ENI whose pod namespace was deleted went with it
        for record in records:
            key = record.pod.key
            self.pool.release(key, now)
            self.runtimes.pop(key, None)
            self.reported.pop(key, None)
            self.ending.pop(key, None)
            log.info("pod %s: removed from %s", key, self.name)
        if isinstance(self.pool, EniAddressPool | HostLocalPool | TerwayEniPool | TerwayExclusivePool):
            write_atomic(self._released_file(), json.dumps(self.pool.released, sort_keys=True))

    def _serve(self) -> None:
        desired = self.network.agent_pods(list(self.records.values()))
        agent = self.network.agent
        if agent.pid() is None or agent.desired() != desired:
            status = agent.configure(desired)
            if status.get("errors"):
                log.warning("node %s: pod agent: %s", self.name, "; ".join(status["errors"]))

    def _finish_deletions(self) -> None:
        """Terminating pods with nothing left on the node: delete the object for good (grace 0, this uid)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self.api)
        for key, obj in list(self.objects.items()):
            if not kubelet.is_terminating(obj) or (key in self.records and (
                    self.records[key].pod.uid == obj["metadata"].get("uid"))):
                continue
            meta = obj["metadata"]
            body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
            try:
                core.delete_namespaced_pod(meta["name"], meta["namespace"], body=body, grace_period_seconds=0)
            except ApiException as exc:
                if exc.status not in (404, 409):
                    raise
            self.objects.pop(key, None)  # the watch's DELETED event follows

    # probes and status ---------------------------------------------------------------------------------------
    def probe(self) -> None:
        now = time.time()
        for key, runtime in self.runtimes.items():
            for tracker in runtime.due(now):
                ok = run_probe(tracker.probe, runtime.pod, runtime.ip)
                if runtime.observe(tracker, ok, time.time()):
                    log.info("pod %s: %s probe of %s now %s", key, tracker.probe.kind, tracker.probe.container,
                             "succeeding" if tracker.result else "failing")

    def report(self) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self.api)
        for key, runtime in self.runtimes.items():
            status = runtime.status()
            if self.reported.get(key) == status or key not in self.objects:
                continue
            obj = self.objects[key]["metadata"]
            try:
                core.patch_namespaced_pod_status(obj["name"], obj["namespace"], {"status": status},
                                                 _content_type=STRATEGIC)
            except ApiException as exc:
                if exc.status != 404:
                    raise
            self.reported[key] = status
        self._report_waiting(core)

    def _report_waiting(self, core: Any) -> None:
        """Pods waiting for an address: status Pending/ContainerCreating and one Warning Event per reason."""
        from kubernetes.client.rest import ApiException

        for key, message in self.waiting.items():
            obj = self.objects.get(key)
            if obj is None:
                continue
            pod = kubelet.pod_from_api(obj)
            if self.told.get(key) == (pod.uid, message):
                continue
            now = time.time()
            try:
                core.patch_namespaced_pod_status(pod.name, pod.namespace, {"status": kubelet.waiting_status(
                    pod, self.config.node.ip, now, message)}, _content_type=STRATEGIC)
                core.create_namespaced_event(pod.namespace, kubelet.sandbox_event(pod, self.name, now, message))
            except ApiException as exc:
                if exc.status != 404:
                    raise
            self.told[key] = (pod.uid, message)


def _key(obj: dict[str, Any]) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acklab.k8s.node_agent", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = NodeAgentConfig.from_dict(json.loads(args.config.read_text()))
    NodeAgent(config, args.config.with_suffix(".kubeconfig")).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
