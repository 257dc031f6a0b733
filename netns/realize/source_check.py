"""The source check of a VPC's bridge ports (see netns/model/source_check.py), kept in the router namespace.

Removing set elements is the slow part of an nftables transaction (the kernel waits for readers to finish:
~15 ms against ~5 ms for an add), so removals of ENIs that are gone are *deferred*: written to a pending file
and carried out by the next transaction (a bind) or by ``flush``. Until then ``bound`` leaves them out, so
allocation sees their addresses free; the entries themselves can match nothing, because their port is gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from netns.kernel import rules
from netns.kernel.namespace import Namespace
from netns.model import source_check as model

Pending = list[tuple[str, model.Address]]


def _nft(namespace: Namespace, text: str, check: bool = True) -> bool:
    if check:
        rules.nft(namespace, text, f"source check in {namespace.name}")
        return True
    return rules.try_nft(namespace, text) is None


def install(namespace: Namespace) -> None:
    """Create the table, sets and rules, once (re-declaring would duplicate the rules)."""
    if not rules.nft_table_exists(namespace, "bridge", model.TABLE):
        _nft(namespace, model.table_text())


def _listing(namespace: Namespace) -> dict[str, list[model.Address]]:
    result = namespace.run(["nft", "-j", "list", "table", "bridge", model.TABLE], check=False)
    return model.parse_listing(result.stdout) if result.returncode == 0 else {}


def _read_pending(pending: Path | None) -> Pending:
    if pending is None or not pending.exists():
        return []
    return [(port, model.Address(addr)) for port, addr in (line.split() for line in pending.read_text().split("\n")
                                                             if line.strip())]


def bound(namespace: Namespace, pending: Path | None = None) -> dict[str, list[model.Address]]:
    """Every port → the addresses bound to it (deferred removals already left out)."""
    gone = set(_read_pending(pending))
    listing = _listing(namespace)
    return {port: kept for port, addrs in listing.items() if (kept := [a for a in addrs if (port, a) not in gone])}


def _removals(entries: Pending) -> str:
    by_port: dict[str, list[model.Address]] = {}
    for port, addr in entries:
        by_port.setdefault(port, []).append(addr)
    return "".join(model.element_command("delete", port, addrs) for port, addrs in sorted(by_port.items()))


def bind(namespace: Namespace, port: str, addresses: Iterable[model.Address], pending: Path | None = None) -> None:
    """Bind addresses to a port, in one transaction with the deferred removals."""
    deferred = _read_pending(pending)
    text = _removals(deferred) + model.element_command("add", port, addresses)
    if not text:
        return
    if not _nft(namespace, text, check=not deferred):
        present = _listing(namespace)  # some deferred removal is already gone: keep the ones still there
        deferred = [(p, a) for p, a in deferred if a in present.get(p, ())]
        _nft(namespace, _removals(deferred) + model.element_command("add", port, addresses))
    if pending is not None and deferred:
        pending.unlink(missing_ok=True)


def unbind(namespace: Namespace, port: str, addresses: Iterable[model.Address], pending: Path | None = None,
           defer: bool = False) -> None:
    """Remove the port's given addresses (idempotent). ``defer``: for a port that is going away."""
    wanted = set(addresses)
    if not wanted:
        return
    if defer and pending is not None:
        pending.parent.mkdir(parents=True, exist_ok=True)
        with pending.open("a") as out:
            out.writelines(f"{port} {addr}\n" for addr in sorted(wanted))
        return
    if _nft(namespace, model.element_command("delete", port, wanted), check=False):
        return
    present = set(_listing(namespace).get(port, ())) & wanted  # some were gone: delete only the rest
    text = model.element_command("delete", port, present)
    if text:
        _nft(namespace, text)


def flush(namespace: Namespace, pending: Path) -> None:
    """Carry out the deferred removals now."""
    deferred = _read_pending(pending)
    if deferred:
        bind(namespace, "", [], pending)
