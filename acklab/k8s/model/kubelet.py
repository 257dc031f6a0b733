"""The kubelet's share of the network, pure: the Node object ACK registers, the node's Lease, which pods a node
realizes, pods read from the API server, probe bookkeeping, the pod status a node reports and a pod's DNS
configuration (its resolv.conf).

The process around it (watches, the kernel, the clock) is ``acklab.k8s.node_agent``. Objects are the API's own
JSON (camelCase dictionaries, as ``kubectl get -o json`` prints them), so this module needs no client library.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from acklab.k8s import informer
from acklab.k8s.model.objects import Container, ContainerPort, Pod, Probe

KUBELET_VERSION = "v1.37.2"  # the control plane's version: the API server accepts a node of its own release
RUNTIME = "acklab://0.1"  # no container runtime: containers are the pod agent's sockets in the pod's namespace
LEASE_SECONDS = 40  # kubelet's default nodeLeaseDurationSeconds
RENEW_SECONDS = 10.0  # kubelet renews its lease every quarter of it
STATUS_SECONDS = 60.0  # kubelet reports an unchanged NodeStatus at least this often (nodeStatusReportFrequency)
TERMINAL_PHASES = ("Succeeded", "Failed")
PROBE_KINDS = {"readinessProbe": "readiness", "livenessProbe": "liveness"}
_DELAY_SHUTDOWN = re.compile(r"^--delay-shutdown=(\d+)$")


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_time(text: str | None) -> float | None:
    """An RFC 3339 time of the API (seconds precision) as epoch seconds."""
    if not text:
        return None
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))


def micro_time(epoch: float) -> str:
    """A MicroTime (leases' renewTime)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1e6):06d}Z"


# --- the node ---------------------------------------------------------------------------------------------------

def region_of(zone: str) -> str:
    """Alibaba's zone ids are the region's id plus a letter: ``cn-hangzhou-h`` → ``cn-hangzhou``."""
    return zone.rsplit("-", 1)[0] if zone.count("-") >= 2 else zone


@dataclass(frozen=True)
class NodeIdentity:
    """What ACK knows about a node's ECS instance."""

    name: str  # the ECS host name
    instance_id: str
    zone: str
    instance_type: str
    internal_ip: str
    max_pods: int = 110  # Terway: the instance type's ENI quota; Flannel: the node's block (at most 110)

    @property
    def region(self) -> str:
        return region_of(self.zone)

    @property
    def provider_id(self) -> str:
        return f"{self.region}.{self.instance_id}"  # ACK's form: <region>.<instance id>

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def node_labels(identity: NodeIdentity) -> dict[str, str]:
    """The labels ACK puts on a node (and the kubelet's own well-known ones)."""
    return {"kubernetes.io/hostname": identity.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/region": identity.region, "topology.kubernetes.io/zone": identity.zone,
            "node.kubernetes.io/instance-type": identity.instance_type}


def node_object(identity: NodeIdentity) -> dict[str, Any]:
    """The Node the agent registers (its status follows with ``node_status``)."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": identity.name, "labels": node_labels(identity)},
            "spec": {"providerID": identity.provider_id}}


NETWORK_NOT_READY = ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                     "message:Network plugin returns error: cni plugin not initialized")


def node_status(identity: NodeIdentity, now: float, since: float, network_ready: bool = True) -> dict[str, Any]:
    """The node's ``status``: Ready (since the agent started; with Flannel, once the node's pod network is built
    on its podCIDR, as a kubelet is NotReady until the CNI configuration exists), no pressure, its addresses and
    capacity."""
    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": rfc3339(now), "lastTransitionTime": rfc3339(since)}

    capacity = {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "40Gi", "pods": str(identity.max_pods)}
    return {"conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID"),
                condition("Ready", "True", "KubeletReady", "acklab node agent is posting ready status")
                if network_ready else condition("Ready", "False", "KubeletNotReady", NETWORK_NOT_READY)],
            "addresses": [{"type": "InternalIP", "address": identity.internal_ip},
                          {"type": "Hostname", "address": identity.name}],
            "capacity": capacity, "allocatable": capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                         "osImage": "acklab", "containerRuntimeVersion": RUNTIME,
                         "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": "amd64"}}


def lease_object(node: str, now: float, node_uid: str = "") -> dict[str, Any]:
    """The node's heartbeat in ``kube-node-lease`` (owned by the Node, so it goes with it)."""
    metadata: dict[str, Any] = {"name": node, "namespace": "kube-node-lease"}
    if node_uid:
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro_time(now)}}


# --- pods from the API server -----------------------------------------------------------------------------------

def must_realize(obj: Mapping[str, Any], node: str) -> bool:
    """A pod this node runs: bound to it, not finished, not being deleted."""
    return ((obj.get("spec") or {}).get("nodeName") == node
            and (obj.get("status") or {}).get("phase") not in TERMINAL_PHASES
            and not (obj.get("metadata") or {}).get("deletionTimestamp"))


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def termination_seconds(pod: Pod, obj: Mapping[str, Any]) -> float:
    """How long a deleted pod keeps running: its containers' shutdown delay (agnhost netexec serves on that
    long after SIGTERM), cut at the grace period (the deletion's own, else terminationGracePeriodSeconds)."""
    grace = (obj.get("metadata") or {}).get("deletionGracePeriodSeconds")
    return float(min(pod.shutdown_delay, pod.grace_seconds if grace is None else int(grace)))


def pod_from_api(obj: Mapping[str, Any]) -> Pod:
    """The pod as the datapath and the probes need it."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    containers = spec.get("containers") or []
    ports, probes, delay = [], [], 0
    for container in containers:
        named = {p["name"]: p["containerPort"] for p in container.get("ports") or () if p.get("name")}
        ports += [ContainerPort(p["containerPort"], p.get("protocol", "TCP"), p.get("name", ""))
                  for p in container.get("ports") or ()]
        for field_name, kind in PROBE_KINDS.items():
            if container.get(field_name):
                probes.append(_probe(container["name"], kind, container[field_name], named))
        for arg in container.get("args") or ():
            if match := _DELAY_SHUTDOWN.match(str(arg)):
                delay = max(delay, int(match.group(1)))
    owners = meta.get("ownerReferences") or []
    owner = f"{owners[0]['kind']}/{owners[0]['name']}" if owners else ""
    grace = spec.get("terminationGracePeriodSeconds")
    return Pod(meta["namespace"], meta["name"], dict(meta.get("labels") or {}), tuple(ports), spec.get("nodeName"),
               owner, meta.get("uid", ""), tuple(Container(c["name"], c.get("image", "")) for c in containers),
               tuple(probes), 30 if grace is None else int(grace), delay)


def _probe(container: str, kind: str, spec: Mapping[str, Any], named: Mapping[str, int]) -> Probe:
    common = {"initial_delay": float(spec.get("initialDelaySeconds", 0)),
              "period": float(spec.get("periodSeconds", 10)),
              "timeout": float(spec.get("timeoutSeconds", 1)),
              "success_threshold": int(spec.get("successThreshold", 1)),
              "failure_threshold": int(spec.get("failureThreshold", 3))}
    if "httpGet" in spec:
        action = spec["httpGet"]
        return Probe(container, kind, "httpGet", _port(action.get("port"), named), action.get("path") or "/",
                     **common)
    if "tcpSocket" in spec:
        return Probe(container, kind, "tcpSocket", _port(spec["tcpSocket"].get("port"), named), **common)
    if "exec" in spec:
        return Probe(container, kind, "exec", command=tuple(spec["exec"].get("command") or ()), **common)
    return Probe(container, kind, "unsupported", **common)  # grpc: not served by the agent, always fails


def _port(port: Any, named: Mapping[str, int]) -> int:
    """A probe's port: a number, or the name of one of the container's ports (0 when unknown: the probe fails)."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    return named.get(str(port), 0)


def exec_command(command: Sequence[str], hostname: str) -> int:
    """The exit code of an exec probe's command. No container image exists, so the agent runs the commands it
    knows itself (agnhost netexec's ``hostname`` and ``echo``, the shell's ``true``/``false``); any other is
    ``command not found`` (127), as in a container without that binary."""
    if not command:
        return 126
    word = command[0].rsplit("/", 1)[-1]
    if word in ("true", "hostname", "echo"):
        return 0
    if word == "false":
        return 1
    if word in ("sh", "bash") and len(command) >= 3 and command[1] == "-c":
        return exec_command(command[2].split(), hostname)  # "sh -c 'true'": one simple command
    return 127


# --- probes and pod status --------------------------------------------------------------------------------------

@dataclass
class ProbeTracker:
    """One probe's consecutive results against its thresholds (the kubelet's prober worker)."""

    probe: Probe
    result: bool  # readiness starts failed (not ready until a success), liveness starts succeeded
    due: float
    successes: int = 0
    failures: int = 0

    @staticmethod
    def start(probe: Probe, now: float) -> ProbeTracker:
        return ProbeTracker(probe, probe.kind == "liveness", now + probe.initial_delay)

    def observe(self, ok: bool, now: float) -> bool:
        """Record one run; returns True when the result flipped."""
        self.due = now + self.probe.period
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            flip = not self.result and self.successes >= self.probe.success_threshold
        else:
            self.successes, self.failures = 0, self.failures + 1
            flip = self.result and self.failures >= self.probe.failure_threshold
        if flip:
            self.result = not self.result
        return flip


@dataclass
class PodRuntime:
    """What the node knows of one running pod: its address, when it started, its probes, restarts."""

    pod: Pod
    ip: str
    host_ip: str
    started: float
    trackers: list[ProbeTracker] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    ready_since: float = 0.0  # when Ready last changed
    was_ready: bool | None = None

    @staticmethod
    def start(pod: Pod, ip: str, host_ip: str, now: float, reported: Mapping[str, Any] | None = None) -> PodRuntime:
        """A pod's runtime from now on. ``reported``: the status the API server has for a pod the agent finds
        running after a restart; its start time and its containers' readiness carry over (a restarted kubelet
        does not make ready pods flap to not ready)."""
        reported = reported or {}
        was_ready = {c.get("name"): bool(c.get("ready")) for c in reported.get("containerStatuses") or ()}
        trackers = [ProbeTracker.start(p, now) for p in pod.probes]
        for tracker in trackers:
            if tracker.probe.kind == "readiness" and was_ready.get(tracker.probe.container):
                tracker.result = True
        started = parse_time(reported.get("startTime")) or now
        runtime = PodRuntime(pod, ip, host_ip, started, trackers)
        runtime.restarts = {c["name"]: int(c.get("restartCount", 0)) for c in reported.get("containerStatuses") or ()
                            if c.get("restartCount")}
        runtime.ready_since = now
        runtime.was_ready = runtime.ready()
        return runtime

    def container_ready(self, name: str) -> bool:
        return all(t.result for t in self.trackers if t.probe.container == name and t.probe.kind == "readiness")

    def ready(self) -> bool:
        return all(self.container_ready(c.name) for c in self.pod.containers)

    def due(self, now: float) -> list[ProbeTracker]:
        return [t for t in self.trackers if t.due <= now]

    def next_due(self) -> float | None:
        return min((t.due for t in self.trackers), default=None)

    def observe(self, tracker: ProbeTracker, ok: bool, now: float) -> bool:
        """Record a probe run; a liveness probe that flips to failed restarts its container (its readiness
        starts over after the initial delay, as a new container's would). Returns True when the status changed."""
        if not tracker.observe(ok, now):
            return False
        if tracker.probe.kind == "liveness":
            name = tracker.probe.container
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.trackers = [ProbeTracker.start(t.probe, now) if t.probe.container == name else t
                             for t in self.trackers]
        ready = self.ready()
        if ready != self.was_ready:
            self.was_ready, self.ready_since = ready, now
        return True

    def status(self) -> dict[str, Any]:
        """The pod's ``status`` as the node reports it (a strategic merge patch of pods/status)."""
        ready = self.ready()
        started, since = rfc3339(self.started), rfc3339(self.ready_since)

        def condition(kind: str, value: bool, when: str) -> dict[str, Any]:
            return {"type": kind, "status": "True" if value else "False", "lastProbeTime": None,
                    "lastTransitionTime": when}

        containers_ready = condition("ContainersReady", ready, since)
        pod_ready = condition("Ready", ready, since)
        if not ready:
            names = [c.name for c in self.pod.containers if not self.container_ready(c.name)]
            message = f"containers with unready status: [{' '.join(names)}]"
            for item in (containers_ready, pod_ready):
                item.update(reason="ContainersNotReady", message=message)
        return {"phase": "Running", "hostIP": self.host_ip, "hostIPs": [{"ip": self.host_ip}],
                "podIP": self.ip, "podIPs": [{"ip": self.ip}], "startTime": started,
                "conditions": [condition("PodReadyToStartContainers", True, started),
                               condition("Initialized", True, started), containers_ready, pod_ready,
                               condition("PodScheduled", True, started)],
                "containerStatuses": [self._container_status(c, started) for c in self.pod.containers]}

    def _container_status(self, container: Container, started: str) -> dict[str, Any]:
        restarts = self.restarts.get(container.name, 0)
        status: dict[str, Any] = {
            "name": container.name, "image": container.image, "imageID": "",
            "containerID": f"acklab://{self.pod.uid}/{container.name}/{restarts}",
            "ready": self.container_ready(container.name), "started": True, "restartCount": restarts,
            "state": {"running": {"startedAt": started}}}
        if restarts:
            status["lastState"] = {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": started,
                                                  "finishedAt": started}}
        return status


# --- a pod the node cannot start (no sandbox: e.g. no pod address left) ----------------------------------------

SANDBOX_FAILED = "FailedCreatePodSandBox"


def waiting_status(pod: Pod, host_ip: str, now: float, message: str) -> dict[str, Any]:
    """The status of a pod whose sandbox could not be made, as the kubelet reports it: phase Pending, its
    containers waiting in ContainerCreating, PodReadyToStartContainers False (the sandbox has no network)."""
    when = rfc3339(now)
    unready = f"containers with unready status: [{' '.join(c.name for c in pod.containers)}]"

    def condition(kind: str, value: bool, reason: str = "", text: str = "") -> dict[str, Any]:
        item: dict[str, Any] = {"type": kind, "status": "True" if value else "False", "lastProbeTime": None,
                                "lastTransitionTime": when}
        if reason:
            item.update(reason=reason, message=text)
        return item

    return {"phase": "Pending", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "startTime": when,
            "conditions": [condition("PodReadyToStartContainers", False, SANDBOX_FAILED, message),
                           condition("Initialized", True),
                           condition("ContainersReady", False, "ContainersNotReady", unready),
                           condition("Ready", False, "ContainersNotReady", unready),
                           condition("PodScheduled", True)],
            "containerStatuses": [{"name": c.name, "image": c.image, "imageID": "", "ready": False,
                                   "started": False, "restartCount": 0,
                                   "state": {"waiting": {"reason": "ContainerCreating"}}} for c in pod.containers]}


def sandbox_event(pod: Pod, node: str, now: float, message: str) -> dict[str, Any]:
    """The Warning Event the kubelet records on a pod whose sandbox failed (core/v1 Event, as ``kubectl describe
    pod`` lists it)."""
    return informer.event({"apiVersion": "v1", "kind": "Pod", "name": pod.name, "namespace": pod.namespace,
                           "uid": pod.uid}, "Warning", SANDBOX_FAILED,
                          f"Failed to create pod sandbox: plugin type=\"terway\" failed (add): {message}", "kubelet",
                          host=node, when=now)


# --- a pod's DNS configuration (its resolv.conf) ----------------------------------------------------------------
# The kubelet's dns.Configurer (pkg/kubelet/network/dns/dns.go) and the container runtime's rendering of its result.

CLUSTER_DOMAIN = "cluster.local"  # kubelet's --cluster-domain on ACK
DEFAULT_DNS_OPTIONS = ("ndots:5",)  # what ClusterFirst pods get (the kubelet's defaultDNSOptions)
MAX_DNS_NAMESERVERS = 3  # validation.MaxDNSNameservers: the resolver reads three at most
MAX_DNS_SEARCH_PATHS = 32  # validation.MaxDNSSearchPaths
MAX_DNS_SEARCH_LIST_CHARS = 2048  # validation.MaxDNSSearchListChars
MAX_DNS_NAME = 253  # a search path longer than a DNS-1123 subdomain is dropped
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


@dataclass(frozen=True)
class ClusterDns:
    """The kubelet's DNS flags: ``--cluster-dns`` (the kube-dns Service's ClusterIP) and ``--cluster-domain``."""

    servers: tuple[str, ...] = ()
    domain: str = CLUSTER_DOMAIN


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        """As containerd writes a sandbox's resolv.conf: search, nameservers, options (empty lines left out)."""
        lines = [f"search {' '.join(self.searches)}"] if self.searches else []
        lines += [f"nameserver {server}" for server in self.nameservers]
        lines += [f"options {' '.join(self.options)}"] if self.options else []
        return "".join(line + "\n" for line in lines)


def parse_resolv_conf(text: str) -> ResolvConf:
    """The node's resolv.conf as the kubelet reads it: every nameserver, the last search line (without "." and
    trailing dots), options merged by name (a later one wins)."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.strip().split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            nameservers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            options = _merge_options(options, fields[1:])
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


def _merge_options(options: Sequence[str], more: Sequence[str]) -> list[str]:
    """Options by name (``ndots:5`` is named ``ndots``): a later one replaces an earlier one in its place. (The
    kubelet merges through a Go map, so its order is random; this keeps the first-seen order.)"""
    merged = {option.split(":", 1)[0]: option for option in options}
    for option in more:
        merged[option.split(":", 1)[0]] = option
    return list(merged.values())


def _dedup(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def dns_policy(obj: Mapping[str, Any]) -> str:
    """The pod's effective policy: ClusterFirst (the default) of a hostNetwork pod is Default; an unknown one is
    ClusterFirst (the kubelet logs it and goes on)."""
    spec = obj.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        return "Default"
    return policy if policy in DNS_POLICIES else "ClusterFirst"


def pod_resolv_conf(obj: Mapping[str, Any], cluster: ClusterDns, host: ResolvConf) -> ResolvConf:
    """The DNS configuration the kubelet gives a pod (``GetPodDNS``): ``host`` is the node's resolv.conf.

    - ClusterFirst (and ClusterFirstWithHostNet): the cluster DNS servers; search ``<ns>.svc.<domain>
      svc.<domain> <domain>`` then the node's; options ``ndots:5``. Without a cluster DNS server it falls back to
      Default, as the kubelet does.
    - Default: the node's resolv.conf.
    - None: nothing but ``spec.dnsConfig``.
    Then ``spec.dnsConfig`` is appended (nameservers, searches without duplicates; options merged by name), and
    the result is cut to the limits (3 nameservers; 32 search paths, none longer than 253, 2048 characters).
    """
    spec, meta = obj.get("spec") or {}, obj.get("metadata") or {}
    policy = dns_policy(obj)
    config = host
    if policy == "None":
        config = ResolvConf()
    elif policy in ("ClusterFirst", "ClusterFirstWithHostNet") and cluster.servers:
        searches = host.searches
        if cluster.domain:
            domain = cluster.domain
            searches = (f"{meta.get('namespace') or 'default'}.svc.{domain}", f"svc.{domain}", domain, *searches)
        config = ResolvConf(cluster.servers, _dedup(searches), DEFAULT_DNS_OPTIONS)
    extra = spec.get("dnsConfig")
    if extra:
        options = [f"{o['name']}:{o['value']}" if o.get("value") else o["name"] for o in extra.get("options") or ()
                   if o.get("name")]
        config = ResolvConf(_dedup([*config.nameservers, *(extra.get("nameservers") or ())]),
                            _dedup([*config.searches, *(extra.get("searches") or ())]),
                            tuple(_merge_options(config.options, options)))
    return ResolvConf(config.nameservers[:MAX_DNS_NAMESERVERS], _fit_searches(config.searches), config.options)


def _fit_searches(searches: Sequence[str]) -> tuple[str, ...]:
    """The kubelet's formDNSSearchFitsLimits: the first 32 paths, too long ones dropped, then paths cut from the
    end until the search line fits 2048 characters."""
    kept = [s for s in searches[:MAX_DNS_SEARCH_PATHS] if len(s) <= MAX_DNS_NAME]
    while kept and len(" ".join(kept)) > MAX_DNS_SEARCH_LIST_CHARS:
        kept.pop()
    return tuple(kept)
