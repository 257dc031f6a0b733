"""Realizations: each cloud object mapped onto kernel objects, idempotent create / read / delete."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from netns.model.names import check_lab

LOCK_DIR = "/run/acklab"


def state_dir(lab: str) -> Path:
    """Where a lab keeps its lock and the API state that has no kernel object (removed by `acklab clean`)."""
    return Path(LOCK_DIR) / check_lab(lab)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` (created with its folder), held for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def lab_lock(lab: str) -> AbstractContextManager[None]:
    """Serialize the read-modify-write steps of one lab (address allocation, overlap checks).

    Pulumi creates resources in parallel; without this lock two ECS could be handed the same address.
    """
    return file_lock(state_dir(lab) / "lock")


def parse_alias(alias: str | None) -> dict[str, str]:
    """Kernel objects carry their cloud facts in ``ifalias`` as ``key=value`` words."""
    return dict(word.split("=", 1) for word in (alias or "").split() if "=" in word)


IFALIAS_MAX = 255  # bytes the kernel keeps in an interface alias (IFALIASZ - 1)


def words(facts: dict[str, str], key: str) -> tuple[str, ...]:
    """A comma-separated fact (``secondary=a,b``, ``sg=...``, ``routes=...``) as a tuple, empty if absent."""
    return tuple(w for w in facts.get(key, "").split(",") if w)


def pack_addresses(addresses: Iterable[str]) -> str:
    """IPv4 addresses as one alias word, in their order, compactly: the alias holds 255 bytes and Terway's ENIs
    carry up to 30 secondary IPs. A run of consecutive addresses in one /24 is ``a.b.c.5-9``; an address (or run)
    in the same /24 as the one before it drops that prefix (``.12``). ``192.168.3.5,192.168.3.7`` (the plain
    list) reads the same."""
    parts: list[str] = []
    prefix = None
    ips = [str(a) for a in addresses]
    i = 0
    while i < len(ips):
        head, _, last = ips[i].rpartition(".")
        end = i
        while end + 1 < len(ips) and ips[end + 1].rpartition(".")[0] == head \
                and int(ips[end + 1].rpartition(".")[2]) == int(last) + (end + 1 - i):
            end += 1
        span = last if end == i else f"{last}-{ips[end].rpartition('.')[2]}"
        parts.append(f".{span}" if head == prefix else f"{head}.{span}")
        prefix, i = head, end + 1
    return ",".join(parts)


def unpack_addresses(text: str) -> tuple[str, ...]:
    """The addresses of :func:`pack_addresses` (or a plain comma-separated list), in order."""
    found: list[str] = []
    prefix = ""
    for part in (w for w in text.split(",") if w):
        head, _, span = part.rpartition(".")
        prefix = head or prefix
        first, _, last = span.partition("-")
        found += [f"{prefix}.{n}" for n in range(int(first), int(last or first) + 1)]
    return tuple(found)


def alias_addresses(facts: dict[str, str], key: str = "secondary") -> tuple[str, ...]:
    """An alias fact holding addresses (``secondary=``) as a tuple, empty if absent."""
    return unpack_addresses(facts.get(key, ""))


def format_alias(**facts: str) -> str:
    alias = " ".join(f"{key}={value}" for key, value in facts.items())
    if len(alias.encode()) > IFALIAS_MAX:  # providers bound every part; this guards the sum
        raise ValueError(f"interface alias of {len(alias.encode())} bytes exceeds the kernel's {IFALIAS_MAX}: {alias}")
    return alias
