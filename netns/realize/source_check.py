"""The source check of a VPC's bridge ports (see netns/model/source_check.py), kept in the router namespace."""

from __future__ import annotations

from collections.abc import Iterable

from netns.kernel.namespace import Namespace
from netns.model import source_check as model
from netns.model.errors import LabError


def _nft(namespace: Namespace, text: str) -> None:
    result = namespace.run(["nft", "-f", "-"], input=text, check=False)
    if result.returncode != 0:
        raise LabError(f"source check in {namespace.name}: nft refused: {result.stderr.strip()}")


def install(namespace: Namespace) -> None:
    """Create the table, set and rules, once (re-declaring would duplicate the rules)."""
    if namespace.run(["nft", "list", "table", "bridge", model.TABLE], check=False).returncode != 0:
        _nft(namespace, model.table_text())


def bound(namespace: Namespace) -> dict[str, list[model.Address]]:
    """Every port → the addresses bound to it."""
    result = namespace.run(["nft", "-j", "list", "table", "bridge", model.TABLE], check=False)
    if result.returncode != 0:
        return {}
    return model.parse_listing(result.stdout)


def bind(namespace: Namespace, port: str, addresses: Iterable[model.Address]) -> None:
    text = model.element_command("add", port, addresses)
    if text:
        _nft(namespace, text)


def unbind(namespace: Namespace, port: str, addresses: Iterable[model.Address]) -> None:
    """Remove the port's given addresses; those already gone are skipped (unbinding is idempotent)."""
    wanted = set(addresses)
    text = model.element_command("delete", port, wanted)
    if not text or namespace.run(["nft", "-f", "-"], input=text, check=False).returncode == 0:
        return
    present = set(bound(namespace).get(port, ())) & wanted  # some were gone: delete only the rest
    text = model.element_command("delete", port, present)
    if text:
        _nft(namespace, text)
