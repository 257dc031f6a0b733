"""Is a lab serving? What ``acklab wait`` (the last step of ``make up``) polls for, like ``kind create cluster --wait``.

A lab is ready when
- every listener of every SLB has a backend that its health checks (HAProxy's for layer 7, the SLB's checker
  process for layer 4) report healthy (Alibaba's ``normal``; a listener with health checks off counts its
  backends as serving, as HAProxy does), and a real request through
  the listener is answered (an HTTP request; through a layer-4 listener any bytes back count): from the lab's
  internet (``acklab-<lab>-internet``) for internet SLBs, from an ECS of
  the SLB's VPC for intranet ones, with a source address the listener's ACL admits (none admitted: the health
  checks alone decide);
- every pod of the lab answers from its node's namespace (where the kubelet's probes come from; NetworkPolicy
  filters forwarded traffic, not the node's own): pods the agent serves on each declared TCP and UDP port (they
  must answer ``hostname`` with the pod's name), ingress controller pods on at least one declared TCP port
  (nginx serves the http/https ports; upstream's manifests also declare a webhook port nobody serves here).

Pure logic (``plan``, ``verdict``, ``poll``, ``message``) is kept apart from reading the kernel (``gather``) and
from sending probes (``run_probes``), so the rules are unit-tested without root.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from acklab.inventory import read_lab
from acklab.k8s.model.ingress import is_controller_pod
from acklab.k8s.realize.pod_network import load_records
from netns.kernel.namespace import Namespace
from netns.model.slb import INTERNET_CLIENTS
from netns.realize import slb as slb_realize

DEFAULT_TIMEOUT = 60.0
POLL_INTERVAL = 0.25  # between rounds; a round itself takes as long as its slowest probe
PROBE_TIMEOUT = 2.0
# What HAProxy answers itself on an http/https listener when it could not get a backend's answer.
PROXY_ERRORS = (502, 503, 504)


# --- what the lab holds (filled in by ``gather``) ------------------------------------------------------------

@dataclass(frozen=True)
class Backend:
    server: str  # as people know it: "ecs-1 i-4d258272:30001"
    status: str  # Alibaba's: normal, abnormal, unavailable
    haproxy_status: str = ""  # "UP", "DOWN 1/3", "no check", ...

    @property
    def serving(self) -> bool:
        # "no check": health checks are off, and HAProxy sends traffic to the server all the same
        return self.status == "normal" or self.haproxy_status.startswith("no check")

    def describe(self) -> str:
        detail = f" ({self.haproxy_status})" if self.haproxy_status else ""
        return f"{self.server} {self.status}{detail}"


@dataclass(frozen=True)
class Listener:
    protocol: str  # tcp, http, https
    port: int
    backends: tuple[Backend, ...] = ()
    path: str = "/"  # a layer-7 request asks for what the health check asks for
    host: str = ""
    acl_type: str | None = None  # white, black, None: no access control
    acl_entries: tuple[str, ...] = ()
    redirect: bool = False  # listener_forward on: HAProxy answers every request with a redirect, no backends


@dataclass(frozen=True)
class Slb:
    lb_id: str
    name: str
    address: str
    address_type: str  # internet, intranet
    vpc_id: str | None
    running: bool  # its HAProxy (layer-7 listeners) and health checker (layer-4 listeners) run
    listeners: tuple[Listener, ...] = ()

    def label(self, listener: Listener | None = None) -> str:
        named = f" ({self.name})" if self.name else ""
        return f"SLB {self.lb_id}{named}" + (f" {listener.protocol}:{listener.port}" if listener else "")


@dataclass(frozen=True)
class PodFacts:
    key: str  # namespace/name
    name: str
    ip: str
    present: bool  # its network namespace exists
    probe_from: str  # the namespace probes start in: its node's
    ports: tuple[tuple[int, str], ...] = ()  # declared containerPorts (port, TCP|UDP|SCTP)
    controller: bool = False  # an ingress-nginx controller pod: nginx, not the agent, serves it


@dataclass(frozen=True)
class Client:
    """Where a request through an SLB starts: a namespace and the source address it binds."""

    netns: str
    address: str
    label: str  # "internet", "ecs-1"


@dataclass(frozen=True)
class Snapshot:
    lab: str
    slbs: tuple[Slb, ...] = ()
    pods: tuple[PodFacts, ...] = ()
    internet: tuple[Client, ...] = ()
    vpc_clients: Mapping[str, tuple[Client, ...]] = field(default_factory=dict)  # VPC id → its ECS


# --- probes and checks (pure) ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    """One question asked over the network. ``kind``: ``connect`` (a TCP handshake is the answer), ``command``
    (TCP line ``hostname``, the answer must be ``expect``), ``udp`` (datagram ``hostname``, likewise), ``tcp`` (an
    HTTP request through a layer-4 listener: any bytes back), ``http``/``https`` (a request; HAProxy's own
    502/503/504 are no answer)."""

    netns: str
    address: str
    port: int
    kind: str
    source: str | None = None
    expect: str | None = None
    host: str = ""
    path: str = "/"
    origin: str = ""  # the client's name, for messages

    def describe(self) -> str:
        origin = f"from {self.origin} " if self.origin else ""
        return f"{self.kind} {origin}to {self.address}:{self.port}"


@dataclass(frozen=True)
class Check:
    """One thing that must be ready: a problem known without probing, or probes of which all (or any) answer."""

    what: str
    problem: str | None = None
    probes: tuple[Probe, ...] = ()
    need_all: bool = True


def admitted(source: str, acl_type: str | None, entries: Iterable[str]) -> bool:
    """Whether a listener's ACL lets ``source`` in (a whitelist without entries admits everyone, as on Alibaba)."""
    entries = tuple(entries)
    if not acl_type or not entries:
        return True
    address = ipaddress.IPv4Address(source)
    listed = any(address in ipaddress.IPv4Network(entry, strict=False) for entry in entries)
    return listed if acl_type == "white" else not listed


def client_for(slb: Slb, listener: Listener, snapshot: Snapshot) -> Client | None:
    """The first client of the SLB's side (internet, or the ECS of its VPC) the listener's ACL admits."""
    candidates = snapshot.internet if slb.address_type == "internet" else snapshot.vpc_clients.get(slb.vpc_id or "", ())
    return next((c for c in candidates if admitted(c.address, listener.acl_type, listener.acl_entries)), None)


def slb_checks(slb: Slb, snapshot: Snapshot) -> list[Check]:
    if not slb.listeners:
        return []  # nothing to serve yet: an SLB without listeners has no HAProxy either
    if not slb.running:
        return [Check(slb.label(), problem="HAProxy or the health checker is not running (see `acklab logs`)")]
    checks = []
    for listener in sorted(slb.listeners, key=lambda lst: (lst.port, lst.protocol)):
        what = slb.label(listener)
        # a redirecting listener has no backends to be healthy: its answer (the redirect) is the check
        if not listener.redirect and not listener.backends:
            checks.append(Check(what, problem="no backend servers"))
        elif not listener.redirect and not any(b.serving for b in listener.backends):
            states = ", ".join(b.describe() for b in listener.backends)
            checks.append(Check(what, problem=f"no healthy backend: {states}"))
        else:
            client = client_for(slb, listener, snapshot)
            probes = () if client is None else (Probe(
                client.netns, slb.address, listener.port, listener.protocol,
                source=client.address if listener.acl_type else None, host=listener.host or slb.address,
                path=listener.path, origin=client.label),)
            checks.append(Check(what, probes=probes))
    return checks


def pod_check(pod: PodFacts) -> Check:
    what = f"pod {pod.key}"
    if not pod.present:
        return Check(what, problem="its network namespace is gone (run the playbook again: make up)")
    if pod.controller:
        probes = tuple(Probe(pod.probe_from, pod.ip, port, "connect", origin="its node")
                       for port, protocol in pod.ports if protocol == "TCP")
        return Check(what, probes=probes, need_all=False)
    kinds = {"TCP": "command", "UDP": "udp"}
    probes = tuple(Probe(pod.probe_from, pod.ip, port, kinds[protocol], expect=pod.name, origin="its node")
                   for port, protocol in pod.ports if protocol in kinds)
    return Check(what, probes=probes)


def plan(snapshot: Snapshot) -> list[Check]:
    checks = [check for slb in sorted(snapshot.slbs, key=lambda s: s.lb_id) for check in slb_checks(slb, snapshot)]
    return checks + [pod_check(pod) for pod in sorted(snapshot.pods, key=lambda p: p.key)]


def verdict(checks: Sequence[Check], answers: Mapping[Probe, str | None]) -> list[str]:
    """One line per check that is not ready (``answers``: probe → None if it answered, else why not)."""
    lines = []
    for check in checks:
        if check.problem:
            lines.append(f"{check.what}: {check.problem}")
            continue
        failed = [p for p in check.probes if answers.get(p, "not probed") is not None]
        if not failed or (not check.need_all and len(failed) < len(check.probes)):
            continue
        lines.append(f"{check.what}: " + "; ".join(f"{p.describe()}: {answers.get(p, 'not probed')}" for p in failed))
    return lines


def judge_http(data: bytes) -> str | None:
    """None if ``data`` starts an HTTP response from a backend; else why it is no answer."""
    if not data:
        return "connection closed without an answer"
    words = data.split(b"\r\n", 1)[0].split()
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        return f"not an HTTP answer: {data[:40]!r}"
    status = int(words[1])
    return f"the SLB answered {status} itself (no backend answered)" if status in PROXY_ERRORS else None


def judge_command(data: bytes, expect: str | None) -> str | None:
    answer = data.decode("latin-1").strip()
    if not data:
        return "no answer"
    return None if expect is None or answer == expect else f"answered {answer[:40]!r}, expected {expect!r}"


# --- polling (pure: the clock, the sleep, gathering and probing are passed in) ------------------------------

@dataclass
class Outcome:
    ready: bool
    elapsed: float
    rounds: int
    problems: list[str] = field(default_factory=list)
    listeners: int = 0  # SLB listeners checked (in the last round)
    pods: int = 0


def poll(gather: Callable[[], Snapshot], probe: Callable[[Sequence[Probe]], Mapping[Probe, str | None]],
         timeout: float = DEFAULT_TIMEOUT, interval: float = POLL_INTERVAL,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Rounds of gather → plan → probe until nothing is missing in one round, or ``timeout`` has passed (then the
    last round's problems). A round that starts before the deadline finishes, so the wait may overrun by a
    probe's timeout."""
    start = clock()
    rounds = 0
    while True:
        rounds += 1
        snapshot = gather()
        checks = plan(snapshot)
        answers = probe([p for check in checks if not check.problem for p in check.probes])
        problems = verdict(checks, answers)
        elapsed = clock() - start
        listeners = sum(len(s.listeners) for s in snapshot.slbs)
        if not problems or elapsed >= timeout:
            return Outcome(not problems, elapsed, rounds, problems, listeners, len(snapshot.pods))
        sleep(max(0.0, min(interval, timeout - elapsed)))


def message(lab: str, outcome: Outcome, timeout: float) -> str:
    if outcome.ready:
        return (f"lab {lab} ready after {outcome.elapsed:.1f} s: {outcome.listeners} SLB listener(s) with a healthy "
                f"backend and a request answered, {outcome.pods} pod(s) answering")
    lines = [f"lab {lab} not ready after {outcome.elapsed:.1f} s (timeout {timeout:g} s); "
             f"{len(outcome.problems)} thing(s) not ready:"]
    lines += [f"  {problem}" for problem in outcome.problems]
    lines.append(f"  see `acklab status --lab {lab}` and `acklab logs --lab {lab}`; "
                 f"`acklab wait --lab {lab} --timeout S` waits longer")
    return "\n".join(lines)


# --- the kernel: gathering and probing --------------------------------------------------------------------------

@dataclass(frozen=True)
class LabContext:
    """What stays put while waiting: the request clients, ECS names by instance id, node namespaces by name."""

    internet: tuple[Client, ...]
    vpc_clients: Mapping[str, tuple[Client, ...]]
    ecs_names: Mapping[str, str]
    node_netns: Mapping[str, str]


def lab_context(lab: str) -> LabContext:
    view = read_lab(lab)
    if not (view.vpcs or view.slbs or view.pods):
        raise LookupError(f"lab {lab}: nothing on this machine to wait for; run `make up LAB={lab}` first")
    internet = slb_realize.InternetSegment(lab).namespace.name
    vpc_of = {vsw.id: vpc.id for vpc in view.vpcs for vsw in vpc.vswitches}
    vpc_clients: dict[str, list[Client]] = {}
    for ecs in view.ecs:
        vpc_clients.setdefault(vpc_of.get(ecs.vswitch_id, ""), []).append(Client(ecs.netns, ecs.private_ip, ecs.name))
    return LabContext(tuple(Client(internet, str(source), "internet") for source in INTERNET_CLIENTS),
                      {vpc: tuple(clients) for vpc, clients in vpc_clients.items()},
                      {ecs.id: ecs.name for ecs in view.ecs}, {ecs.name: ecs.netns for ecs in view.ecs})


def gather(lab: str, context: LabContext) -> Snapshot:
    return Snapshot(lab, tuple(_slbs(lab, context)), tuple(_pods(lab, context)), context.internet,
                    context.vpc_clients)


def _slbs(lab: str, context: LabContext) -> Iterable[Slb]:
    for instance in slb_realize.slbs(lab):
        state = instance.read()
        if state is None:
            continue
        health = instance.backend_health()
        listeners = []
        for listener, _ in slb_realize.load_listeners(lab, instance.lb_id):
            backends = tuple(Backend(_server(b, context.ecs_names), b["status"], b.get("haproxy_status", ""))
                             for b in health.get(listener.listener_id, []))
            acl = slb_realize.acl(lab, listener.acl_id) if listener.acl_id else None
            listeners.append(Listener(listener.protocol, listener.frontend_port, backends, listener.health.uri,
                                      listener.health.domain, listener.acl_type,
                                      tuple(sorted((acl or {}).get("entries", {}))),
                                      listener.forward_port is not None))
        yield Slb(instance.lb_id, state.name, state.address, state.address_type, state.vpc_id,
                  instance.running(), tuple(listeners))


def _server(backend: Mapping[str, object], ecs_names: Mapping[str, str]) -> str:
    """``ecs-1 i-4d258272:30001``: the ECS's name (when it is one), its id and the port HAProxy checks."""
    server_id = str(backend["server_id"])
    return f"{ecs_names.get(server_id, '')} {server_id}:{backend['port']}".strip()


def _pods(lab: str, context: LabContext) -> Iterable[PodFacts]:
    for record in load_records(lab).values():
        pod = record.pod
        node = record.node_netns or context.node_netns.get(record.node, "")
        yield PodFacts(pod.key, pod.name, record.ip, Namespace(record.netns).exists(),
                       node if node and Namespace(node).exists() else record.netns,
                       tuple((p.port, p.protocol) for p in pod.ports), is_controller_pod(pod.namespace, pod.labels))


def run_probes(probes: Sequence[Probe], timeout: float = PROBE_TIMEOUT) -> dict[Probe, str | None]:
    """Every probe at once (a round lasts as long as the slowest): probe → None if answered, else why not."""
    if not probes:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(probes))) as pool:
        return dict(zip(probes, pool.map(lambda p: ask(p, timeout), probes), strict=True))


def ask(probe: Probe, timeout: float = PROBE_TIMEOUT) -> str | None:
    kind = socket.SOCK_DGRAM if probe.kind == "udp" else socket.SOCK_STREAM
    try:
        sock = Namespace(probe.netns).socket(socket.AF_INET, kind)
    except OSError as exc:
        return f"no namespace {probe.netns}: {exc.strerror or exc}"
    try:
        sock.settimeout(timeout)
        if probe.source:
            sock.bind((probe.source, 0))
        sock.connect((probe.address, probe.port))  # UDP too: an ICMP port unreachable then fails the recv at once
        if probe.kind == "udp":
            sock.send(b"hostname")
            return judge_command(sock.recv(2048), probe.expect)
        return _converse(sock, probe)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        sock.close()


def _converse(sock: socket.socket, probe: Probe) -> str | None:
    if probe.kind == "connect":
        return None
    if probe.kind == "command":
        sock.sendall(b"hostname\n")
        return judge_command(_read(sock), probe.expect)
    if probe.kind == "https":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # is it served, not is it trusted
        sock = context.wrap_socket(sock, server_hostname=probe.host if not _is_address(probe.host) else None)
    request = f"GET {probe.path} HTTP/1.1\r\nHost: {probe.host}\r\nConnection: close\r\n\r\n".encode()
    sock.sendall(request)
    if probe.kind in ("http", "https"):
        return judge_http(_read(sock))
    # A layer-4 listener: HAProxy accepts before it has a backend, and holds the connection while a backend that
    # is marked up but drops packets times out, so only bytes back (an HTTP answer, an error, a greeting) count.
    return None if sock.recv(4096) else "connection closed without an answer"


def _read(sock: socket.socket, limit: int = 65536) -> bytes:
    """What the peer sends until it closes (every answer here ends with a close), or what came before a timeout."""
    data = b""
    with contextlib.suppress(TimeoutError):
        while len(data) < limit and (chunk := sock.recv(4096)):
            data += chunk
    return data


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def wait(lab: str, timeout: float = DEFAULT_TIMEOUT, interval: float = POLL_INTERVAL) -> Outcome:
    context = lab_context(lab)
    return poll(lambda: gather(lab, context), run_probes, timeout, interval)
