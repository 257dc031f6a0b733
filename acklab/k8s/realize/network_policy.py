"""NetworkPolicy on the kernel: one node's compiled chains and ipsets applied in its namespace, atomically, only
when they differ from what is there; established flows the new policies forbid are cut (their conntrack
entries deleted, like Felix does for removed endpoints).

Order of an apply: ``ipset restore`` (new sets made, changed ones filled under a temporary name and swapped),
one ``iptables-restore --noflush`` transaction (our ``cali-*`` chains only, stale ones flushed and deleted, and,
if it is missing or another component such as kube-proxy has prepended a rule before it, the
``FORWARD → cali-FORWARD`` jump moved back to position 1), stale sets destroyed, then the conntrack sweep.
KUBE-* chains and built-in chains other than our one jump are never touched.

The jump is moved inside the transaction (each copy deleted, one inserted first) because iptables here is the
nf_tables variant: one restore is one nft batch, which packets see whole or not at all. Deleting it with one
``iptables -D`` and inserting it with another ``iptables -I`` left a gap in which new connections were
forwarded unpoliced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from acklab.k8s.model.network_policy import (
    CHAIN_PREFIX,
    SET_PREFIX,
    Endpoint,
    Policy,
    Ruleset,
    compile_node,
    flow_allowed,
    namespace_view,
    parse_policies,
)
from acklab.k8s.model.objects import Cluster
from acklab.k8s.realize.pod_agent import k8s_dir
from acklab.k8s.realize.pod_network import PodRecord, load_records
from netns.kernel import rules
from netns.kernel.files import write_json
from netns.kernel.ipset import destroy_sets
from netns.kernel.namespace import Namespace
from netns.model.errors import LabError

JUMP = ["FORWARD", "-j", "cali-FORWARD"]
JUMP_RULE = "-A " + " ".join(JUMP)  # as iptables-save prints it
RESTORE_ATTEMPTS = 5  # a transaction that lost a race with another writer of FORWARD is planned again, this often
_CT_FIELD = re.compile(r"(src|dst|sport|dport)=(\S+)")
_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}


def endpoints_from_records(records: Iterable[PodRecord],
                           namespace_labels: Mapping[str, Mapping[str, str]]) -> list[Endpoint]:
    return [Endpoint(r.pod.namespace, r.pod.name, dict(r.pod.labels), r.ip, r.node, r.pod.ports, r.host_ifname,
                     namespace_view(r.pod.namespace, namespace_labels.get(r.pod.namespace)))
            for r in sorted(records, key=lambda r: r.pod.key)]


@dataclass(frozen=True)
class Applied:
    """What a node has now: our chains (name → rule count) and sets (name → members)."""

    chains: dict[str, int]
    sets: dict[str, frozenset[str]]
    jump: bool  # FORWARD's first rule is our jump, and the only copy of it
    jumps: int = 0  # copies of our jump in FORWARD: each must be deleted when it is moved or removed


def read_applied(ns: Namespace) -> Applied:
    saved = ns.run(["iptables-save", "-t", "filter"]).stdout
    chains: dict[str, int] = {}
    forward = [line for line in saved.splitlines() if line.startswith("-A FORWARD ")]
    jumps = forward.count(JUMP_RULE)
    jump = jumps == 1 and forward[0] == JUMP_RULE  # ours, first, once
    for line in saved.splitlines():
        if line.startswith(f":{CHAIN_PREFIX}"):
            chains.setdefault(line[1:].split()[0], 0)
        elif line.startswith(f"-A {CHAIN_PREFIX}"):
            name = line.split()[1]
            chains[name] = chains.get(name, 0) + 1
    sets: dict[str, set[str]] = {}
    for line in ns.run(["ipset", "save"]).stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[1].startswith(SET_PREFIX):
            if parts[0] == "create":
                sets.setdefault(parts[1], set())
            elif parts[0] == "add":
                sets.setdefault(parts[1], set()).add(_normal_member(parts[2] if len(parts) > 2 else ""))
    return Applied(chains, {k: frozenset(v) for k, v in sets.items()}, jump, jumps)


def _normal_member(member: str) -> str:
    """ipset save's spelling of a member we wrote (``10.0.0.5/32`` is saved as ``10.0.0.5``)."""
    first, _, rest = member.partition(" ")
    first = first.removesuffix("/32")
    return f"{first} {rest}" if rest else first


def _state_file(lab: str, node: str) -> Path:
    return k8s_dir(lab) / f"{node}.netpol.json"


def _recorded(lab: str, node: str) -> dict[str, list[str]]:
    """The chains (name → rules) we last applied to the node, as we wrote them."""
    try:
        return json.loads(_state_file(lab, node).read_text())["chains"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return {}


@dataclass(frozen=True)
class Update:
    """What differs between the compiled ruleset and the node: the only parts an apply rewrites."""

    chains: list[str]  # to (re)write: new, or changed since we wrote them, or changed behind our back
    stale_chains: list[str]
    sets: list[str]  # to (re)fill
    stale_sets: list[str]
    jump: bool  # the FORWARD jump must be put (back) first

    def __bool__(self) -> bool:
        return bool(self.chains or self.stale_chains or self.sets or self.stale_sets or self.jump)


def plan_update(ruleset: Ruleset, applied: Applied, recorded: Mapping[str, list[str]]) -> Update:
    chains = [name for name, rules in ruleset.chains.items()
              if applied.chains.get(name) != len(rules) or recorded.get(name) != rules]
    sets = [name for name, s in ruleset.sets.items()
            if applied.sets.get(name) != frozenset(_normal_member(m) for m in s.members)]
    return Update(chains, sorted(set(applied.chains) - set(ruleset.chains)), sets,
                  sorted(set(applied.sets) - set(ruleset.sets)), bool(ruleset.chains) and not applied.jump)


def jump_transaction(jumps: int, insert: bool, chains: str = "*filter\nCOMMIT\n") -> str:
    """``chains`` (an ``iptables-restore --noflush`` input of the filter table) with our FORWARD jump moved or
    removed in the same transaction: each of the ``jumps`` copies deleted first, before ``chains`` may delete the
    chain they jump to, and, if ``insert``, one inserted first in FORWARD last, once the chains it refers to are
    declared. A deletion of a copy that another writer has removed meanwhile fails the whole transaction."""
    lines = chains.splitlines()
    if len(lines) < 2 or lines[0] != "*filter" or lines[-1] != "COMMIT":
        raise ValueError(f"not one filter-table transaction: {chains!r}")
    deletes = [f"-D {' '.join(JUMP)}"] * jumps
    inserts = [f"-I {JUMP[0]} 1 {' '.join(JUMP[1:])}"] if insert else []
    return "\n".join([lines[0], *deletes, *lines[1:-1], *inserts, "COMMIT", ""])


def update_transaction(ruleset: Ruleset, update: Update, jumps: int) -> str:
    """The one transaction of an apply: the chains that differ rewritten, stale ones removed and, if it is not
    (alone) first in FORWARD, the jump moved there."""
    chains = ruleset.iptables(update.stale_chains, only=update.chains)
    return jump_transaction(jumps if update.jump else 0, update.jump, chains)


def removal_transaction(applied: Applied) -> str:
    """The one transaction that removes all of ours: the jump(s), then every chain."""
    return jump_transaction(applied.jumps, False, Ruleset().iptables(applied.chains))


def _restore(ns: Namespace, text: str) -> str | None:
    """Run one ``iptables-restore --noflush`` transaction; what it refused (nothing was changed), or None."""
    return rules.try_iptables_restore(ns, text, noflush=True)


def _refused(node: str, what: str, error: str | None) -> LabError:
    return LabError(f"node {node}: iptables-restore refused to {what} {RESTORE_ATTEMPTS} times, each time after "
                    f"reading the rules again (another writer keeps changing FORWARD, or the rules are wrong): "
                    f"{error}")


def _write(ns: Namespace, node: str, ruleset: Ruleset, recorded: Mapping[str, list[str]]) -> Update:
    """Write the sets and chains that differ from ``ruleset``, and move the jump first; the update made (empty:
    nothing differed)."""
    error = None
    for _ in range(RESTORE_ATTEMPTS):
        # a refused transaction changed nothing, but another writer of FORWARD did: plan again from what is there
        applied = read_applied(ns)
        update = plan_update(ruleset, applied, recorded)
        if not update:
            return update
        if update.sets:  # before the chains: their rules match on the sets
            result = ns.run(["ipset", "restore", "-exist"], input=ruleset.ipsets(update.sets), check=False)
            if result.returncode != 0:
                raise LabError(f"node {node}: ipset restore refused the policy sets: {result.stderr.strip()}")
        if not (update.chains or update.stale_chains or update.jump):
            return update
        # the jump goes first in FORWARD, like Felix: before kube-proxy's KUBE-FORWARD accepts anything
        error = _restore(ns, update_transaction(ruleset, update, applied.jumps))
        if error is None:
            return update
    raise _refused(node, "apply the policy chains", error)


def apply_node(lab: str, node: str, netns: str, policies: list[Policy], endpoints: list[Endpoint],
               interface_dispatch: bool) -> list[str]:
    """Make the node's namespace enforce ``policies``, rewriting only the chains and sets that differ.
    Returns what changed (empty: nothing)."""
    ns = Namespace(netns)
    ruleset = compile_node(policies, endpoints, node, interface_dispatch)
    if not ruleset.chains:
        applied = read_applied(ns)
        return remove_node(lab, node, ns, applied) if applied.chains or applied.sets or applied.jumps else []
    update = _write(ns, node, ruleset, _recorded(lab, node))
    if not update:
        return []
    destroy_sets(ns, update.stale_sets)  # best effort: a set left over is unused and the next apply retries
    cut = sweep_conntrack(ns, policies, endpoints, node)
    write_json(_state_file(lab, node), {"chains": ruleset.chains}, indent=None)
    changes = [f"node {node}: {len(update.chains)} of {len(ruleset.chains)} policy chain(s) and "
               f"{len(update.sets)} of {len(ruleset.sets)} ipset(s) written, "
               f"{len(update.stale_chains)} chain(s) and {len(update.stale_sets)} ipset(s) removed"]
    if cut:
        changes.append(f"node {node}: {cut} established flow(s) now forbidden were cut")
    return changes


def remove_node(lab: str, node: str, ns: Namespace, applied: Applied) -> list[str]:
    """No policy left: our jump, chains and sets go (nothing is enforced, as with no policy engine). The jump and
    the chains go in one transaction, so no packet meets a jump to a chain being emptied."""
    error = None
    for attempt in range(RESTORE_ATTEMPTS):
        if attempt:  # the last transaction lost a race with another writer of FORWARD: read what is there now
            applied = read_applied(ns)
        if not (applied.chains or applied.jumps):
            break
        error = _restore(ns, removal_transaction(applied))
        if error is None:
            break
    else:
        raise _refused(node, "remove the policy chains", error)
    destroy_sets(ns, sorted(applied.sets))
    _state_file(lab, node).unlink(missing_ok=True)
    return [f"node {node}: no network policy left, policy chains and ipsets removed"]


def parse_conntrack(text: str) -> list[tuple[str, str, str, int, str, int]]:
    """(protocol, orig src, orig dst, orig sport, real dst, real dport) of ``conntrack -L`` lines for live
    TCP/UDP/SCTP flows; the real destination is the reply's source (a Service's DNAT undone). TCP entries count
    while ESTABLISHED; entries never answered ([UNREPLIED]) carry nothing to cut."""
    flows = []
    for line in text.splitlines():
        words = line.split()
        proto = _PROTOCOLS.get(words[0]) if words else None
        fields = _CT_FIELD.findall(line)
        if proto is None or len(fields) < 8 or "[UNREPLIED]" in words or (proto == "TCP" and words[3] != "ESTABLISHED"):
            continue
        orig, reply = dict(fields[:4]), dict(fields[4:8])
        flows.append((proto, orig["src"], orig["dst"], int(orig["sport"]), reply["src"], int(reply["sport"])))
    return flows


def sweep_conntrack(ns: Namespace, policies: list[Policy], endpoints: list[Endpoint], node: str) -> int:
    """Delete the entries of flows involving this node's pods that the policies no longer allow."""
    local = {e.ip for e in endpoints if e.node == node}
    cut = 0
    for proto, src, dst, sport, real_dst, dport in parse_conntrack(ns.run(["conntrack", "-L"], check=False).stdout):
        if src not in local and real_dst not in local:
            continue
        if flow_allowed(policies, endpoints, src, real_dst, proto, dport, node):
            continue
        gone = ns.run(["conntrack", "-D", "-p", proto.lower(), "-s", src, "-d", dst, "--sport", str(sport)],
                      check=False)
        cut += gone.returncode == 0
    return cut


def converge(lab: str, cluster: Cluster, nodes: Iterable[tuple[str, str]], datapath: str) -> list[str]:
    """Every node of ``nodes`` ((name, netns) pairs) enforces the cluster's policies over the lab's recorded pods.
    All policies are validated before any node is touched."""
    policies = parse_policies(cluster.network_policies)
    endpoints = endpoints_from_records(load_records(lab).values(), cluster.namespace_labels)
    changes: list[str] = []
    for name, netns in nodes:
        changes += apply_node(lab, name, netns, policies, endpoints, datapath == "terway-eniip")
    return changes
