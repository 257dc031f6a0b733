"""SLB → a namespace ``acklab-<lab>-lb-<hex>`` on a vSwitch or the lab's internet: HAProxy (master-worker) for its
layer-7 listeners; its layer-4 listeners (tcp, udp) forward in the kernel, in the VPC router (``slb_l4``).

Intranet: ``eth0`` of the SLB namespace is a veth whose other end, ``lb-<hex>``, is a port of the vSwitch bridge
in the VPC router; its alias carries ``ip=<address> slb=<id>``, and ENI allocation reads the ports' aliases, so
the address counts as used in the vSwitch.
Its clients' flows stay on the vSwitch; what the SLB itself sends to backends (HAProxy's requests, health checks)
leaves from a 100.64 address, as Alibaba's do: a leg ``eth1`` into the VPC router (router end ``hc-<hex>``) that
only packets from that address take (``ip rule from <it> lookup 100``).

Internet: ``eth0`` sits on the bridge of the lab's sealed internet namespace ``acklab-<lab>-internet``
(203.0.113.0/24, never linked to the host), where clients live. To reach its backends the SLB gets a second
leg, ``eth1``, a veth into the backends' VPC router (router end ``lb-<hex>``) on a /30 of Alibaba's SLB range
100.64.0.0/10, with the VPC's block routed over it; backends see the SLB's 100.64 address, as on Alibaba. The
leg is made when the first backend is known (an SLB's backends are in one VPC). No default route: the internet
segment only knows its own /24, the SLB namespace only that /24 and the VPC's block.

What has no kernel object — listeners, backend servers, server groups, ACLs, certificates — is JSON under
``/run/acklab/<lab>/slb/``. Every change re-renders the SLB's kernel rules (``slb_l4``: a table load only when the
rules change, map elements otherwise) and its HAProxy configuration (``netns/model/slb.py``), checks that with
``haproxy -c``, and starts HAProxy or reloads its master (SIGUSR2: the new worker takes over the listening sockets,
the old one finishes its connections), saving health states across the reload.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netns.kernel import process
from netns.kernel.files import read_json, write_atomic, write_json
from netns.kernel.link import (
    Bridge,
    Veth,
    addresses,
    ensure_address,
    ensure_default_route,
    index_of,
    remove_link,
    unless_exists,
)
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model import addressing
from netns.model import eip as eip_model
from netns.model import slb as model
from netns.model import slb_l4 as l4
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import is_cluster_id, mark, netns_name
from netns.realize import alias_addresses, format_alias, lab_lock, parse_alias, slb_l4, state_dir
from netns.realize.eni import claim
from netns.realize.vpc import VpcRouter, VSwitch, routers

INTERNET_BRIDGE = "internet"
SLB_IFNAME = "eth0"
LEG_IFNAME = "eth1"
CHECK_LEG_TABLE = 100  # an intranet SLB namespace: the route of packets from its 100.64 address (and the rule's pref)


def check_leg_ifname(lb_id: str) -> str:
    """The router's end of an intranet SLB's 100.64 leg (``lb-1a2b`` → ``hc-1a2b``)."""
    return "hc-" + lb_id.removeprefix("lb-")


def haproxy_binary() -> str:
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


# --- API state: JSON files ---------------------------------------------------------------------------------

def slb_dir(lab: str) -> Path:
    return state_dir(lab) / "slb"


def _listener_path(lab: str, lb_id: str, protocol: str, port: int) -> Path:
    return slb_dir(lab) / "listeners" / f"{lb_id}_{protocol}_{port}.json"


def _group_path(lab: str, group_id: str) -> Path:
    return slb_dir(lab) / "groups" / f"{group_id}.json"


def _backends_path(lab: str, lb_id: str) -> Path:
    return slb_dir(lab) / "backends" / f"{lb_id}.json"


def _acl_path(lab: str, acl_id: str) -> Path:
    return slb_dir(lab) / "acls" / f"{acl_id}.json"


def _cert_path(lab: str, cert_id: str) -> Path:
    return slb_dir(lab) / "certs" / f"{cert_id}.pem"


def load_listeners(lab: str, lb_id: str) -> list[tuple[model.Listener, dict[str, Any]]]:
    folder = slb_dir(lab) / "listeners"
    found = []
    for path in sorted(folder.glob(f"{lb_id}_*.json")) if folder.exists() else ():
        args = read_json(path)
        if args is not None:
            found.append((model.parse_listener(f"slb.Listener {path.stem}", lb_id, args), args))
    return found


# --- kernel objects ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InternetSegment:
    """The lab's sealed internet: one namespace with a bridge; its own addresses are the clients'."""

    lab: str

    @property
    def namespace(self) -> Namespace:
        return Namespace(netns_name(self.lab, "internet"))

    def ensure(self) -> None:
        created = self.namespace.create()
        try:
            Bridge(self.namespace, INTERNET_BRIDGE).ensure(alias=format_alias(cidr=str(model.INTERNET)))
            with self.namespace.ipr() as ipr:
                for client in model.INTERNET_CLIENTS:
                    ensure_address(ipr, INTERNET_BRIDGE, ipaddress.IPv4Interface(f"{client}/24"))
        except Exception:
            if created:
                self.namespace.remove()
            raise

    def ports(self) -> dict[str, dict[str, str]]:
        if not self.namespace.exists():
            return {}
        with self.namespace.ipr() as ipr:
            index = index_of(ipr, INTERNET_BRIDGE)
            if index is None:
                return {}
            return {link.get("ifname"): parse_alias(link.get("IFLA_IFALIAS"))
                    for link in ipr.get_links() if link.get("IFLA_MASTER") == index}

    def used_addresses(self) -> set[ipaddress.IPv4Address]:
        return {ipaddress.IPv4Address(f["ip"]) for f in self.ports().values() if "ip" in f}

    def remove_if_unused(self) -> None:
        if self.namespace.exists() and not self.ports():
            self.namespace.remove()


@dataclass(frozen=True)
class SlbState:
    address: str
    address_type: str
    vswitch_id: str | None
    vpc_id: str | None  # intranet: its vSwitch's VPC; internet: the VPC of its leg, if any
    name: str


@dataclass(frozen=True)
class SlbInstance:
    lab: str
    lb_id: str

    @property
    def namespace(self) -> Namespace:
        return Namespace(netns_name(self.lab, self.lb_id))

    @property
    def runtime_dir(self) -> Path:
        return slb_dir(self.lab) / self.lb_id

    # -- create / read / delete --

    def create(self, address_type: str, vswitch: VSwitch | None, address: str | None, resource: str,
               name: str) -> str:
        """Make the namespace and its leg on the vSwitch or the internet; return the address."""
        with lab_lock(self.lab):
            try:
                if address_type == "intranet":
                    assert vswitch is not None
                    addr = self._plumb_intranet(vswitch, address, resource, name)
                else:
                    addr = self._plumb_internet(address, resource, name)
            except Exception:
                self._unplug()
                self.namespace.remove()
                if address_type == "internet":
                    InternetSegment(self.lab).remove_if_unused()
                raise
        return addr

    def _plumb_intranet(self, vswitch: VSwitch, address: str | None, resource: str, name: str) -> str:
        net = vswitch.cidr()
        if net is None:
            raise ValidationError(resource, "vswitch_id", f"vSwitch {vswitch.vswitch_id} has no address block")
        # The port's alias carries ip=<address>: ENI allocation reads the ports' aliases, so it counts as used.
        # The port is named lb-*, not eni-*: the source check and security groups are for guests' ENIs.
        (addr,) = claim(vswitch, resource, net, [("address", address)] if address else [], 0 if address else 1)
        self.namespace.create()
        Veth(vswitch.router.namespace, self.lb_id, self.namespace, SLB_IFNAME).ensure(
            alias=format_alias(ip=str(addr), slb=self.lb_id), master=vswitch.vswitch_id)
        self._label(address_type="intranet", vswitch=vswitch.vswitch_id, vpc=vswitch.router.vpc_id, name=name)
        with self.namespace.ipr() as ipr:
            ensure_address(ipr, SLB_IFNAME, ipaddress.IPv4Interface(f"{addr}/{net.prefixlen}"))
            ensure_default_route(ipr, addressing.gateway(net))
        self.ensure_check_leg(vswitch.router, resource)
        return str(addr)

    def _plumb_internet(self, address: str | None, resource: str, name: str) -> str:
        internet = InternetSegment(self.lab)
        internet.ensure()
        used = internet.used_addresses()
        addr = (model.check_internet_address(resource, address, used) if address
                else model.allocate_internet_address(used))
        self.namespace.create()
        Veth(internet.namespace, self.lb_id, self.namespace, SLB_IFNAME).ensure(
            alias=format_alias(ip=str(addr), slb=self.lb_id), master=INTERNET_BRIDGE)
        self._label(address_type="internet", name=name)
        with self.namespace.ipr() as ipr:
            ensure_address(ipr, SLB_IFNAME, ipaddress.IPv4Interface(f"{addr}/{model.INTERNET.prefixlen}"))
        return str(addr)

    def _label(self, **facts: str) -> None:
        """The SLB's own facts, on its eth0 alias (read back by refresh and ``acklab status``)."""
        Veth(self.namespace, SLB_IFNAME, self.namespace, SLB_IFNAME).set_alias(
            format_alias(slb=self.lb_id, **{k: "_".join(v.split()) or "-" for k, v in facts.items()}))

    def rename(self, name: str) -> None:
        with lab_lock(self.lab):  # read the facts and write them back whole: nothing else may change them between
            facts = {k: v for k, v in self._facts().items() if k != "slb"}
            self._label(**{**facts, "name": name})

    def _facts(self) -> dict[str, str]:
        with self.namespace.ipr() as ipr:
            index = index_of(ipr, SLB_IFNAME)
            if index is None:
                return {}
            return parse_alias(ipr.get_links(index)[0].get("IFLA_IFALIAS"))

    def read(self) -> SlbState | None:
        if not self.namespace.exists():
            return None
        with self.namespace.ipr() as ipr:
            found = addresses(ipr, SLB_IFNAME)
        if not found:
            return None
        facts = self._facts()
        vpc = facts.get("vpc") or self._leg_vpc()
        name = facts.get("name", "")
        return SlbState(str(found[0].ip), facts.get("address_type", ""), facts.get("vswitch"), vpc,
                        "" if name == "-" else name)

    def _leg_vpc(self) -> str | None:
        with self.namespace.ipr() as ipr:
            index = index_of(ipr, LEG_IFNAME)
            if index is None:
                return None
            return parse_alias(ipr.get_links(index)[0].get("IFLA_IFALIAS")).get("vpc")

    def _unplug(self) -> None:
        """Delete the SLB's ports in routers and on the internet."""
        for router in routers(self.lab):
            if router.port_facts(self.lb_id) is None:
                continue
            Veth(router.namespace, self.lb_id, self.namespace, SLB_IFNAME).remove()
        for router in routers(self.lab):
            remove_link(router.namespace, check_leg_ifname(self.lb_id))
        internet = InternetSegment(self.lab)
        Veth(internet.namespace, self.lb_id, self.namespace, SLB_IFNAME).remove()

    def delete(self) -> None:
        with lab_lock(self.lab):
            slb_l4.remove(self.runtime_dir, self.namespace, self.lb_id)  # its table lives in a router
            self.stop()
            self._unplug()
            self.namespace.remove()  # ends whatever still runs inside, by PID
            for pid in haproxy_pids(self.config_path):  # its namespace was deleted behind the lab's back
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            _backends_path(self.lab, self.lb_id).unlink(missing_ok=True)
            InternetSegment(self.lab).remove_if_unused()

    # -- the internet SLB's leg into a VPC --

    def ensure_leg(self, router: VpcRouter, resource: str) -> None:
        """An internet SLB's leg into its backends' VPC: the VPC's block is routed over it (no other way in)."""
        current = self._leg_vpc()
        if current == router.vpc_id:
            return
        if current is not None:
            raise ValidationError(resource, "server_id", f"backends of {self.lb_id} are in VPC {current}; "
                                  f"an SLB's backends are in one VPC, not also {router.vpc_id}")
        vpc_cidr, router_end, _ = self._plug_leg(router, self.lb_id, resource)
        with self.namespace.ipr() as ipr:
            unless_exists(ipr.route, "add", dst=str(vpc_cidr), gateway=str(router_end))

    def ensure_check_leg(self, router: VpcRouter, resource: str) -> None:
        """An intranet SLB's leg into its own VPC, for what Alibaba sends from 100.64.0.0/10 (health checks):
        only packets from the leg's address take it (a rule of their own); clients' traffic stays on the VIP's
        vSwitch. Its router end is ``hc-<hex>``: ``lb-<hex>`` is already the VIP's port on the vSwitch."""
        if self._leg_vpc() == router.vpc_id:
            return
        vpc_cidr, router_end, slb_end = self._plug_leg(router, check_leg_ifname(self.lb_id), resource)
        with self.namespace.ipr() as ipr:
            unless_exists(ipr.route, "add", dst=str(vpc_cidr), gateway=str(router_end), table=CHECK_LEG_TABLE)
            unless_exists(ipr.rule, "add", src=str(slb_end), src_len=32, table=CHECK_LEG_TABLE,
                          priority=CHECK_LEG_TABLE)

    def _plug_leg(self, router: VpcRouter, router_ifname: str, resource: str
                  ) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address, ipaddress.IPv4Address]:
        """The veth ``eth1`` ↔ ``router_ifname`` on a free /30 of 100.64.0.0/10: (VPC block, router end, SLB end).
        Call under the lab lock (the free index is read from the router's ports)."""
        vpc_cidr = router.cidr()
        if vpc_cidr is None:
            raise NotFoundError(f"{resource}: VPC {router.vpc_id} does not exist")
        with router.namespace.ipr() as ipr:
            used = [int(parse_alias(link.get("IFLA_IFALIAS"))["leg"]) for link in ipr.get_links()
                    if "leg=" in (link.get("IFLA_IFALIAS") or "")]
        leg = model.free_leg_index(used)
        net = model.leg_network(leg)
        router_end, slb_end = net.network_address + 1, net.network_address + 2
        Veth(router.namespace, router_ifname, self.namespace, LEG_IFNAME).ensure(
            alias=format_alias(leg=str(leg), slb=self.lb_id))
        Veth(self.namespace, LEG_IFNAME, self.namespace, LEG_IFNAME).set_alias(
            format_alias(vpc=router.vpc_id, slb=self.lb_id))
        with router.namespace.ipr() as ipr:
            ensure_address(ipr, router_ifname, ipaddress.IPv4Interface(f"{router_end}/30"))
        with self.namespace.ipr() as ipr:
            ensure_address(ipr, LEG_IFNAME, ipaddress.IPv4Interface(f"{slb_end}/30"))
        return vpc_cidr, router_end, slb_end

    def leg_address(self) -> str | None:
        """The SLB's 100.64 address (its end of the leg), where its health checks come from; None without a leg."""
        with self.namespace.ipr() as ipr:
            found = addresses(ipr, LEG_IFNAME)
        return str(found[0].ip) if found else None

    # -- HAProxy --

    @property
    def config_path(self) -> Path:
        return self.runtime_dir / "haproxy.cfg"

    @property
    def pid_path(self) -> Path:
        return self.runtime_dir / "haproxy.pid"

    @property
    def stats_socket(self) -> Path:
        return self.runtime_dir / "stats.sock"

    def master_pid(self) -> int | None:
        """The HAProxy master's PID, if it runs inside this SLB's namespace (never trust a stale pidfile)."""
        return process.tracked_pid(self.pid_path, self.namespace.inode())

    def ask(self, command: str, timeout: float = 2.0, master: bool = False) -> str:
        """One command on HAProxy's stats socket, or the master's CLI (unix sockets: files, not addresses)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.runtime_dir / "master.sock" if master else self.stats_socket))
            s.sendall(command.encode() + b"\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
                if master and data.endswith(b"\n\n"):
                    break  # the master CLI ends an answer with an empty line but keeps the connection open
        return data.decode()

    def _worker_pid(self) -> int | None:
        try:
            info = self.ask("show info")
        except OSError:
            return None
        for line in info.splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":")[1])
        return None

    def apply_config(self, text: str | None) -> bool:
        """Run HAProxy with ``text`` (None: no listener, stop it). Return True if anything changed."""
        if text is None:
            running = self.master_pid() is not None
            self.stop()
            self.config_path.unlink(missing_ok=True)
            return running
        pid = self.master_pid()
        if pid is not None and self.config_path.exists() and self.config_path.read_text() == text:
            return False
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        candidate = self.runtime_dir / "haproxy.cfg.new"
        candidate.write_text(text)
        check = self.namespace.run([haproxy_binary(), "-c", "-q", "-f", str(candidate)], check=False)
        if check.returncode != 0:
            candidate.unlink(missing_ok=True)
            raise LabError(f"SLB {self.lb_id}: HAProxy refused the configuration: "
                           f"{(check.stderr or check.stdout).strip()}")
        state_file = self.runtime_dir / "server-state"
        if pid is not None:
            with contextlib.suppress(OSError):
                state_file.write_text(self.ask("show servers state"))
        elif not state_file.exists():
            state_file.write_text("1\n")  # an empty state file of format version 1
        os.replace(candidate, self.config_path)
        if pid is None:
            self._start()
        else:
            self._reload(pid)
        return True

    def _start(self) -> None:
        self.pid_path.unlink(missing_ok=True)
        with open(self.runtime_dir / "haproxy.log", "a") as log:
            # -W master-worker, -D daemon (the master detaches; its namespace is the SLB's), -S master CLI.
            result = subprocess.run(
                ["ip", "netns", "exec", self.namespace.name, haproxy_binary(), "-W", "-D",
                 "-f", str(self.config_path), "-p", str(self.pid_path), "-S", str(self.runtime_dir / "master.sock")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=30, check=False)
        if result.returncode != 0:
            raise LabError(f"SLB {self.lb_id}: HAProxy did not start (see {self.runtime_dir}/haproxy.log)")
        self._wait(lambda: self._serving(None), "HAProxy to answer on its sockets")

    def _current_worker(self) -> int | None:
        """The worker the master runs now (``show proc`` on the master CLI); None while the master is busy."""
        try:
            listing = self.ask("show proc", master=True)
        except OSError:
            return None
        section = ""
        for line in listing.splitlines():
            if line.startswith("#"):
                section = line
                continue
            words = line.split()
            if section.startswith("# workers") and len(words) > 1 and words[1] == "worker":
                return int(words[0])
        return None

    def _serving(self, old_worker: int | None) -> bool:
        """The master answers (so it is back in its loop and can take the next reload) with a current worker
        other than ``old_worker``, and that worker answers on the stats socket."""
        worker = self._current_worker()
        return worker is not None and worker != old_worker and self._worker_pid() == worker

    def _reload(self, master: int) -> None:
        old = self._current_worker()
        os.kill(master, signal.SIGUSR2)  # the master re-executes, starts a new worker, the old one drains
        self._wait(lambda: self._serving(old), "the reloaded HAProxy worker")

    def _wait(self, ready, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.02)
        try:
            log = (self.runtime_dir / "haproxy.log").read_text()[-1500:]
        except OSError:
            log = ""
        raise LabError(f"SLB {self.lb_id}: timed out waiting for {what}; HAProxy's log ends:\n{log}")

    def stop(self) -> None:
        pid = self.master_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # the master stops its workers, then exits
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.master_pid() is not None:
            time.sleep(0.02)
        if self.master_pid() is not None:
            self.namespace.kill_processes()
        self.pid_path.unlink(missing_ok=True)

    def running(self) -> bool:
        """The processes its listeners need run: HAProxy for the proxied ones, the checker for the kernel ones."""
        listeners = [listener for listener, _ in load_listeners(self.lab, self.lb_id)]
        if any(not in_kernel(lst) for lst in listeners) and self.master_pid() is None:
            return False
        if any(in_kernel(lst) and lst.health.enabled for lst in listeners):
            return slb_l4.checker_pid(self.runtime_dir, self.namespace) is not None
        return True

    def backend_health(self) -> dict[str, list[dict[str, Any]]]:
        """Listener id → its backends with Alibaba's status (normal/abnormal/unavailable): the kernel listeners'
        from their health checker's state, the others' from HAProxy."""
        return {**slb_l4.backend_health(self.runtime_dir, self.lb_id), **self._haproxy_health()}

    def _haproxy_health(self) -> dict[str, list[dict[str, Any]]]:
        if self.master_pid() is None:
            return {}
        try:
            rows = model.parse_show_stat(self.ask("show stat"))
        except OSError:
            return {}
        health: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            listener = model.listener_of_backend(row.get("pxname", ""))
            if listener is None or row.get("svname") in ("FRONTEND", "BACKEND"):
                continue
            protocol, port = listener
            server_id, _, server_port = row["svname"].rpartition(":")
            health.setdefault(f"{self.lb_id}:{protocol}:{port}", []).append({
                "server_id": server_id, "address": row.get("addr", ""), "port": int(server_port),
                "weight": int(row.get("weight") or 0), "haproxy_status": row.get("status", ""),
                "status": model.health_status(row.get("status", "")),
            })
        return health


def haproxy_pids(config_path: Path) -> list[int]:
    """PIDs of HAProxy processes started with this configuration file (exact argument match), wherever they run.

    Finds an SLB's HAProxy even when its namespace was deleted behind the lab's back (the process then keeps an
    anonymous namespace alive that no name leads to).
    """
    wanted = str(config_path)
    return process.find(lambda argv: os.path.basename(argv[0]) == "haproxy" and wanted in argv)


def end_leftover_haproxy(lab: str) -> list[int]:
    """SIGKILL every HAProxy of the lab's SLBs (by the configuration path under the lab's state folder)."""
    folder = slb_dir(lab)
    configs = folder.glob("lb-*/haproxy.cfg") if folder.exists() else ()
    return process.kill_all([pid for config in configs for pid in haproxy_pids(config)])


def slbs(lab: str) -> list[SlbInstance]:
    prefix = mark(lab) + "lb-"
    return [SlbInstance(lab, ns.name[len(mark(lab)):]) for ns in list_namespaces(prefix)]


# --- servers: ECS / ENI id → address and VPC, read from the router ports' aliases -------------------------

def _server_index(lab: str) -> dict[str, tuple[str, VpcRouter]]:
    index: dict[str, tuple[str, VpcRouter]] = {}
    for router in routers(lab):
        for vswitch in router.vswitches():
            for port, facts in vswitch.enis().items():
                if "ip" in facts and is_cluster_id(port):  # a control plane: the backend of its API server's SLB
                    index[port] = (facts["ip"], router)
                if "ip" not in facts or not port.startswith("eni-"):
                    continue
                index[port] = (facts["ip"], router)
                if facts.get("device") == "0" and "instance" in facts:
                    index[facts["instance"]] = (facts["ip"], router)
    return index


# --- sync: API state → HAProxy -----------------------------------------------------------------------------

def _refs_of(lab: str, listener: model.Listener, resource: str) -> list[model.BackendRef]:
    if listener.server_group_id:
        group = read_json(_group_path(lab, listener.server_group_id))
        if group is None or group["load_balancer_id"] != listener.load_balancer_id:
            raise NotFoundError(f"{resource}: server_group_id: {listener.server_group_id} is not a server group "
                                f"of {listener.load_balancer_id}")
        return [model.BackendRef(**s) for s in group["servers"]]
    data = read_json(_backends_path(lab, listener.load_balancer_id)) or {"servers": []}
    return [model.BackendRef(**s) for s in data["servers"]]


def plan(lab: str, lb_id: str, resource: str = "") -> tuple[model.LoadBalancerPlan, set[str]]:
    """Everything HAProxy needs for one SLB, and the VPCs its backends are in."""
    slb = SlbInstance(lab, lb_id)
    state = slb.read()
    if state is None:
        raise NotFoundError(f"{resource or lb_id}: load_balancer_id: SLB {lb_id} does not exist in lab {lab}")
    servers_at = _server_index(lab)
    vpcs: set[str] = set()
    plans = []
    for listener, _args in load_listeners(lab, lb_id):
        where = resource or f"slb.Listener {listener.listener_id}"
        servers = []
        refs = [] if listener.forward_port is not None else _refs_of(lab, listener, where)  # a redirect: no backends
        for ref in refs:
            if ref.server_id not in servers_at:
                raise NotFoundError(f"{where}: server_id: {ref.server_id} is not an ECS instance or ENI of lab {lab}")
            ip, router = servers_at[ref.server_id]
            vpcs.add(router.vpc_id)
            port = ref.port or listener.backend_port
            if port is None:
                raise ValidationError(where, "backend_port", f"no port for backend {ref.server_id}")
            servers.append(model.Server(ref.server_name, ref.ip or ip, port, ref.weight))
        entries: tuple[str, ...] = ()
        if listener.acl_id:
            acl = read_json(_acl_path(lab, listener.acl_id))
            if acl is None:
                raise NotFoundError(f"{where}: acl_id: {listener.acl_id} does not exist")
            entries = tuple(sorted(acl["entries"]))
        cert = None
        if listener.server_certificate_id:
            path = _cert_path(lab, listener.server_certificate_id)
            if not path.exists():
                raise NotFoundError(f"{where}: server_certificate_id: {listener.server_certificate_id} does not exist")
            cert = str(path)
        plans.append(model.ListenerPlan(listener, tuple(servers), entries, cert))
    return model.LoadBalancerPlan(lb_id, state.address, str(slb.runtime_dir), tuple(plans)), vpcs


def sync_locked(lab: str, lb_id: str, resource: str = "") -> None:
    slb = SlbInstance(lab, lb_id)
    lb_plan, vpcs = plan(lab, lb_id, resource)
    state = slb.read()
    assert state is not None
    where = resource or f"SLB {lb_id}"
    if state.address_type == "intranet":
        slb.ensure_check_leg(VpcRouter(lab, state.vpc_id), where)  # a lab made before intranet SLBs had one
        foreign = vpcs - {state.vpc_id}
        if foreign:
            raise ValidationError(where, "server_id", f"backends must be in the SLB's VPC {state.vpc_id}, "
                                  f"not {', '.join(sorted(foreign))}")
    elif vpcs:
        if len(vpcs) > 1:
            raise ValidationError(where, "server_id", f"an SLB's backends are in one VPC, not {sorted(vpcs)}")
        slb.ensure_leg(VpcRouter(lab, next(iter(vpcs))), where)
    kernel = [p for p in lb_plan.listeners if in_kernel(p.listener)]
    proxied = tuple(p for p in lb_plan.listeners if not in_kernel(p.listener))
    source = slb.leg_address()  # the SLB's 100.64 address: checks and layer-7 connections leave from it
    _sync_kernel(slb, state, lb_plan.address, kernel, source)
    proxy_plan = model.LoadBalancerPlan(lb_plan.lb_id, lb_plan.address, lb_plan.runtime_dir, proxied, source)
    slb.apply_config(model.render_config(proxy_plan) if proxied else None)


def in_kernel(listener: model.Listener) -> bool:
    """Layer 4 forwards in the kernel; ``ACKLAB_SLB_L4_TCP=haproxy`` puts tcp listeners back on HAProxy (udp
    has no other path)."""
    if listener.protocol == "tcp" and os.environ.get("ACKLAB_SLB_L4_TCP", "kernel") == "haproxy":
        return False
    return listener.in_kernel


def _sync_kernel(slb: SlbInstance, state: SlbState, address: str, plans: list[model.ListenerPlan],
                 check_source: str | None) -> None:
    """The SLB's layer-4 listeners as nftables rules in its backends' VPC router (see ``slb_l4``)."""
    vpc = state.vpc_id if state.address_type == "intranet" else slb._leg_vpc()
    router = VpcRouter(slb.lab, vpc) if vpc else None  # an internet SLB without backends has no leg yet
    leg = None
    if router is not None and state.address_type == "internet":
        facts = router.port_facts(slb.lb_id, with_vswitch=False) or {}
        leg = l4.Leg(slb.lb_id, int(facts["leg"]))
    args = {listener.listener_id: a for listener, a in load_listeners(slb.lab, slb.lb_id)}
    items = tuple(l4.L4Listener(p.listener, p.servers, p.acl_entries) for p in plans)
    eips = bound_eips(slb.lab, slb.lb_id, router) if router is not None and state.address_type == "intranet" else ()
    plan = l4.L4Plan(slb.lb_id, address, items, leg, check_source, eips)
    slb_l4.sync(slb.runtime_dir, slb.namespace, plan, args,
                router.namespace if router is not None else None)


def bound_eips(lab: str, lb_id: str, router: VpcRouter) -> tuple[l4.EipFrontend, ...]:
    """The EIPs bound to an intranet SLB (``netns/realize/eip.py``): their internet ports name the SLB, their legs
    are in its router (an EIP whose leg is not there yet, mid-bind or mid-unbind, is left out)."""
    bound = sorted((port, facts["ip"]) for port, facts in InternetSegment(lab).ports().items()
                   if facts.get("instance") == lb_id and "ip" in facts)
    if not bound or not router.namespace.exists():
        return ()
    with router.namespace.ipr() as ipr:
        found = [(port, address, index_of(ipr, port)) for port, address in bound]
    return tuple(l4.EipFrontend(address, port, eip_model.slb_mark(index))
                 for port, address, index in found if index is not None)


def sync(lab: str, lb_ids: Iterable[str], resource: str = "") -> None:
    with lab_lock(lab):
        for lb_id in lb_ids:
            if SlbInstance(lab, lb_id).namespace.exists():
                sync_locked(lab, lb_id, resource)


def _using(lab: str, key: str, value: str) -> list[str]:
    """The SLBs with a listener whose ``key`` is ``value`` (an ACL or a certificate changed)."""
    folder = slb_dir(lab) / "listeners"
    found = set()
    for path in folder.glob("*.json") if folder.exists() else ():
        args = read_json(path)
        if args and args.get(key) == value:
            found.add(path.stem.split("_")[0])
    return sorted(found)


# --- API operations (each under the lab lock, validated before it changes anything) ----------------------
#
# Pulumi creates resources in parallel (the attachments of one server group, the entries of one ACL), and the
# lab lock is a non-reentrant flock: a read of the shared file taken before the lock would let two writers each
# add to the same old content, and the later write would drop the earlier one. So the read, the new content,
# the SLBs to re-sync, the write and the re-sync are one ``_update`` under one hold of the lock.

# old content of a state file (None: absent) → (its new content (None: remove it), the SLBs to re-sync)
Change = Callable[[Any], tuple[Any, Iterable[str]]]


def _store(path: Path, data: Any) -> None:
    if data is None:
        path.unlink(missing_ok=True)
    else:
        write_json(path, data)


def _update(lab: str, path: Path, change: Change, resource: str) -> None:
    """Apply ``change`` to the file at ``path`` and re-sync the SLBs it names, all under one hold of the lab
    lock (``change`` runs under it too and must not take it: the lock is not reentrant). On failure the old
    file is restored, and the SLBs already re-synced are re-synced to it."""
    with lab_lock(lab):
        old = read_json(path)
        new, lb_ids = change(old)  # may raise: nothing has changed yet
        if new != old:
            _store(path, new)
        synced: list[str] = []
        try:
            for lb_id in lb_ids:
                if SlbInstance(lab, lb_id).namespace.exists():
                    sync_locked(lab, lb_id, resource)
                    synced.append(lb_id)
        except Exception:
            _store(path, old)
            for lb_id in synced:  # best effort: the error to report is the one that made us roll back
                with contextlib.suppress(Exception):
                    sync_locked(lab, lb_id, resource)
            raise


def put_listener(lab: str, listener: model.Listener, args: dict[str, Any], resource: str) -> None:
    lb_id = listener.load_balancer_id

    def change(_old: Any) -> tuple[Any, list[str]]:
        # the other listeners are read under the lock: two listeners created together both see each other
        others = [other for other, _ in load_listeners(lab, lb_id) if other.listener_id != listener.listener_id]
        model.check_port_clash(resource, listener, others)
        model.check_forward_target(resource, listener, others)
        return args, [lb_id]

    _update(lab, _listener_path(lab, lb_id, listener.protocol, listener.frontend_port), change, resource)


def delete_listener(lab: str, lb_id: str, protocol: str, port: int) -> None:
    _update(lab, _listener_path(lab, lb_id, protocol, port), lambda _old: (None, [lb_id]), f"slb.Listener {lb_id}")


def delete_slb(lab: str, lb_id: str) -> None:
    """An SLB whole: its listeners first, then the instance (namespace, HAProxy, backends); whatever exists."""
    for listener, _ in load_listeners(lab, lb_id):
        delete_listener(lab, lb_id, listener.protocol, listener.frontend_port)
    SlbInstance(lab, lb_id).delete()


def listener_args(lab: str, lb_id: str, protocol: str, port: int) -> dict[str, Any] | None:
    return read_json(_listener_path(lab, lb_id, protocol, port))


def _check_servers(lab: str, refs: Iterable[model.BackendRef], resource: str) -> None:
    """An early, clear error for an unknown server or an address its ENI does not hold (the re-sync checks the
    servers again, under the lock)."""
    refs = list(refs)
    known = _server_index(lab)
    held = eni_addresses(lab) if any(r.ip for r in refs) else {}
    for ref in refs:
        if ref.server_id not in known:
            raise NotFoundError(f"{resource}: server_id: {ref.server_id} is not an ECS instance or ENI of lab {lab}")
        if ref.ip and ref.ip not in held.get(ref.server_id, ()):
            raise ValidationError(resource, "server_ip", f"{ref.ip} is not an address of {ref.server_id}")


def eni_addresses(lab: str) -> dict[str, set[str]]:
    """ENI id → its primary and secondary addresses: what an ENI backend's ``ServerIp`` may be."""
    return {port: {facts["ip"], *alias_addresses(facts)} for router in routers(lab) for vswitch in router.vswitches()
            for port, facts in vswitch.enis().items() if port.startswith("eni-") and "ip" in facts}


def put_backend_servers(lab: str, lb_id: str, refs: tuple[model.BackendRef, ...], resource: str) -> None:
    _check_servers(lab, refs, resource)
    if not SlbInstance(lab, lb_id).namespace.exists():
        raise NotFoundError(f"{resource}: load_balancer_id: SLB {lb_id} does not exist")
    data = {"servers": [{"server_id": r.server_id, "weight": r.weight, "type": r.type, **({"ip": r.ip} if r.ip else {})}
                        for r in refs]}
    _update(lab, _backends_path(lab, lb_id), lambda _old: (data, [lb_id]), resource)


def delete_backend_servers(lab: str, lb_id: str) -> None:
    _update(lab, _backends_path(lab, lb_id), lambda _old: (None, [lb_id]), f"slb.BackendServer {lb_id}")


def backend_servers(lab: str, lb_id: str) -> list[dict[str, Any]] | None:
    data = read_json(_backends_path(lab, lb_id))
    return None if data is None else data["servers"]


def create_server_group(lab: str, group_id: str, lb_id: str, name: str, resource: str) -> None:
    if not SlbInstance(lab, lb_id).namespace.exists():
        raise NotFoundError(f"{resource}: load_balancer_id: SLB {lb_id} does not exist")
    with lab_lock(lab):
        existing = read_json(_group_path(lab, group_id))
        write_json(_group_path(lab, group_id), {"load_balancer_id": lb_id, "name": name,
                                                "servers": existing["servers"] if existing else []})


def server_group(lab: str, group_id: str) -> dict[str, Any] | None:
    return read_json(_group_path(lab, group_id))


def delete_server_group(lab: str, group_id: str) -> None:
    def change(group: Any) -> tuple[Any, list[str]]:
        return None, ([group["load_balancer_id"]] if group else [])

    _update(lab, _group_path(lab, group_id), change, f"slb.ServerGroup {group_id}")


def with_server(group: dict[str, Any], ref: model.BackendRef) -> dict[str, Any]:
    """The group with ``ref`` in it (replacing the server on the same port: an update of its weight)."""
    servers = [s for s in group["servers"] if (s["server_id"], s["port"]) != (ref.server_id, ref.port)]
    servers.append({"server_id": ref.server_id, "port": ref.port, "weight": ref.weight, "type": ref.type})
    return {**group, "servers": servers}


def without_server(group: dict[str, Any], server_id: str, port: int) -> dict[str, Any]:
    return {**group, "servers": [s for s in group["servers"] if (s["server_id"], s["port"]) != (server_id, port)]}


def attach_server(lab: str, group_id: str, ref: model.BackendRef, resource: str) -> None:
    _check_servers(lab, [ref], resource)

    def change(group: Any) -> tuple[Any, list[str]]:
        if group is None:
            raise NotFoundError(f"{resource}: server_group_id: {group_id} does not exist")
        return with_server(group, ref), [group["load_balancer_id"]]

    _update(lab, _group_path(lab, group_id), change, resource)


def detach_server(lab: str, group_id: str, server_id: str, port: int) -> None:
    def change(group: Any) -> tuple[Any, list[str]]:
        if group is None:
            return None, []  # the group is gone, and its servers with it
        return without_server(group, server_id, port), [group["load_balancer_id"]]

    _update(lab, _group_path(lab, group_id), change, f"slb.ServerGroupServerAttachment {group_id}:{server_id}:{port}")


def create_acl(lab: str, acl_id: str, name: str) -> None:
    with lab_lock(lab):
        existing = read_json(_acl_path(lab, acl_id))
        write_json(_acl_path(lab, acl_id), {"name": name, "entries": existing["entries"] if existing else {}})


def acl(lab: str, acl_id: str) -> dict[str, Any] | None:
    return read_json(_acl_path(lab, acl_id))


def delete_acl(lab: str, acl_id: str) -> None:
    def change(_old: Any) -> tuple[Any, list[str]]:
        users = _using(lab, "acl_id", acl_id)  # under the lock: no listener can start using it meanwhile
        if users:
            raise LabError(f"slb.Acl {acl_id}: still used by listeners of {', '.join(users)}")
        return None, []

    _update(lab, _acl_path(lab, acl_id), change, f"slb.Acl {acl_id}")


def with_acl_entry(data: dict[str, Any], entry: str, comment: str | None) -> dict[str, Any]:
    """The ACL with ``entry`` added (its comment replaced), or removed if ``comment`` is None."""
    entries = {k: v for k, v in data["entries"].items() if k != entry}
    if comment is not None:
        entries[entry] = comment
    return {**data, "entries": entries}


def set_acl_entry(lab: str, acl_id: str, entry: str, comment: str | None, resource: str) -> None:
    """Add (or, ``comment`` None, remove) one entry; the SLBs whose listeners use the ACL follow."""
    def change(data: Any) -> tuple[Any, list[str]]:
        if data is None:
            if comment is None:
                return None, []  # removing an entry of an ACL that is gone: nothing is left to remove
            raise NotFoundError(f"{resource}: acl_id: {acl_id} does not exist")
        return with_acl_entry(data, entry, comment), _using(lab, "acl_id", acl_id)

    _update(lab, _acl_path(lab, acl_id), change, resource)


def put_certificate(lab: str, cert_id: str, certificate: str, private_key: str) -> None:
    # a private key: root only
    write_atomic(_cert_path(lab, cert_id), certificate.strip() + "\n" + private_key.strip() + "\n", mode=0o600)


def certificate_exists(lab: str, cert_id: str) -> bool:
    return _cert_path(lab, cert_id).exists()


def delete_certificate(lab: str, cert_id: str) -> None:
    with lab_lock(lab):  # the users check and the removal together: no listener can start using it meanwhile
        users = _using(lab, "server_certificate_id", cert_id)
        if users:
            raise LabError(f"slb.ServerCertificate {cert_id}: still used by listeners of {', '.join(users)}")
        _cert_path(lab, cert_id).unlink(missing_ok=True)
