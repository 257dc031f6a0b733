"""kube-proxy's sync on one node: compiled rules → the node's namespace, atomically, only when they changed.

The compiler (:mod:`acklab.k8s.kube_proxy`) builds the text; this adapter does what upstream's
``syncProxyRules`` does around it:

- read the node's current ruleset (``iptables-save``) for the service chains that exist — chains no longer
  wanted are flushed and deleted in the same restore, as upstream does;
- make sure the jumps from the built-in chains exist (upstream ensures them one by one with ``-C``/``-I``;
  here missing ones are prepended inside the same ``iptables-restore --noflush`` transaction);
- apply nothing when the compiled text is what was applied last and the jumps are in place ("a sync with
  nothing changed applies nothing"): the digest of the last applied text is kept per node in the lab's state;
- ``route_localnet`` on, for NodePorts on 127.0.0.1 (kube-proxy sets it; kubelet's KUBE-FIREWALL closes the
  hole it opens), only inside the node's namespace.

Everything runs inside the node's network namespace (``nsenter --net``); nothing touches any other namespace.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from acklab.k8s.agent import k8s_dir
from acklab.k8s.kube_proxy import ProxierConfig, ServicePortInfo, compile_rules, is_service_chain, jump_rules
from acklab.k8s.services import Manifest, Pod, resolve
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
    def _digest_file(self) -> Path:
        return k8s_dir(self.lab) / f"kube-proxy.{self.node}.sha256"

    def _saved_digest(self) -> str | None:
        try:
            return self._digest_file.read_text().strip()
        except FileNotFoundError:
            return None

    def current(self) -> Ruleset:
        result = self.namespace.run(["iptables-save", "-t", "filter"], check=False)
        nat = self.namespace.run(["iptables-save", "-t", "nat"], check=False)
        if result.returncode != 0 or nat.returncode != 0:
            raise LabError(f"kube-proxy on {self.node}: iptables-save failed in {self.namespace.name}: "
                           f"{(result.stderr or nat.stderr).strip()}")
        return Ruleset.parse(result.stdout + nat.stdout)

    def text(self, service_ports: Iterable[ServicePortInfo], current: Ruleset) -> str:
        """The restore input for this sync: compiled rules, stale chains removed, missing jumps prepended."""
        text = compile_rules(service_ports, self.config, current.chains.get("nat", set()))
        missing = [j for j in jump_rules(self.config) if (j.table, j.chain, j.target) not in current.jumps]
        if not missing:
            return text
        sections = text.split("COMMIT\n")
        out = []
        for section in sections[:-1]:
            table = section.split("\n", 1)[0].lstrip("*")
            inserts = [" ".join(["-I", j.chain, "1", *(_quote(a) for a in j.args())])
                       for j in reversed(missing) if j.table == table]
            out.append(section + "".join(line + "\n" for line in inserts) + "COMMIT\n")
        return "".join(out) + sections[-1]

    def sync(self, service_ports: Iterable[ServicePortInfo]) -> SyncResult:
        """Apply the rules for ``service_ports``; apply nothing when they are what is already applied."""
        start = time.monotonic()
        ports = list(service_ports)
        if not self.namespace.exists():
            raise LabError(f"kube-proxy on {self.node}: namespace {self.namespace.name} does not exist")
        current = self.current()
        wanted = compile_rules(ports, self.config)  # validates before anything is applied
        digest = hashlib.sha256(wanted.encode()).hexdigest()
        stale = {c for c in current.chains.get("nat", set()) if is_service_chain(c)} - _declared(wanted)
        jumps_ok = all((j.table, j.chain, j.target) in current.jumps for j in jump_rules(self.config))
        if digest == self._saved_digest() and jumps_ok and not stale and "KUBE-SERVICES" in current.chains.get(
                "nat", set()):
            return SyncResult(False, 0, len(ports), time.monotonic() - start)
        if self.config.localhost_nodeports:
            self.namespace.sysctl("net.ipv4.conf.all.route_localnet", 1)
        text = self.text(ports, current)
        result = self.namespace.run(["iptables-restore", "--noflush", "--wait"], input=text, check=False,
                                    timeout=300)
        if result.returncode != 0:
            raise LabError(f"kube-proxy on {self.node}: iptables-restore refused the rules: "
                           f"{result.stderr.strip()}")
        self._digest_file.parent.mkdir(parents=True, exist_ok=True)
        self._digest_file.write_text(digest + "\n")
        return SyncResult(True, text.count("\n"), len(ports), time.monotonic() - start)

    def forget(self) -> None:
        """Drop the saved digest (the next sync applies the rules again)."""
        self._digest_file.unlink(missing_ok=True)


def _declared(text: str) -> set[str]:
    return {line[1:].split(" ", 1)[0] for line in text.splitlines() if line.startswith(":")}


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


def cluster_pods(lab: str) -> list[Pod]:
    """Every pod of the lab as the endpoint controller sees it (from the pod network's records)."""
    from acklab.k8s.pods import load_records

    return [Pod.of(r.pod, r.ip, r.node) for r in load_records(lab).values()]


def sync_node(lab: str, node: str, netns: str, services: list[Manifest], pods: list[Pod],
              node_ip: str | None = None, cluster_cidr: str | None = None) -> SyncResult:
    """Resolve ``services`` (with their allocations filled in, see ``apiserver.with_status``) for ``node`` and
    sync its rules. ``cluster_cidr`` is kube-proxy's ``--cluster-cidr`` (None: no local-traffic detection, as
    a Terway cluster without one)."""
    resolved = resolve(services, pods, node)
    config = ProxierConfig(cluster_cidr=cluster_cidr, node_ip=node_ip)
    return NodeProxier(lab, node, netns, config).sync(resolved.service_ports)
