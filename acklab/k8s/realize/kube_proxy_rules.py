"""acklab's kube-proxy compiler applied to a namespace: compiled rules → the namespace, atomically, only when they
changed. Nodes run upstream kube-proxy (``realize/kube_proxy``); this applier serves the compiler as an oracle: the
benches (``bench/k8s_api.py``, ``bench/kube_proxy_scale.py``) time it beside upstream's and raw
``iptables-restore`` of the same rules.

The compiler (:mod:`acklab.k8s.model.kube_proxy_rules`) builds the text; this adapter does what upstream's
``syncProxyRules`` does around it:

- know the service chains that exist — chains no longer wanted are flushed and deleted in the same restore, as
  upstream does. Upstream reads them from ``iptables-save`` on every full sync; with the nft backend that dump
  costs seconds at 10k Services, so the chains this proxier made are kept per node in the lab's state (with the
  digest of the text applied), and the ruleset is read only when that state is unknown;
- make sure the jumps from the built-in chains exist (upstream ensures them one by one with ``-C``/``-I``;
  here they are read per built-in chain and missing ones are prepended inside the same
  ``iptables-restore --noflush`` transaction);
- apply nothing when the compiled text is what was applied last and the jumps are in place ("a sync with
  nothing changed applies nothing");
- UDP has no connection to end: like upstream, conntrack entries of UDP flows to an endpoint that was removed
  are deleted (clients would keep talking to it), and so are entries of a UDP service address that had no
  endpoint and now has one (they would keep being rejected); ``conntrack -D``, in the node's namespace;
- ``route_localnet`` on, for NodePorts on 127.0.0.1 (kube-proxy sets it; kubelet's KUBE-FIREWALL closes the
  hole it opens), only inside the node's namespace.

Everything runs inside the node's network namespace (``nsenter --net``); nothing touches any other namespace.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from acklab.k8s.model.kube_proxy_rules import (
    ProxierConfig,
    ServicePortInfo,
    compile_rules,
    is_service_chain,
    jump_rules,
)
from acklab.k8s.realize.pod_agent import k8s_dir
from netns.kernel.files import write_json
from netns.kernel.namespace import Namespace
from netns.model.errors import LabError


@dataclass(frozen=True)
class SyncResult:
    changed: bool
    lines: int  # lines of iptables-restore input applied (0 when nothing changed)
    service_ports: int
    seconds: float


@dataclass(frozen=True)
class Ruleset:
    """What ``iptables-save`` shows of one namespace: chains per table and (table, chain, target) jumps."""

    chains: dict[str, set[str]]
    jumps: set[tuple[str, str, str]]

    @staticmethod
    def parse(text: str) -> Ruleset:
        chains: dict[str, set[str]] = {}
        jumps: set[tuple[str, str, str]] = set()
        table = ""
        for line in text.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
                chains.setdefault(table, set())
            elif line.startswith(":"):
                chains.setdefault(table, set()).add(line[1:].split(" ", 1)[0])
            elif line.startswith("-A ") and " -j " in line:
                chain = line.split(" ", 2)[1]
                target = line.rsplit(" -j ", 1)[1].split(" ", 1)[0]
                jumps.add((table, chain, target))
        return Ruleset(chains, jumps)


class NodeProxier:
    """The kube-proxy of one node: ``sync(service_ports)`` is its syncProxyRules."""

    def __init__(self, lab: str, node: str, netns: str, config: ProxierConfig | None = None) -> None:
        self.lab = lab
        self.node = node
        self.namespace = Namespace(netns)
        self.config = config or ProxierConfig()

    @property
    def _state_file(self) -> Path:
        return k8s_dir(self.lab) / f"kube-proxy.{self.node}.json"

    def _saved(self) -> dict | None:
        """What the last sync applied: its digest and the service chains it made (None: unknown)."""
        try:
            return json.loads(self._state_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def current(self) -> Ruleset:
        """The node's whole ruleset (``iptables-save``; costly on big rulesets with the nft backend)."""
        result = self.namespace.run(["iptables-save"], check=False, timeout=300)
        if result.returncode != 0:
            raise LabError(f"kube-proxy on {self.node}: iptables-save failed in {self.namespace.name}: "
                           f"{result.stderr.strip()}")
        return Ruleset.parse(result.stdout)

    def _jumps(self) -> set[tuple[str, str, str]]:
        """The jumps found in the built-in chains kube-proxy hooks into, read chain by chain: listing one
        chain does not make iptables-nft fetch the service chains (which ``iptables-save`` would)."""
        chains = sorted({(j.table, j.chain) for j in jump_rules(self.config)})
        script = "; ".join(f"echo '*{table}'; iptables -w -t {table} -S {chain}" for table, chain in chains)
        result = self.namespace.run(["sh", "-c", script], check=False)
        return Ruleset.parse(result.stdout).jumps

    def text(self, service_ports: Iterable[ServicePortInfo], existing: Ruleset) -> str:
        """The restore input from a node whose ruleset is ``existing``: compiled rules, service chains no longer
        wanted removed, missing jumps prepended."""
        return self._text(compile_rules(service_ports, self.config), existing.chains.get("nat", set()),
                          existing.jumps)

    def _text(self, wanted: str, nat_chains: set[str], jumps: set[tuple[str, str, str]]) -> str:
        stale = sorted({c for c in nat_chains if is_service_chain(c)} - _declared(wanted))
        missing = [j for j in jump_rules(self.config) if (j.table, j.chain, j.target) not in jumps]
        out = []
        for section in wanted.split("COMMIT\n")[:-1]:
            head, _, body = section.partition("\n")
            table = head.lstrip("*")
            tail = []
            if table == "nat" and stale:  # declared (so flushed) first, deleted last: as upstream writes it
                head += "".join(f"\n:{c} - [0:0]" for c in stale)
                tail += [f"-X {c}" for c in stale]
            tail += [" ".join(["-I", j.chain, "1", *(_quote(a) for a in j.args())])
                     for j in reversed(missing) if j.table == table]
            out.append(head + "\n" + body + "".join(line + "\n" for line in tail) + "COMMIT\n")
        return "".join(out)

    def sync(self, service_ports: Iterable[ServicePortInfo]) -> SyncResult:
        """Apply the rules for ``service_ports``; apply nothing when they are what is already applied."""
        start = time.monotonic()
        ports = list(service_ports)
        if not self.namespace.exists():
            raise LabError(f"kube-proxy on {self.node}: namespace {self.namespace.name} does not exist")
        wanted = compile_rules(ports, self.config)  # validates before anything is read or applied
        digest = hashlib.sha256(wanted.encode()).hexdigest()
        saved = self._saved()
        if saved is None:  # unknown state (first sync, or forgotten): read the ruleset itself
            current = self.current()
            nat_chains, jumps = current.chains.get("nat", set()), current.jumps
        else:  # the chains are the ones this proxier made; the jumps are checked on the kernel
            nat_chains, jumps = set(saved.get("chains") or ()), self._jumps()
            hooked = all((j.table, j.chain, j.target) in jumps for j in jump_rules(self.config))
            if saved.get("digest") == digest and hooked:
                return SyncResult(False, 0, len(ports), time.monotonic() - start)
        text = self._text(wanted, nat_chains, jumps)
        prelude = "sysctl -qw net.ipv4.conf.all.route_localnet=1; " if self.config.localhost_nodeports else ""
        result = self.namespace.run(["sh", "-c", prelude + "exec iptables-restore --noflush --wait"], input=text,
                                    check=False, timeout=900)
        if result.returncode != 0:
            self.forget()
            raise LabError(f"kube-proxy on {self.node}: iptables-restore refused the rules: "
                           f"{result.stderr.strip()}")
        chains = sorted(c for c in _declared(wanted) if is_service_chain(c))
        udp = udp_flows(ports)
        self._clear_stale_udp(saved, udp)
        write_json(self._state_file, {"digest": digest, "chains": chains, "udp": sorted(udp)}, indent=None)
        return SyncResult(True, text.count("\n"), len(ports), time.monotonic() - start)

    def _clear_stale_udp(self, saved: dict | None, udp: set[tuple[str, int, str]]) -> None:
        """Delete the conntrack entries of UDP flows whose endpoint went away, and of UDP service addresses that
        had no endpoint before (``saved`` is the previous sync's state; unknown → nothing to compare)."""
        if saved is None:
            return
        before = {tuple(flow) for flow in saved.get("udp") or ()}
        served_before = {(ip, port) for ip, port, endpoint in before if endpoint}
        commands = [f"conntrack -D -p udp --orig-dst {ip} --orig-port-dst {port} --reply-src {endpoint}"
                    for ip, port, endpoint in sorted(before - udp) if endpoint]
        commands += [f"conntrack -D -p udp --orig-dst {ip} --orig-port-dst {port}"
                     for ip, port in sorted({(ip, port) for ip, port, endpoint in udp if endpoint} - served_before)]
        if commands:  # exit status 1 means "nothing matched": fine
            self.namespace.run(["sh", "-c", "; ".join(f"{c} >/dev/null 2>&1" for c in commands) + "; true"],
                               check=False)

    def forget(self) -> None:
        """Drop what is known of the applied rules (the next sync reads the ruleset and applies again)."""
        self._state_file.unlink(missing_ok=True)


def udp_flows(ports: Iterable[ServicePortInfo]) -> set[tuple[str, int, str]]:
    """(service address, port, endpoint IP) of every UDP service address and its serving endpoints; an address
    without endpoints is kept as (address, port, "")."""
    flows: set[tuple[str, int, str]] = set()
    for sp in ports:
        if sp.protocol != "UDP":
            continue
        addresses = (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips)
        endpoints = [ep.ip for ep in sp.endpoints if ep.ready] or [""]
        flows |= {(address, sp.port, ep) for address in addresses for ep in endpoints}
    return flows


def _declared(text: str) -> set[str]:
    return {line[1:].split(" ", 1)[0] for line in text.splitlines() if line.startswith(":")}


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg
