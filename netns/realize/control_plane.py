"""ACK's managed control plane → etcd, kube-apiserver, kube-controller-manager and kube-scheduler in the namespace
``acklab-<lab>-<cluster id>``, and a relay on the host's loopback for kubectl (as kind has).

Network: the namespace's ``eth0`` is a veth whose other end, named by the cluster id, is a port of a vSwitch
bridge in the VPC router, with ``ip=<address> cluster=<id>`` on its alias, so address allocation counts the
address as used and refresh and status can read it back (the way intranet SLBs are plugged). The API server
binds 0.0.0.0:6443 in the namespace and advertises that address: the ``default/kubernetes`` endpoints point to
it. Without a vSwitch the namespace has its loopback alone, and the API server advertises 127.0.0.1 with
``--endpoint-reconciler-type=none`` (it refuses loopback endpoints). etcd serves on the namespace's loopback.

Host: a relay process (netns/kernel/forward.py) runs in the namespace with a listening socket made in the root
namespace on 127.0.0.1 (port free at first start, then kept): the only thing a lab adds to the root namespace.
The lab's kubeconfig (``/run/acklab/<lab>/kubeconfig``, context ``acklab-<lab>``) points at it.

Processes: started detached (own session) under ``nsenter --net``, output in ``<component>.log``, PID in
``<component>.pid`` under ``/run/acklab/<lab>/cp/<cluster id>/``; one counts as running only when that PID's
network namespace is the control plane's and its command line names this control plane's files (a stale
pidfile never matches another process). ``ensure`` is idempotent: it starts what is not running (also after a
``kill -9``), restarts what runs with another command line, and leaves the rest alone. Certificates and the
service-account key are minted once per cluster (keys mode 600). Removing the namespace ends every process in
it; ``clean`` also ends those whose namespace vanished behind the lab's back (found by command line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from acklab.k8s import certs
from netns.kernel import forward, process
from netns.kernel.files import read_json, tail, write_atomic, write_if_changed
from netns.kernel.link import (
    Veth,
    addresses,
    ensure_address,
    ensure_default_route,
    ensure_mac,
    remove_link,
    stable_mac,
)
from netns.kernel.namespace import Namespace, end_processes, list_namespaces
from netns.model import addressing
from netns.model import control_plane as model
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import check_lab, is_cluster_id, mark, netns_name
from netns.realize import LOCK_DIR, file_lock, format_alias, lab_lock, state_dir
from netns.realize.eni import claim
from netns.realize.vpc import VSwitch, find_vswitch, routers

IFNAME = "eth0"
FORWARDER = "forwarder"
FORWARD_MARKER = "netns.kernel.forward"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
# cluster add-ons started beside the components with their files under the cluster's folder (CoreDNS:
# acklab/k8s/cluster_dns.py): found and ended with them by command line
ADDONS = ("coredns",)
DEFAULT_TIMEOUT = 120.0
POLL = 0.1

KEEP = object()  # ControlPlane.ensure: the pod network the cluster has (a new one: Terway's)


def binary(name: str) -> str:
    """A Kubernetes binary: the one scripts/build-kube.sh linked beside this Python (``.venv/bin``), else PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise LabError(f"{name} is not installed: scripts/build-kube.sh builds it into .venv/bin (make up runs it)")
    return found


def clusters_dir(lab: str) -> Path:
    return state_dir(lab) / "cp"


def kubeconfig_path(lab: str) -> Path:
    """The lab's kubeconfig for the host (``acklab kubeconfig`` prints it); it exists while the lab's control
    plane does."""
    return state_dir(check_lab(lab)) / "kubeconfig"


def kubectl_apply(lab: str, text: str, what: str, kubeconfig: Path | None = None) -> str:
    """``kubectl apply`` of ``text`` as the lab's admin (its kubeconfig on the host, or ``kubeconfig``: an admin's
    with another server, as a node inside the VPC reaches it); kubectl's output (a line per object: created,
    configured or unchanged). ``what`` names the manifests in the error."""
    config = kubeconfig or kubeconfig_path(lab)
    result = subprocess.run([binary("kubectl"), "--kubeconfig", str(config), "apply", "-f", "-"],
                            input=text, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise LabError(f"lab {lab}: kubectl apply of {what} failed: {result.stderr.strip()}")
    return result.stdout


def control_planes(lab: str) -> list[ControlPlane]:
    """Every control plane of the lab: by namespace, or by state folder when the namespace is gone."""
    ids = {ns.name[len(mark(lab)):] for ns in list_namespaces(mark(lab) + "c")}
    folder = clusters_dir(lab)
    if folder.is_dir():
        ids |= {path.name for path in folder.iterdir() if path.is_dir()}
    return [ControlPlane(lab, cid) for cid in sorted(ids) if is_cluster_id(cid)]


@dataclass(frozen=True)
class ControlPlaneState:
    cluster_id: str
    namespace: str
    address: str  # the API server's advertised address (127.0.0.1 without a vSwitch)
    vswitch_id: str | None
    host_port: int | None  # the relay's port on the host's 127.0.0.1
    kubeconfig: str
    pids: dict[str, int | None]
    started: dict[str, float] = field(default_factory=dict)  # component → seconds from start to ready, this call


@dataclass(frozen=True)
class ControlPlane:
    lab: str
    cluster_id: str

    @property
    def namespace(self) -> Namespace:
        return Namespace(netns_name(self.lab, self.cluster_id))

    @property
    def root(self) -> Path:
        return clusters_dir(self.lab) / self.cluster_id

    @property
    def layout(self) -> model.Layout:
        return model.Layout(self.root)

    @property
    def resource(self) -> str:
        return f"control plane {self.cluster_id}"

    def plan(self, address: str | None) -> model.ControlPlanePlan:
        endpoints = tuple(read_json(self.layout.endpoints) or ())
        return model.ControlPlanePlan(self.lab, self.cluster_id, self.root, address, pod_network=self.pod_network(),
                                      endpoints=endpoints)

    def set_endpoints(self, addresses: tuple[str, ...]) -> None:
        """The addresses besides its own that clients reach the API server at (its SLB's): its serving certificate
        names them from the next ``ensure`` (which re-mints it; the API server reloads it from the file)."""
        write_atomic(self.layout.endpoints, json.dumps(list(addresses)))

    def pod_network(self) -> model.PodNetwork | None:
        """Flannel's pod CIDR and node mask, as the cluster was made with; None: Terway's (no node IPAM)."""
        return model.PodNetwork.from_dict(read_json(self.layout.pod_network))

    def _settle_pod_network(self, wanted: model.PodNetwork | object | None) -> None:
        """A new cluster keeps ``wanted`` (a PodNetwork: Flannel's; None: Terway's, no node IPAM); an existing one
        keeps what it was made with: asking for another is refused (ACK does not change a cluster's network
        plug-in or pod CIDR either). ``KEEP`` asks for nothing (a caller that does not know)."""
        if wanted is KEEP:
            return
        assert wanted is None or isinstance(wanted, model.PodNetwork)
        current = self.pod_network()
        if current == wanted:
            return
        if self.layout.cert("ca").exists():  # the cluster exists
            def told(network: model.PodNetwork | None) -> str:
                if network is None:
                    return "no pod CIDR (Terway)"
                return f"pod CIDR {network.cluster_cidr} /{network.node_cidr_mask}"

            raise ValidationError(self.resource, "pod_cidr", f"{told(wanted)} asked for, but the cluster was made "
                                  f"with {told(current)}; it cannot change")
        if wanted is None:
            self.layout.pod_network.unlink(missing_ok=True)
        else:
            write_atomic(self.layout.pod_network, json.dumps(wanted.to_dict(), sort_keys=True))

    # -- ensure / read / delete --

    def ensure(self, vswitch: VSwitch | None = None, address: str | None = None,
               timeout: float = DEFAULT_TIMEOUT, pod_network: model.PodNetwork | object | None = KEEP
               ) -> ControlPlaneState:
        """Bring the control plane to running and ready, whatever part of it exists; return its state.

        ``vswitch`` (and optionally ``address`` in it) is where the namespace is plugged when it is made; an
        existing plug is kept. ``pod_network`` (Flannel's, None for Terway's, ``KEEP`` by default: whatever the
        cluster has) is fixed when the cluster is made. Raises LabError
        (with the end of the component's log) when a component dies or is not ready within ``timeout`` seconds.
        """
        self._check_alone()
        for name in BINARIES:
            binary(name)  # missing binaries are reported before anything is made
        deadline = time.monotonic() + timeout
        with file_lock(self.root / "lock"):
            os.chmod(self.root, 0o700)
            self._settle_pod_network(pod_network)
            self.namespace.create()
            self._end_strays()
            advertised = self._ensure_network(vswitch, address)
            plan = self.plan(advertised)
            self._ensure_pki(plan)
            self._write_component_kubeconfigs(plan)
            started = self._ensure_processes(plan, deadline)
            port, forwarder_started = self._ensure_forwarder()
            if forwarder_started is not None:
                started[FORWARDER] = forwarder_started
            self._write_kubeconfig(plan, port)
            self._wait_host(port, deadline)
        state = self.read()
        assert state is not None
        return dataclasses.replace(state, started=started)

    def read(self) -> ControlPlaneState | None:
        """What runs and where, read from the kernel, /proc and the state folder; None without a namespace."""
        if not self.namespace.exists():
            return None
        address = self._address()
        return ControlPlaneState(
            self.cluster_id, self.namespace.name, address or model.LOOPBACK, self._vswitch_id(),
            self._saved_port(), str(kubeconfig_path(self.lab)),
            {name: self._pid(name) for name in (*BINARIES, FORWARDER)})

    def delete(self) -> None:
        """Stop everything and remove the namespace, its vSwitch port, its files and merged kubeconfig entries."""
        # nothing needs a graceful stop (etcd's data goes too); the API server's takes seconds
        end_processes(self.namespace.pids(), grace=0.5)
        with lab_lock(self.lab):
            self._unplug()  # the address is free again at once
            self.namespace.remove()  # ends every process inside, the relay too, by PID
        end_leftovers(self.lab, self.cluster_id)
        self._unmerge_all()
        shutil.rmtree(self.root, ignore_errors=True)
        kubeconfig_path(self.lab).unlink(missing_ok=True)

    def rss(self) -> dict[str, int]:
        """Resident memory of each running component, in bytes."""
        found = {}
        for name in (*BINARIES, FORWARDER):
            pid = self._pid(name)
            if pid is not None:
                found[name] = _rss(pid)
        return found

    # -- the lab's kubeconfig in the user's --

    def merge_into(self, target: Path, set_current: bool = True) -> None:
        """Add the lab's cluster, user and context to the kubeconfig ``target`` (as ``kind`` does), on request
        only; remembered, so that a new port is merged again and ``delete``/``clean`` take the entries out."""
        ours = yaml.safe_load(kubeconfig_path(self.lab).read_text())
        _rewrite_yaml(target, lambda base: model.merge_kubeconfig(base, ours, set_current))
        merged = set(self._merged_targets()) | {str(Path(target).resolve())}
        write_atomic(self.layout.merged, json.dumps(sorted(merged)), 0o600)

    def _merged_targets(self) -> list[str]:
        return list(read_json(self.layout.merged) or [])

    def _unmerge_all(self) -> None:
        name = model.context_name(self.lab)
        for target in self._merged_targets():
            with contextlib.suppress(OSError, yaml.YAMLError):
                _rewrite_yaml(Path(target), lambda base: model.unmerge_kubeconfig(base or {}, name))

    # -- network --

    def _check_alone(self) -> None:
        others = [cp.cluster_id for cp in control_planes(self.lab) if cp.cluster_id != self.cluster_id]
        if others:
            raise ValidationError(self.resource, "lab", f"lab {self.lab} already has control plane {others[0]}; "
                                                        "a lab has one")

    def _ensure_network(self, vswitch: VSwitch | None, address: str | None) -> str | None:
        """Plug the namespace into ``vswitch`` if asked and not yet plugged; return the address it has.

        The plug is remembered: an ``ensure`` without arguments after the namespace was lost plugs it into the
        same vSwitch with the same address again, so certificates, endpoints and kubeconfigs stay true.
        """
        current = self._address()
        if current is not None:
            return current
        if vswitch is None:
            saved = self._saved_plug()
            if saved is None:
                return None
            vswitch, address = find_vswitch(self.lab, saved["vswitch"]), saved["address"]
        with lab_lock(self.lab):
            self._unplug()  # a port left by a namespace deleted behind the lab's back: its veth outlived it
            net = vswitch.cidr()
            if net is None:
                raise ValidationError(self.resource, "vswitch_id", f"vSwitch {vswitch.vswitch_id} has no address block")
            (addr,) = claim(vswitch, self.resource, net, [("address", address)] if address else [],
                            0 if address else 1)
            # named by the cluster id, not eni-*: the source check and security groups are for guests' ENIs
            Veth(vswitch.router.namespace, self.cluster_id, self.namespace, IFNAME).ensure(
                alias=format_alias(ip=str(addr), cluster=self.cluster_id), master=vswitch.vswitch_id)
            with self.namespace.ipr() as ipr:
                # the same MAC every time: a namespace made again (lost behind the lab's back) keeps the nodes'
                # ARP entries for the API server and CoreDNS true
                ensure_mac(ipr, IFNAME, stable_mac(f"{self.lab}/{self.cluster_id}"))
                ensure_address(ipr, IFNAME, ipaddress.IPv4Interface(f"{addr}/{net.prefixlen}"))
                ensure_default_route(ipr, addressing.gateway(net))
        write_atomic(self.layout.plug, json.dumps({"vswitch": vswitch.vswitch_id, "address": str(addr)}))
        return str(addr)

    def _saved_plug(self) -> dict[str, str] | None:
        plug = read_json(self.layout.plug)
        return dict(plug) if isinstance(plug, dict) else None

    def _unplug(self) -> None:
        """Remove the cluster's port from whichever vSwitch it is on (both ends of the veth go)."""
        for router in routers(self.lab):
            if router.port_facts(self.cluster_id, with_vswitch=False) is not None:
                remove_link(router.namespace, self.cluster_id)

    def _address(self) -> str | None:
        with self.namespace.ipr() as ipr:
            found = addresses(ipr, IFNAME)
        return str(found[0].ip) if found else None

    def _vswitch_id(self) -> str | None:
        for router in routers(self.lab):
            facts = router.port_facts(self.cluster_id)
            if facts is not None:
                return facts.get("vswitch")
        return None

    # -- certificates and kubeconfigs --

    def _ensure_pki(self, plan: model.ControlPlanePlan) -> None:
        """Mint what is missing: each CA (a new CA re-mints what it signs), then each certificate whose SANs are
        not the planned ones (the advertised address changed), then the service-account key pair."""
        lay = plan.layout
        lay.pki.mkdir(parents=True, exist_ok=True)
        os.chmod(lay.pki, 0o700)
        authorities: dict[str, certs.Ca] = {}
        for name, common_name in plan.authorities().items():
            if lay.cert(name).exists() and lay.key(name).exists():
                continue
            authorities[name] = certs.mint_authority(common_name)
            write_atomic(lay.key(name), certs.private_key_pem(authorities[name].key), 0o600)
            write_atomic(lay.cert(name), authorities[name].cert_pem, 0o644)
            for spec in plan.certificates():
                if spec.issuer == name:
                    lay.cert(spec.name).unlink(missing_ok=True)
        for spec in plan.certificates():
            cert = lay.cert(spec.name)
            if cert.exists() and lay.key(spec.name).exists() and \
                    certs.certificate_hosts(cert.read_text()) == spec.hosts:
                continue
            if spec.issuer not in authorities:
                authorities[spec.issuer] = certs.load_authority(lay.cert(spec.issuer).read_text(),
                                                                lay.key(spec.issuer).read_text())
            cert_pem, key_pem = certs.mint_leaf(authorities[spec.issuer], spec.common_name, spec.organizations,
                                                spec.hosts, server=spec.server, client=spec.client)
            write_atomic(lay.key(spec.name), key_pem, 0o600)
            write_atomic(cert, cert_pem, 0o644)
        if not (lay.sa_key.exists() and lay.sa_pub.exists()):
            private, public = certs.mint_signing_key()
            write_atomic(lay.sa_key, private, 0o600)
            write_atomic(lay.sa_pub, public, 0o644)

    def _kubeconfig(self, plan: model.ControlPlanePlan, identity: str, server: str) -> str:
        lay = plan.layout
        config = model.render_kubeconfig(model.context_name(self.lab), server, lay.cert("ca").read_text(),
                                         lay.cert(identity).read_text(), lay.key(identity).read_text())
        return yaml.safe_dump(config, sort_keys=False)

    def _write_component_kubeconfigs(self, plan: model.ControlPlanePlan) -> None:
        for identity in ("controller-manager", "scheduler"):
            write_if_changed(plan.layout.kubeconfig(identity), self._kubeconfig(plan, identity, plan.local_server))

    def _write_kubeconfig(self, plan: model.ControlPlanePlan, port: int) -> None:
        text = self._kubeconfig(plan, "admin", f"https://{model.LOOPBACK}:{port}")
        if write_if_changed(kubeconfig_path(self.lab), text):
            for target in self._merged_targets():  # a new port (or CA) reaches the user's kubeconfig too
                with contextlib.suppress(OSError, yaml.YAMLError):
                    self.merge_into(Path(target), set_current=False)

    def client_kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> str:
        """A kubeconfig for a client inside the lab (a node agent ``system:node:<name>`` in ``system:nodes``,
        ``system:kube-proxy``, a controller): a client certificate minted once per user and kept with the PKI,
        the server at the advertised vSwitch address (what nodes reach in the VPC), the lab's CA."""
        address = self._address()
        if address is None:
            raise LabError(f"{self.resource}: no vSwitch address: clients inside the lab cannot reach it")
        lay = self.layout
        name = "client-" + "".join(c if c.isalnum() else "-" for c in user)
        with file_lock(self.root / "clients.lock"):  # two agents asking at once mint one certificate, not two
            if not (lay.cert(name).exists() and lay.key(name).exists()):
                ca = certs.load_authority(lay.cert("ca").read_text(), lay.key("ca").read_text())
                cert_pem, key_pem = certs.mint_leaf(ca, user, groups, (), server=False, client=True)
                write_atomic(lay.key(name), key_pem, 0o600)
                write_atomic(lay.cert(name), cert_pem, 0o644)
        config = model.render_kubeconfig(model.context_name(self.lab), f"https://{address}:{model.APISERVER_PORT}",
                                         lay.cert("ca").read_text(), lay.cert(name).read_text(),
                                         lay.key(name).read_text())
        return yaml.safe_dump(config, sort_keys=False)

    # -- processes --

    def _ensure_processes(self, plan: model.ControlPlanePlan, deadline: float) -> dict[str, float]:
        """Start, in order, each component that does not run with its planned command line; wait for each to be
        ready before the next (the API server needs etcd, the others need the API server)."""
        started: dict[str, float] = {}
        waits: dict[str, Callable[[], bool]] = {
            "etcd": lambda: self._probe(model.ETCD_CLIENT_PORT, "/health", None) == 200,
            "kube-apiserver": lambda: self._probe(model.APISERVER_PORT, "/readyz", self._admin_tls()) == 200,
            "kube-controller-manager": lambda: self._probe(model.CONTROLLER_MANAGER_PORT, "/healthz",
                                                           _unverified()) == 200,
            "kube-scheduler": lambda: self._probe(model.SCHEDULER_PORT, "/healthz", _unverified()) == 200,
        }
        for component in plan.components():
            wanted = component.argv(binary(component.binary))
            pid = self._pid(component.name)
            if pid is not None and process.cmdline(pid) != wanted:
                end_processes([pid])  # its flags changed (a new address): restart it
                pid = None
            begin = time.monotonic()
            if pid is None:
                self._spawn(component.name, wanted)
            self._wait(component.name, waits[component.name], deadline)
            if pid is None:
                started[component.name] = round(time.monotonic() - begin, 2)
        return started

    def _spawn(self, name: str, argv: Sequence[str], pass_fds: Sequence[int] = ()) -> int:
        """Start ``argv`` detached inside the namespace; its PID goes to the pidfile.

        ``nsenter --net`` enters the network namespace only and executes the command in its own place, so the
        PID is the component's. A thread reaps it when it ends, so a long-lived caller keeps no zombie.
        """
        return process.spawn_in(self.namespace.name, argv, self.layout.pidfile(name), self.layout.log(name),
                                self.root, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, pass_fds)

    def _pid(self, name: str) -> int | None:
        """The component's PID if it runs in this namespace with a command line naming this control plane's
        files (a pidfile left by a dead process never matches a process that reused its PID)."""
        return process.tracked_pid(self.layout.pidfile(name), self.namespace.inode(),
                                   lambda argv: _ours(argv, self.root))

    def _end_strays(self) -> None:
        """SIGKILL this cluster's processes that run outside its namespace: their namespace was deleted behind
        the lab's back and made anew. Left alone, an old etcd would hold the data folder's lock and an old relay
        the host port."""
        inode = self.namespace.inode()
        process.kill_all([pid for pid in _processes_of(self.root) if process.netns_inode(pid) not in (None, inode)])

    def _wait(self, name: str, ready: Callable[[], bool], deadline: float) -> None:
        while True:
            if ready():
                return
            if self._pid(name) is None:
                raise LabError(f"{self.resource}: {name} exited; its log ends:\n{tail(self.layout.log(name), 2000)}")
            if time.monotonic() > deadline:
                raise LabError(f"{self.resource}: {name} not ready in time; its log ends:\n"
                               f"{tail(self.layout.log(name), 2000)}")
            time.sleep(POLL)

    def _probe(self, port: int, path: str, tls: ssl.SSLContext | None) -> int | None:
        """The HTTP status of ``GET path`` on the namespace's loopback (None: no answer)."""
        return http_status(lambda: self.namespace.socket(), model.LOOPBACK, port, path, tls)

    def _admin_tls(self) -> ssl.SSLContext:
        """TLS as kubectl speaks it with the lab's kubeconfig: the cluster CA verifies, the admin certificate."""
        lay = self.layout
        context = ssl.create_default_context(cafile=str(lay.cert("ca")))
        context.load_cert_chain(str(lay.cert("admin")), str(lay.key("admin")))
        return context

    # -- the host's relay --

    def _saved_port(self) -> int | None:
        port = (read_json(self.layout.forward_state) or {}).get("port")
        return int(port) if isinstance(port, int) else None

    def _ensure_forwarder(self) -> tuple[int, float | None]:
        """The relay on the host's 127.0.0.1 (its old port when free); return the port and, when it was
        started now, how long that took."""
        port = self._saved_port()
        if port is not None and self._pid(FORWARDER) is not None:
            return port, None
        begin = time.monotonic()
        # made in the caller's namespace, the host's (acklab, the provider and the tests run there): the one socket
        # a lab adds to it
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with listening:
            port = forward.listener(listening, model.LOOPBACK, port or 0)
            fd = listening.fileno()
            self._spawn(FORWARDER, forward.argv(fd, (model.LOOPBACK, model.APISERVER_PORT), str(self.root)),
                        pass_fds=(fd,))
        write_atomic(self.layout.forward_state, json.dumps({"port": port}))
        return port, round(time.monotonic() - begin, 2)

    def _wait_host(self, port: int, deadline: float) -> None:
        """kubectl's path works: the relay answers on the host's loopback and the API server behind it."""
        tls = self._admin_tls()

        def ready() -> bool:
            return http_status(socket.socket, model.LOOPBACK, port, "/readyz", tls) == 200

        self._wait(FORWARDER, ready, deadline)


def merge_kubeconfig(lab: str, target: Path, set_current: bool = True) -> None:
    """Merge the lab's kubeconfig into ``target`` (e.g. ``~/.kube/config``), only when the user asks for it."""
    if not kubeconfig_path(lab).exists():
        raise NotFoundError(f"lab {lab} has no control plane (no {kubeconfig_path(lab)})")
    control_planes(lab)[0].merge_into(target, set_current)


# --- clean-up of a whole lab ---------------------------------------------------------------------------------

def end_leftovers(lab: str, cluster_id: str | None = None) -> list[int]:
    """SIGKILL the lab's control-plane processes that outlived their namespace (deleted behind the lab's back:
    they then keep an anonymous namespace alive that no name leads to), found by command line: a component's
    binary or the relay, with an argument under the lab's (or one cluster's) control-plane folder. The relay
    counts too, since its listening socket is in the host's namespace."""
    return process.kill_all(_processes_of(clusters_dir(lab) / cluster_id if cluster_id else clusters_dir(lab)))


def clean(lab: str) -> list[str]:
    """``acklab clean``'s share: leftover processes and merged kubeconfig entries (the namespace and the state
    folder go with the rest of the lab)."""
    removed = [f"control-plane pid {pid}" for pid in end_leftovers(lab)]
    for cp in control_planes(lab):
        targets = cp._merged_targets()
        cp._unmerge_all()
        removed += [f"{target} context {model.context_name(lab)}" for target in targets]
    return removed


# --- helpers ---------------------------------------------------------------------------------------------------

def _processes_of(folder: Path) -> list[int]:
    """PIDs of the control-plane processes of ``folder`` (one scan of /proc)."""
    return process.find(lambda argv: _ours(argv, folder))


def _ours(argv: list[str], folder: Path) -> bool:
    """A control-plane process of ``folder``: one of the binaries (or the relay) naming a file under it."""
    prefix = f"{folder}/"
    is_component = os.path.basename(argv[0]) in BINARIES + ADDONS or FORWARD_MARKER in argv
    return is_component and any(prefix in arg or arg == str(folder) for arg in argv[1:])




def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _unverified() -> ssl.SSLContext:
    """For the controller-manager's and scheduler's health endpoints: they serve self-signed certificates."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http_status(make_socket: Callable[[], socket.socket], host: str, port: int, path: str,
                 tls: ssl.SSLContext | None, timeout: float = 2.0) -> int | None:
    """``GET path`` over a socket from ``make_socket`` (made in the namespace to probe from); the status code."""
    sock = make_socket()
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(1024)
            if not chunk:
                return None
            head += chunk
        return int(head.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None
    finally:
        sock.close()


def _rewrite_yaml(path: Path, change: Callable[[Any], dict[str, Any]]) -> None:
    """Read a YAML file (missing or empty: None), change it, write it back whole, keeping its mode (600 new)."""
    path = Path(path)
    with file_lock(Path(LOCK_DIR) / "kubeconfig-merge.lock"):  # labs merging into one file at once
        try:
            text = path.read_text()
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            text, mode = "", 0o600
        base = yaml.safe_load(text) if text.strip() else None
        write_atomic(path, yaml.safe_dump(change(base), sort_keys=False), mode)
