"""An SLB's layer-4 listeners (tcp, udp) in the kernel: nftables in the VPC router, a health checker per SLB.

The rules (``netns/model/slb_l4.py``) go into the router namespace of the backends' VPC, the one namespace both
directions of every flow cross: an intranet client on another vSwitch is routed through it, and one on the
backends' own vSwitch is bridged through it, where br_netfilter hands the frame to the same prerouting hook
(the DNAT to a backend on the same bridge is then bridged on to the backend's port). Replies pass it again and
conntrack undoes the DNAT. The SLB namespace keeps the VIP (it answers ARP for it, and HAProxy binds it for
http/https listeners), but layer-4 packets are rewritten before they reach it.

An internet SLB's clients are on the lab's internet, outside the VPC: the SLB namespace marks their layer-4
packets and routes them (a rule ahead of the local table) over its 100.64 leg into the router; the router marks
those connections and routes their replies back over the same leg (see ``Leg`` in the model).

A whole-table load (``nft -f``: delete and re-add, one transaction) happens only when the rules change (a
listener added, removed or changed); backend changes — weight, membership, health — swap map elements only.

The health checker (``netns/realize/slb_checker.py``) is one process per SLB, inside the SLB namespace (checks
leave from the SLB's 100.64 address, as Alibaba's: the leg into the backends' VPC router, which an intranet SLB
has too, for its checks only). It reads ``l4.json`` (written here),
writes ``l4-health.json``, and swaps the slot elements itself when a backend's state changes, under the lab lock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from netns.kernel import process, rules
from netns.kernel.files import read_json, read_text, write_atomic, write_json
from netns.kernel.namespace import Namespace, end_processes
from netns.model import slb as model
from netns.model import slb_l4 as l4
from netns.model.errors import LabError

CHECKER_MODULE = "netns.realize.slb_checker"
SLB_MARK = 0x1  # in the SLB namespace: a layer-4 packet to forward into the VPC instead of delivering it
SLB_TABLE = 100  # in the SLB namespace: the route of marked packets, over the leg
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# --- files in the SLB's runtime folder ---------------------------------------------------------------------

def config_path(runtime_dir: Path) -> Path:
    return runtime_dir / "l4.json"


def health_path(runtime_dir: Path) -> Path:
    return runtime_dir / "l4-health.json"


def elements_path(runtime_dir: Path) -> Path:
    return runtime_dir / "l4-elements.nft"


def read_health(runtime_dir: Path) -> dict[str, dict[str, str]]:
    return read_json(health_path(runtime_dir)) or {}


# --- plan ⇄ JSON (the checker rebuilds the plan from what the realization wrote) ---------------------------

def plan_to_json(plan: l4.L4Plan, args: dict[str, dict[str, Any]], router_ns: str,
                 draining: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    draining = draining or {}
    return {
        "lb_id": plan.lb_id, "vip": plan.vip, "router": router_ns, "check_source": plan.check_source,
        "leg": None if plan.leg is None else {"ifname": plan.leg.ifname, "index": plan.leg.index},
        "listeners": [{"args": args[item.listener.listener_id], "servers": [s.__dict__ for s in item.servers],
                       "acl_entries": list(item.acl_entries),
                       "draining": draining.get(item.listener.listener_id, [])} for item in plan.listeners],
    }


DRAIN_KEPT = 60.0  # seconds a passed drain stays recorded (a restarted checker still ends its flows)


def draining(recorded: dict[str, Any] | None, plan: l4.L4Plan, health: dict[str, dict[str, str]],
             now: float) -> dict[str, list[dict[str, Any]]]:
    """Listener id → its backends draining (``server``, wall-clock ``deadline``): those recorded still out of
    rotation, and those this change takes out of a draining listener's rotation (removed or weight 0). The health
    checker ends their flows at the deadline; it drains the backends its own checks take out by itself."""
    old: dict[str, tuple[l4.L4Listener, list[dict[str, Any]]]] = {}
    if recorded:  # the JSON's listeners and the plan's are in the same order
        for item, entry in zip(plan_from_json(recorded).listeners, recorded["listeners"], strict=True):
            old[item.listener.listener_id] = (item, entry.get("draining", []))
    found: dict[str, list[dict[str, Any]]] = {}
    for item in plan.listeners:
        listener = item.listener
        if not listener.drain_timeout:
            continue
        states = health.get(listener.listener_id)
        current = {s.name for s in l4.in_rotation(item.servers, states)}
        before, carried = old.get(listener.listener_id, (None, []))
        kept = [d for d in carried
                if model.Server(**d["server"]).name not in current and d["deadline"] > now - DRAIN_KEPT]
        names = {model.Server(**d["server"]).name for d in kept}
        for server in l4.in_rotation(before.servers, states) if before is not None else ():
            if server.name not in current and server.name not in names:
                kept.append({"server": server.__dict__, "deadline": now + listener.drain_timeout})
        if kept:
            found[listener.listener_id] = kept
    return found


def plan_from_json(data: dict[str, Any]) -> l4.L4Plan:
    lb_id = data["lb_id"]
    items = tuple(l4.L4Listener(model.parse_listener(f"slb.Listener of {lb_id}", lb_id, entry["args"]),
                                tuple(model.Server(**s) for s in entry["servers"]), tuple(entry["acl_entries"]))
                  for entry in data["listeners"])
    leg = None if data["leg"] is None else l4.Leg(**data["leg"])
    return l4.L4Plan(lb_id, data["vip"], items, leg, data.get("check_source"))


def elements_text(plan: l4.L4Plan, health: dict[str, dict[str, str]]) -> str:
    return "".join(l4.render_elements(plan.lb_id, item, health.get(item.listener.listener_id))
                   for item in plan.listeners)


# --- nft in a namespace ------------------------------------------------------------------------------------

def nft(namespace: Namespace, text: str, what: str) -> None:
    rules.nft(namespace, text, what, show_text=True)


def table_exists(namespace: Namespace, table: str) -> bool:
    return rules.nft_table_exists(namespace, "ip", table)


def swap_elements(runtime_dir: Path, plan: l4.L4Plan, router: Namespace, health: dict[str, dict[str, str]]) -> bool:
    """Swap the slot elements if the backends in rotation changed (caller holds the lab lock)."""
    text = elements_text(plan, health)
    path = elements_path(runtime_dir)
    if path.exists() and path.read_text() == text:
        return False
    nft(router, text, f"SLB {plan.lb_id}")
    write_atomic(path, text)
    return True


# --- sync (under the lab lock) -----------------------------------------------------------------------------

def sync(runtime_dir: Path, slb_ns: Namespace, plan: l4.L4Plan, args: dict[str, dict[str, Any]],
         router: Namespace | None) -> None:
    """Make the kernel forward ``plan``'s listeners (none, or no router yet: remove everything)."""
    recorded = read_json(config_path(runtime_dir))
    if recorded and (router is None or recorded["router"] != router.name or not plan.listeners):
        remove(runtime_dir, slb_ns, plan.lb_id)
    if router is None or not plan.listeners:
        return
    runtime_dir.mkdir(parents=True, exist_ok=True)
    health = read_health(runtime_dir)
    structure = l4.render_structure(plan)
    structure_file = runtime_dir / "l4-structure.nft"
    table = l4.table_name(plan.lb_id)
    rebuilt = (not table_exists(router, table) or not structure_file.exists()
               or structure_file.read_text() != structure)
    if rebuilt:
        nft(router, l4.render_all(plan, health), f"SLB {plan.lb_id}")
        write_atomic(structure_file, structure)
        write_atomic(elements_path(runtime_dir), elements_text(plan, health))
    else:
        swap_elements(runtime_dir, plan, router, health)
    previous = recorded if recorded and recorded["router"] == router.name else None
    write_json(config_path(runtime_dir), plan_to_json(plan, args, router.name,
                                                      draining(previous, plan, health, time.time())))
    if plan.leg is not None:
        _ensure_internet_path(runtime_dir, slb_ns, router, plan, force=rebuilt)
    ensure_checker(runtime_dir, slb_ns)


def _path_key(router: Namespace, plan: l4.L4Plan) -> str:
    """What the internet path depends on: the router, the leg, the VIP and the listeners' ports (not their
    backends, whose changes are map elements)."""
    ports = sorted(f"{i.listener.protocol} . {i.listener.frontend_port}" for i in plan.listeners)
    return json.dumps({"router": router.name, "leg": asdict(plan.leg) if plan.leg else None, "vip": plan.vip,
                       "ports": ports}, sort_keys=True)


def _ensure_internet_path(runtime_dir: Path, slb_ns: Namespace, router: Namespace, plan: l4.L4Plan,
                          force: bool) -> None:
    """The internet path (about 15 ip, sysctl and nft calls) only when what it depends on changed, its table is
    gone or the router's table was rebuilt (``force``: a router made again lost the leg's rule too), not on every
    sync: a sync that only moves backends changes map elements."""
    key, recorded = _path_key(router, plan), runtime_dir / "l4-path.json"
    if not force and read_text(recorded) == key and table_exists(slb_ns, "slb_forward"):
        return
    _internet_path(slb_ns, router, plan)
    write_atomic(recorded, key)


def _ip(namespace: Namespace, *argv: str) -> None:
    result = namespace.run(["ip", *argv], check=False)
    if result.returncode != 0 and "File exists" not in result.stderr:
        raise LabError(f"{namespace.name}: ip {' '.join(argv)}: {result.stderr.strip()}")


def _internet_path(slb_ns: Namespace, router: Namespace, plan: l4.L4Plan) -> None:
    """Clients' layer-4 packets: SLB namespace → leg → router; their replies: router → leg → SLB → internet."""
    assert plan.leg is not None
    net = model.leg_network(plan.leg.index)
    router_end, slb_end = net.network_address + 1, net.network_address + 2
    # router: replies of the leg's connections (marked by the rules) go back over the leg
    _ip(router, "route", "replace", "default", "via", str(slb_end), "dev", plan.leg.ifname,
        "table", str(plan.leg.table))
    _ip(router, "rule", "add", "pref", "100", "fwmark", hex(plan.leg.mark), "lookup", str(plan.leg.table))
    router.sysctl(f"net.ipv4.conf.{plan.leg.ifname}.rp_filter", 0)  # clients' addresses have no route here
    # SLB namespace: forward marked packets to the router; accept replies whose source is our own VIP
    for key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.accept_local", "net.ipv4.conf.eth1.accept_local"):
        slb_ns.sysctl(key, 1)
    for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.eth1.rp_filter", "net.ipv4.conf.eth0.rp_filter"):
        slb_ns.sysctl(key, 0)
    _ip(slb_ns, "route", "replace", "default", "via", str(router_end), "dev", "eth1", "table", str(SLB_TABLE))
    # the mark must be looked at before the local table, which would deliver the VIP's packets here
    _ip(slb_ns, "rule", "add", "pref", "10", "fwmark", hex(SLB_MARK), "lookup", str(SLB_TABLE))
    _ip(slb_ns, "rule", "add", "pref", "50", "lookup", "local")
    first = slb_ns.run(["ip", "rule", "show", "pref", "0"], check=False).stdout
    if "lookup local" in first:
        _ip(slb_ns, "rule", "del", "pref", "0", "lookup", "local")
    ports = ", ".join(f"{i.listener.protocol} . {i.listener.frontend_port}" for i in plan.listeners)
    nft(slb_ns, "table ip slb_forward {}\ndelete table ip slb_forward\n"
        "table ip slb_forward {\n"
        f"  set l4 {{ typeof meta l4proto . th dport; elements = {{ {ports} }}; }}\n"
        "  chain to_router { type filter hook prerouting priority mangle; policy accept;\n"
        f'    iifname "eth0" ip daddr {plan.vip} meta l4proto . th dport @l4 meta mark set {SLB_MARK:#x}\n'
        "  }\n}\n", f"SLB {plan.lb_id}")


def remove(runtime_dir: Path, slb_ns: Namespace, lb_id: str) -> None:
    """Remove the SLB's table (and leg routing) from the router it was recorded in; stop its checker."""
    recorded = read_json(config_path(runtime_dir))
    stop_checker(runtime_dir, slb_ns)
    if recorded:
        router = Namespace(recorded["router"])
        table = l4.table_name(lb_id)
        if table_exists(router, table):
            nft(router, f"delete table ip {table}\n", f"SLB {lb_id}")
        if recorded.get("leg") and router.exists():
            leg = l4.Leg(**recorded["leg"])
            router.run(["ip", "rule", "del", "fwmark", hex(leg.mark), "lookup", str(leg.table)], check=False)
            router.run(["ip", "route", "flush", "table", str(leg.table)], check=False)
    if table_exists(slb_ns, "slb_forward"):
        nft(slb_ns, "delete table ip slb_forward\n", f"SLB {lb_id}")
    for name in ("l4.json", "l4-structure.nft", "l4-elements.nft", "l4-health.json", "l4-path.json"):
        (runtime_dir / name).unlink(missing_ok=True)


# --- the health checker process ----------------------------------------------------------------------------

def checker_pid_path(runtime_dir: Path) -> Path:
    return runtime_dir / "checker.pid"


def checker_pid(runtime_dir: Path, slb_ns: Namespace) -> int | None:
    """The checker's PID if it runs inside the SLB's namespace (a stale pidfile is never trusted)."""
    return process.tracked_pid(checker_pid_path(runtime_dir), slb_ns.inode(), lambda argv: CHECKER_MODULE in argv)


def ensure_checker(runtime_dir: Path, slb_ns: Namespace) -> None:
    if checker_pid(runtime_dir, slb_ns) is not None:
        return  # it notices l4.json changing by itself
    lab, lb_id = runtime_dir.parent.parent.name, runtime_dir.name
    pid = process.spawn_in(slb_ns.name, [sys.executable, "-m", CHECKER_MODULE, lab, lb_id],
                           checker_pid_path(runtime_dir), runtime_dir / "checker.log", PROJECT_ROOT,
                           env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    if checker_pid(runtime_dir, slb_ns) != pid:
        raise LabError(f"SLB {lb_id}: the health checker did not start (see {runtime_dir}/checker.log)")


def stop_checker(runtime_dir: Path, slb_ns: Namespace) -> None:
    pid = checker_pid(runtime_dir, slb_ns)
    if pid is not None:
        end_processes([pid])
    checker_pid_path(runtime_dir).unlink(missing_ok=True)


def end_leftover_checkers(lab: str) -> list[int]:
    """SIGKILL the lab's health checkers whose namespace was deleted behind the lab's back (they keep an anonymous
    namespace alive that no name leads to), found by their exact command line: ``-m CHECKER_MODULE <lab> <lb>``."""
    def ours(argv: list[str]) -> bool:
        return CHECKER_MODULE in argv and argv[argv.index(CHECKER_MODULE) + 1:argv.index(CHECKER_MODULE) + 2] == [lab]

    return process.kill_all(process.find(ours))


def backend_health(runtime_dir: Path, lb_id: str) -> dict[str, list[dict[str, Any]]]:
    """Listener id → its backends with the checker's state (Alibaba's words), as ``SlbInstance.backend_health``."""
    data = read_json(config_path(runtime_dir))
    if not data:
        return {}
    plan = plan_from_json(data)
    health = read_health(runtime_dir)
    found: dict[str, list[dict[str, Any]]] = {}
    for item in plan.listeners:
        states = health.get(item.listener.listener_id, {})
        default = "normal" if item.listener.health.enabled else "unavailable"
        found[item.listener.listener_id] = [
            {"server_id": s.server_id, "address": s.ip, "port": s.port, "weight": s.weight,
             # HAProxy's words for checks that are off (readiness reads them): traffic flows all the same
             "haproxy_status": "" if item.listener.health.enabled else "no check",
             "status": states.get(s.name, default)} for s in item.servers]
    return found
