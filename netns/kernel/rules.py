"""Rule sets into a namespace's netfilter, each in one transaction: ``nft -f`` and ``iptables-restore``.

The one applier of acklab's own rule programs (security groups, the source check, EIP and NAT gateway tables,
the SLB's layer 4, the NetworkPolicy agent, the pod datapaths' extra rules): a rule program is rendered as text by
a pure model, then applied here, where the kernel takes all of it or none. What the kernel refused is raised as
``RulesRefused`` naming what was applied and quoting the tool; ``try_*`` return it instead, for callers that retry
(a transaction can lose a race with another writer of the same table).
"""

from __future__ import annotations

from netns.kernel.namespace import Namespace
from netns.model.errors import LabError

SHOWN = 2000  # characters of a refused rule text quoted in the error


class RulesRefused(LabError):
    """The kernel refused a rule transaction (nothing of it was applied)."""


def try_nft(namespace: Namespace, text: str) -> str | None:
    """Apply ``text`` with one ``nft -f``; what nft said when it refused (nothing changed), or None."""
    result = namespace.run(["nft", "-f", "-"], input=text, check=False)
    return None if result.returncode == 0 else result.stderr.strip()


def nft(namespace: Namespace, text: str, what: str, show_text: bool = False) -> None:
    refused = try_nft(namespace, text)
    if refused is not None:
        raise RulesRefused(f"{what}: nft refused the rules: {refused}" + (f"\n{text[:SHOWN]}" if show_text else ""))


def nft_table_exists(namespace: Namespace, family: str, table: str) -> bool:
    return namespace.exists() and \
        namespace.run(["nft", "list", "table", family, table], check=False).returncode == 0


def try_iptables_restore(namespace: Namespace, text: str, noflush: bool = False) -> str | None:
    """One ``iptables-restore`` transaction (``noflush``: chains the text does not name stay as they are); what it
    refused (nothing changed), or None."""
    result = namespace.run(["iptables-restore", *(["--noflush"] if noflush else [])], input=text, check=False)
    return None if result.returncode == 0 else result.stderr.strip()


def iptables_restore(namespace: Namespace, text: str, what: str, noflush: bool = False) -> None:
    refused = try_iptables_restore(namespace, text, noflush)
    if refused is not None:
        raise RulesRefused(f"{what}: iptables-restore refused the rules: {refused}")
