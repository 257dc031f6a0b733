"""Removing what a lab left behind: its namespaces (and the processes in them) and its state files."""

from __future__ import annotations

import os
import shutil

from netns.kernel.link import links_of, remove_link
from netns.kernel.namespace import list_namespaces
from netns.model.names import PREFIX, lab_of, mark
from netns.realize import LOCK_DIR, state_dir
from netns.realize import security_group as sg
from netns.realize.vpc import VpcRouter, routers


def clean_lab(lab: str) -> list[str]:
    """Remove every namespace named ``acklab-<lab>-<cloud id>`` and ``/run/acklab/<lab>``; return what went."""
    removed = []
    for namespace in list_namespaces(mark(lab)):
        if lab_of(namespace.name) == lab:
            namespace.remove()
            removed.append(namespace.name)
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


def prune_lab(lab: str, keep: set[str]) -> list[str]:
    """Remove every object of ``lab`` whose cloud id is not in ``keep``; return what went.

    ``keep`` holds the ids a Pulumi checkpoint knows. After a crash of ``pulumi up`` the kernel can hold
    objects whose create was interrupted, so their id never reached the checkpoint: a half-made namespace,
    bridge, ENI port, security group or rule. Removing them lets the next ``pulumi up`` create them afresh,
    with no duplicate and no leak (ids are random per create, so a retried create never meets its own
    leftovers). Only for a lab no Pulumi operation is running on: an object being created is not yet known.
    """
    removed: list[str] = []
    for namespace in list_namespaces(mark(lab)):
        cloud_id = namespace.name[len(mark(lab)):]
        if lab_of(namespace.name) == lab and not cloud_id.startswith("vpc-") and cloud_id not in keep:
            namespace.remove()  # an ECS namespace: its veth pairs, and their router ends, go with it
            removed.append(namespace.name)
    for router in routers(lab):
        if router.vpc_id in keep:
            removed += _prune_router(router, keep)
        else:
            router.delete()
            removed.append(router.namespace.name)
    removed += _prune_security_groups(lab, keep)
    for router in routers(lab):
        sg.apply(router)  # the ruleset again matches the ENIs and groups that are left
    return removed


def _prune_router(router: VpcRouter, keep: set[str]) -> list[str]:
    """ENI ports and vSwitch bridges in a known router that the checkpoint does not know."""
    removed = []
    links = links_of(router.namespace)
    for kind, prefix in (("veth", "eni-"), ("bridge", "vsw-")):  # ports first, then their bridges
        for name in sorted(n for n, k in links.items() if k == kind and n.startswith(prefix) and n not in keep):
            remove_link(router.namespace, name)
            removed.append(f"{router.namespace.name}/{name}")
    return removed


def _prune_security_groups(lab: str, keep: set[str]) -> list[str]:
    removed = []
    folder = state_dir(lab) / "sg"
    for path in sorted(folder.glob("sg-*.json")) if folder.is_dir() else ():
        group = sg.load_group(lab, path.stem)
        if group is None:
            continue
        if group.sg_id not in keep:
            sg.delete_group(lab, group.sg_id)
            removed.append(group.sg_id)
            continue
        for rule in group.rules:
            if rule.rule_id not in keep:
                sg.remove_rule(lab, group.sg_id, rule.rule_id)
                removed.append(rule.rule_id)
    return removed
