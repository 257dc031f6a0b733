"""NetworkPolicy on the kernel: one node's compiled chains and ipsets applied in its namespace, atomically, only
when they differ from what is there; established flows the new policies forbid are cut (their conntrack
entries deleted, like Felix does for removed endpoints).

Order of an apply: ``ipset restore`` (new sets made, changed ones filled under a temporary name and swapped),
``iptables-restore --noflush`` (our ``cali-*`` chains only; stale ones flushed and deleted in the same
transaction), the ``FORWARD → cali-FORWARD`` jump put back at position 1 if it is missing or another
component (kube-proxy prepends its own jumps) has come before it, stale sets destroyed,
then the conntrack sweep. KUBE-* chains and built-in chains other than our one jump are never touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from acklab.k8s.agent import k8s_dir
from acklab.k8s.model import Cluster, Pod
from acklab.k8s.network_policy import (
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
from acklab.k8s.pods import PodRecord, host_ifname, load_records
from netns.kernel.namespace import Namespace
from netns.model.errors import LabError

JUMP = ["FORWARD", "-j", "cali-FORWARD"]
_CT_FIELD = re.compile(r"(src|dst|sport|dport)=(\S+)")
_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}


def endpoints_from_records(records: Iterable[PodRecord],
                           namespace_labels: Mapping[str, Mapping[str, str]]) -> list[Endpoint]:
    return [Endpoint(r.pod.namespace, r.pod.name, dict(r.pod.labels), r.ip, r.node, r.pod.ports, r.host_ifname,
                     namespace_view(r.pod.namespace, namespace_labels.get(r.pod.namespace)))
            for r in sorted(records, key=lambda r: r.pod.key)]


def endpoints_from_placements(placements: Iterable[Mapping], namespace_labels: Mapping[str, Mapping[str, str]]
                              ) -> list[Endpoint]:
    """The pods of the controller's plan (``acklab.lab.pod_plan``'s placements, as data): nothing is read from
    other nodes, so this works when nodes share no file system (SSH mode)."""
    result = []
    for item in placements:
        pod = Pod.from_dict(item["pod"])
        result.append(Endpoint(pod.namespace, pod.name, dict(pod.labels), item["ip"], item["node"], pod.ports,
                               host_ifname(pod.namespace, pod.name),
                               namespace_view(pod.namespace, namespace_labels.get(pod.namespace))))
    return sorted(result, key=lambda e: e.key)


@dataclass(frozen=True)
class Applied:
    """What a node has now: our chains (name → rule count) and sets (name → members)."""

    chains: dict[str, int]
    sets: dict[str, frozenset[str]]
    jump: bool  # FORWARD's first rule is our jump


def read_applied(ns: Namespace) -> Applied:
    saved = ns.run(["iptables-save", "-t", "filter"]).stdout
    chains: dict[str, int] = {}
    forward = [line for line in saved.splitlines() if line.startswith("-A FORWARD ")]
    jump = bool(forward) and forward[0] == "-A FORWARD -j cali-FORWARD"  # ours, and first
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
    return Applied(chains, {k: frozenset(v) for k, v in sets.items()}, jump)


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


def apply_node(lab: str, node: str, netns: str, policies: list[Policy], endpoints: list[Endpoint],
               interface_dispatch: bool) -> list[str]:
    """Make the node's namespace enforce ``policies``, rewriting only the chains and sets that differ.
    Returns what changed (empty: nothing)."""
    ns = Namespace(netns)
    ruleset = compile_node(policies, endpoints, node, interface_dispatch)
    applied = read_applied(ns)
    if not ruleset.chains:
        return remove_node(lab, node, ns, applied) if applied.chains or applied.sets or applied.jump else []
    update = plan_update(ruleset, applied, _recorded(lab, node))
    if not update:
        return []
    if update.sets:
        result = ns.run(["ipset", "restore", "-exist"], input=ruleset.ipsets(update.sets), check=False)
        if result.returncode != 0:
            raise LabError(f"node {node}: ipset restore refused the policy sets: {result.stderr.strip()}")
    if update.chains or update.stale_chains:
        text = ruleset.iptables(update.stale_chains, only=update.chains)
        result = ns.run(["iptables-restore", "--noflush"], input=text, check=False)
        if result.returncode != 0:
            raise LabError(f"node {node}: iptables-restore refused the policy chains: {result.stderr.strip()}")
    if update.jump:  # first in FORWARD, like Felix: before kube-proxy's KUBE-FORWARD accepts anything
        while ns.run(["iptables", "-D", *JUMP], check=False).returncode == 0:
            pass
        ns.run(["iptables", "-I", JUMP[0], "1", *JUMP[1:]])
    for name in update.stale_sets:
        ns.run(["ipset", "destroy", name], check=False)
    cut = sweep_conntrack(ns, policies, endpoints, node)
    state = _state_file(lab, node)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"chains": ruleset.chains}, sort_keys=True))
    changes = [f"node {node}: {len(update.chains)} of {len(ruleset.chains)} policy chain(s) and "
               f"{len(update.sets)} of {len(ruleset.sets)} ipset(s) written, "
               f"{len(update.stale_chains)} chain(s) and {len(update.stale_sets)} ipset(s) removed"]
    if cut:
        changes.append(f"node {node}: {cut} established flow(s) now forbidden were cut")
    return changes


def remove_node(lab: str, node: str, ns: Namespace, applied: Applied) -> list[str]:
    """No policy left: our jump, chains and sets go (nothing is enforced, as with no policy engine)."""
    while ns.run(["iptables", "-D", *JUMP], check=False).returncode == 0:
        pass
    if applied.chains:
        result = ns.run(["iptables-restore", "--noflush"], input=Ruleset().iptables(applied.chains), check=False)
        if result.returncode != 0:
            raise LabError(f"node {node}: iptables-restore could not remove the policy chains: {result.stderr}")
    for name in sorted(applied.sets):
        ns.run(["ipset", "destroy", name], check=False)
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
