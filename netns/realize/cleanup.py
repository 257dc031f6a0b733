"""Removing what a lab left behind: its namespaces (and the processes in them) and its state files."""

from __future__ import annotations

import os
import shutil

from netns.kernel.namespace import list_namespaces
from netns.model.names import PREFIX, lab_of, mark
from netns.realize import LOCK_DIR, slb, state_dir


def clean_lab(lab: str) -> list[str]:
    """Remove every namespace named ``acklab-<lab>-<cloud id>`` and ``/run/acklab/<lab>``; return what went."""
    removed = []
    for namespace in list_namespaces(mark(lab)):
        if lab_of(namespace.name) == lab:
            namespace.remove()
            removed.append(namespace.name)
    removed += [f"haproxy pid {pid}" for pid in slb.end_leftover_haproxy(lab)]  # SLBs whose namespace vanished
    state = state_dir(lab)
    if state.is_dir():
        shutil.rmtree(state)
        removed.append(str(state))
    return removed


def labs_present() -> set[str]:
    """Every lab with a namespace or state files on this machine."""
    labs = {lab_of(ns.name) for ns in list_namespaces(PREFIX)} - {None}
    if os.path.isdir(LOCK_DIR):
        labs |= {name for name in os.listdir(LOCK_DIR) if os.path.isdir(os.path.join(LOCK_DIR, name))}
    return labs  # type: ignore[return-value]
