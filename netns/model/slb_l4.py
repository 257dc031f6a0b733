"""SLB layer-4 listeners (tcp, udp) in the kernel, as Alibaba's CLB runs them on LVS: the nftables rule set, as data.

Pure: no kernel, no files. There is no IPVS in acklab's kernel, so a listener is built the way kube-proxy's
nftables mode builds a Service: DNAT with conntrack and maps, no SNAT (the backend sees the client's own
address). The rules live in the VPC router namespace of the backends, the one place that both directions of
every flow cross (its br_netfilter sees bridged same-vSwitch flows as well as routed ones).

One table per SLB, ``ip slb_<lb id>``, so SLBs never collide in one router. Per listener:
- ``<proto>_<port>_slots``: a slot table (``SLOTS`` entries, a prime) of backend address . port. The scheduler
  picks a slot: ``numgen inc`` for wrr/rr (slots laid out by smooth weighted round robin), ``jhash`` of the
  source (sch) or of the 4-tuple (tch) for the consistent hashes, whose slots are filled Maglev-style, so that
  a backend leaving moves only the clients of its own slots (≈ 1/N of them).
- ``tcp_<port>_timeout``: a conntrack timeout policy, ``established_timeout`` for the listener's idle flows.
- ``<proto>_<port>_persist`` (``persistence_timeout`` > 0): a timed map client address → backend; a client's
  new connections follow its last backend until the timeout passes without a new connection.
Backend changes (weight, membership, health) rewrite the slot map's elements in one transaction
(``render_elements``); the chains stay, and conntrack keeps every established flow on its backend.

An internet SLB's clients reach the router through the SLB's leg (100.64.0.0/10); their connections get a
conntrack mark and the replies carry it as the packet mark, which a routing rule sends back by the same leg.

An EIP bound to an intranet SLB (ACK's API server endpoint: ``EipFrontend``) is another frontend address of the
same listeners: its leg is in the router (``netns/realize/eip.py``), so the DNAT rules match the EIP as well as the
VIP; connections arriving by the EIP's leg get the leg's mark, and their replies go back out by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from netns.model.slb import Listener, Server

SLOTS = 251  # a prime: Maglev's permutations (offset + k·skip mod SLOTS) then visit every slot
L4_PROTOCOLS = ("tcp", "udp")
# Layer-4 schedulers built in the kernel; wlc needs connection counts no nftables map keeps (left to HAProxy
# for tcp), qch needs QUIC connection ids.
KERNEL_SCHEDULERS = ("wrr", "rr", "sch", "tch")
HASH_SEED = 0x534C4231  # fixed: the same client maps to the same slot after every rule-set load
LEG_MARK_BASE = 0x534C0000  # "SL" in the high half; the low half is the leg index
LEG_TABLE_BASE = 2000  # routing table of a leg's replies: LEG_TABLE_BASE + leg index


# --- slot tables -------------------------------------------------------------------------------------------

def in_rotation(servers: Iterable[Server], health: Mapping[str, str] | None = None) -> list[Server]:
    """Servers that take new flows: weight > 0 and not marked ``abnormal`` by the health checker."""
    health = health or {}
    return [s for s in servers if s.weight > 0 and health.get(s.name) != "abnormal"]


def weighted_round_robin(servers: Sequence[Server], size: int = SLOTS) -> tuple[Server, ...]:
    """``size`` slots in smooth weighted round-robin order (nginx's): any run of consecutive slots is
    close to weight-proportional, so ``numgen inc`` over them spreads connections by weight."""
    live = [s for s in servers if s.weight > 0]
    if not live:
        return ()
    total = sum(s.weight for s in live)
    current = [0] * len(live)
    slots = []
    for _ in range(size):
        for i, server in enumerate(live):
            current[i] += server.weight
        best = max(range(len(live)), key=lambda i: current[i])
        current[best] -= total
        slots.append(live[best])
    return tuple(slots)


def _permutation(key: str, size: int) -> tuple[int, int]:
    """Maglev's (offset, skip) for a backend, from a stable hash of its identity (not Python's salted hash)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % size, int.from_bytes(digest[8:16], "big") % (size - 1) + 1


def maglev(servers: Sequence[Server], size: int = SLOTS) -> tuple[Server, ...]:
    """A Maglev lookup table with weights: backends take turns claiming their next preferred free slot, each
    turn worth weight / max weight claims. Each backend's preferences depend on itself only, so removing
    one frees its slots and leaves almost every other slot with its owner."""
    live = sorted((s for s in servers if s.weight > 0), key=lambda s: (s.ip, s.port))
    if not live:
        return ()
    perms = [_permutation(f"{s.ip}:{s.port}", size) for s in live]
    top = max(s.weight for s in live)
    table: list[Server | None] = [None] * size
    tried = [0] * len(live)
    credit = [0.0] * len(live)
    filled = 0
    while True:
        for i, server in enumerate(live):
            credit[i] += server.weight / top
            while credit[i] >= 1:
                credit[i] -= 1
                offset, skip = perms[i]
                while table[slot := (offset + tried[i] * skip) % size] is not None:
                    tried[i] += 1
                table[slot] = server
                filled += 1
                if filled == size:
                    return tuple(s for s in table if s is not None)


def slot_table(scheduler: str, servers: Sequence[Server], size: int = SLOTS) -> tuple[Server, ...]:
    """The slots of one listener's backends in rotation (empty: no backend takes new flows)."""
    if scheduler == "rr":  # weights ignored, but weight 0 still means none
        servers = [Server(s.server_id, s.ip, s.port, 1 if s.weight else 0) for s in servers]
        return weighted_round_robin(servers, size)
    if scheduler == "wrr":
        return weighted_round_robin(servers, size)
    if scheduler in ("sch", "tch"):
        return maglev(servers, size)
    raise ValueError(f"scheduler {scheduler!r} is not built in the kernel (built: {', '.join(KERNEL_SCHEDULERS)})")


# --- the rule set ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class L4Listener:
    """A layer-4 listener with its resolved backends (all of them; health picks the ones in rotation)."""

    listener: Listener
    servers: tuple[Server, ...] = ()
    acl_entries: tuple[str, ...] = ()  # the listener's ACL (white or black), CIDR blocks

    @property
    def prefix(self) -> str:
        return f"{self.listener.protocol}_{self.listener.frontend_port}"


@dataclass(frozen=True)
class Leg:
    """An internet SLB's leg in the router: the router's interface and its index (mark and table)."""

    ifname: str
    index: int

    @property
    def mark(self) -> int:
        return LEG_MARK_BASE + self.index

    @property
    def table(self) -> int:
        return LEG_TABLE_BASE + self.index


@dataclass(frozen=True)
class EipFrontend:
    """An EIP bound to the SLB: its address, its leg in the router (``eip-<hex>``) and the leg's mark (its
    replies' routing rule: ``netns/model/eip.py`` ``slb_mark``)."""

    address: str
    ifname: str
    mark: int


@dataclass(frozen=True)
class L4Plan:
    lb_id: str
    vip: str
    listeners: tuple[L4Listener, ...] = ()
    leg: Leg | None = None  # internet SLBs only
    check_source: str | None = None  # the SLB's 100.64 address, where its health checks come from (as Alibaba's)
    eips: tuple[EipFrontend, ...] = ()  # EIPs bound to an intranet SLB: more addresses of its listeners

    @property
    def frontends(self) -> str:
        """The listeners' addresses as an nft match value: the VIP, or the VIP and its EIPs as an anonymous set."""
        if not self.eips:
            return self.vip
        return "{ " + ", ".join([self.vip, *(e.address for e in self.eips)]) + " }"


def table_name(lb_id: str) -> str:
    return "slb_" + lb_id.replace("-", "_")


def _pick(item: L4Listener) -> str:
    """The slot-choosing expression of a listener's scheduler."""
    listener, proto = item.listener, item.listener.protocol
    if listener.scheduler == "sch":
        key = "ip saddr"
    elif listener.scheduler == "tch":
        key = f"ip saddr . {proto} sport . ip daddr . {proto} dport"
    else:
        return f"numgen inc mod {SLOTS}"
    return f"jhash {key} mod {SLOTS} seed {HASH_SEED:#x}"


def _maps(item: L4Listener) -> list[str]:
    proto, prefix = item.listener.protocol, item.prefix
    lines = [f"  map {prefix}_slots {{ typeof numgen inc mod {SLOTS} : ip daddr . {proto} dport; }}"]
    if item.listener.persistence_timeout:
        lines.append(f"  map {prefix}_persist {{ typeof ip saddr : ip daddr . {proto} dport; "
                     f"flags dynamic,timeout; timeout {item.listener.persistence_timeout}s; }}")
    if proto == "tcp":
        lines.append(f"  ct timeout {prefix}_timeout {{ protocol tcp; l3proto ip; "
                     f"policy = {{ established: {item.listener.established_timeout} }}; }}")
    if _acl_applies(item):
        lines.append(f"  set {prefix}_acl {{ type ipv4_addr; flags interval; "
                     f"elements = {{ {', '.join(item.acl_entries)} }}; }}")
    return lines


def _acl_applies(item: L4Listener) -> bool:
    # a whitelist without entries forwards everything (Alibaba's documented behaviour), as does an empty blacklist
    return item.listener.acl_type is not None and bool(item.acl_entries)


def _acl_rules(plan: L4Plan, item: L4Listener) -> list[str]:
    """Before DNAT: drop what the listener's ACL refuses (a whitelist drops the unlisted, a blacklist the listed)."""
    if not _acl_applies(item):
        return []
    listener = item.listener
    negate = "!= " if listener.acl_type == "white" else ""
    return [f"    ip daddr {plan.frontends} {listener.protocol} dport {listener.frontend_port} "
            f"ip saddr {negate}@{item.prefix}_acl drop"]


def _dnat_rules(plan: L4Plan, item: L4Listener) -> list[str]:
    proto, prefix = item.listener.protocol, item.prefix
    match = f"ip daddr {plan.frontends} {proto} dport {item.listener.frontend_port}"
    rules = []
    if item.listener.persistence_timeout:  # a known client goes back to its backend (a miss falls through)
        rules.append(f"    {match} dnat ip addr . port to ip saddr map @{prefix}_persist")
    # An empty slot map (no backend in rotation) matches nothing: the packet goes on to the SLB's own address,
    # where no socket listens, and the client is refused (RST / ICMP port unreachable).
    rules.append(f"    {match} dnat ip addr . port to {_pick(item)} map @{prefix}_slots")
    return rules


def _after_rules(plan: L4Plan) -> list[str]:
    """After DNAT: remember persistent clients' backends; mark internet connections so replies take the leg."""
    rules = []
    for item in plan.listeners:
        listener = item.listener
        if listener.protocol == "tcp":  # established_timeout: how long an idle established flow is kept
            rules.append(f"    ct state new meta l4proto tcp ct original ip daddr {plan.frontends} "
                         f'ct original proto-dst {listener.frontend_port} ct timeout set "{item.prefix}_timeout"')
        if listener.persistence_timeout:
            rules.append(f"    ct state new meta l4proto {listener.protocol} ct original ip daddr {plan.frontends} "
                         f"ct original proto-dst {listener.frontend_port} "
                         f"update @{item.prefix}_persist {{ ip saddr : ip daddr . {listener.protocol} dport }}")
    if plan.leg is not None:
        rules += _reply_by_leg(plan.leg.ifname, plan.vip, plan.leg.mark)
    for eip in plan.eips:  # an EIP's clients: their replies leave by the EIP's leg (its fwmark rule)
        rules += _reply_by_leg(eip.ifname, eip.address, eip.mark)
    return rules


def _reply_by_leg(ifname: str, address: str, mark: int) -> list[str]:
    """Connections to ``address`` that came in by the leg ``ifname`` get its conntrack mark; their replies carry it
    as the packet mark, which the leg's routing rule sends back out by the same leg."""
    return [f'    iifname "{ifname}" ct state new ct original ip daddr {address} ct mark set {mark:#x}',
            f"    ct direction reply ct mark {mark:#x} meta mark set ct mark"]


def render_structure(plan: L4Plan) -> str:
    """The SLB's table without slot elements: chains, rules and maps. Loaded again only when it changes."""
    lines = [f"table ip {table_name(plan.lb_id)} {{"]
    items = sorted(plan.listeners, key=lambda i: (i.listener.frontend_port, i.listener.protocol))
    for item in items:
        lines += _maps(item)
    acl = [rule for item in items for rule in _acl_rules(plan, item)]
    if acl:
        lines += ["  chain l4_acl {", "    type filter hook prerouting priority dstnat - 10; policy accept;", *acl,
                  "  }"]
    lines += ["  chain l4_dnat {", "    type nat hook prerouting priority dstnat; policy accept;"]
    for item in items:
        lines += _dnat_rules(plan, item)
    lines += ["  }", "  chain l4_after {",
              # after DNAT (dstnat + 10), before routing: the reply mark must be set before the route lookup
              "    type filter hook prerouting priority dstnat + 10; policy accept;"]
    lines += _after_rules(plan)
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def render_elements(lb_id: str, item: L4Listener, health: Mapping[str, str] | None = None) -> str:
    """One transaction's worth of text that swaps a listener's slots for the backends now in rotation."""
    table = table_name(lb_id)
    lines = [f"flush map ip {table} {item.prefix}_slots"]
    slots = slot_table(item.listener.scheduler, in_rotation(item.servers, health))
    if slots:
        elements = ", ".join(f"{n} : {s.ip} . {s.port}" for n, s in enumerate(slots))
        lines.append(f"add element ip {table} {item.prefix}_slots {{ {elements} }}")
    if item.listener.persistence_timeout:
        # nft cannot delete a timed map's elements by their backend, and a client stuck to a backend that left
        # would keep failing: a change of the rotation forgets the listener's remembered clients
        lines.append(f"flush map ip {table} {item.prefix}_persist")
    return "\n".join(lines) + "\n"


def render_all(plan: L4Plan, health: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The whole table from scratch (replacing any old one) with every listener's slots: one transaction."""
    health = health or {}
    table = table_name(plan.lb_id)
    text = f"table ip {table} {{}}\ndelete table ip {table}\n" + render_structure(plan)
    for item in plan.listeners:
        text += render_elements(plan.lb_id, item, health.get(item.listener.listener_id))
    return text


def slot_counts(slots: Sequence[Server]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for server in slots:
        counts[server.name] = counts.get(server.name, 0) + 1
    return counts
