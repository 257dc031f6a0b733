"""Security groups → the filter table of the VPC router namespace (see netns/model/security_group.py).

A group and its rules are API state with no kernel object of their own: they are kept as one JSON file per
group under ``/run/acklab/<lab>/sg/`` (removed with the lab). Membership is kernel state: each ENI's port
carries ``sg=...`` in its alias. ``apply`` rebuilds the ipsets of profiles and members from both and swaps
the ruleset in atomically with iptables-restore (an unchanged ruleset is not applied again); ``join`` and
``leave`` are the fast path of an ENI coming and going: set entries only, sent over netlink (nothing forks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
from pathlib import Path

from netns.kernel import rules
from netns.kernel.files import write_atomic, write_json
from netns.kernel.ipset import Change, IpsetError, destroy_sets, update_members
from netns.model.errors import LabError, NotFoundError
from netns.model.security_group import (
    SET_TYPE,
    Eni,
    Group,
    Rule,
    compile_ruleset,
    member_set,
    profile_id,
    profile_set,
    profiles_of,
    set_contents,
)
from netns.realize import alias_addresses, lab_lock, state_dir, words
from netns.realize.vpc import VpcRouter


def _group_path(lab: str, sg_id: str) -> Path:
    return state_dir(lab) / "sg" / f"{sg_id}.json"


def load_group(lab: str, sg_id: str) -> Group | None:
    try:
        data = json.loads(_group_path(lab, sg_id).read_text())
    except FileNotFoundError:
        return None
    rules = tuple(Rule(**{**r, "ports": tuple(r["ports"]) if r["ports"] else None}) for r in data["rules"])
    return Group(data["sg_id"], data["vpc_id"], data["group_type"], data["inner_access_policy"], rules)


def load_groups(lab: str, vpc_id: str) -> dict[str, Group]:
    folder = state_dir(lab) / "sg"
    groups = (load_group(lab, path.stem) for path in sorted(folder.glob("sg-*.json"))) if folder.exists() else ()
    return {g.sg_id: g for g in groups if g is not None and g.vpc_id == vpc_id}


def _save_group(lab: str, group: Group) -> None:
    write_json(_group_path(lab, group.sg_id), {**dataclasses.asdict(group), "rules": [dataclasses.asdict(r)
                                                                                  for r in group.rules]})


def create_group(lab: str, group: Group) -> None:
    router = VpcRouter(lab, group.vpc_id)
    with lab_lock(lab):
        if router.cidr() is None:
            raise NotFoundError(f"ecs.SecurityGroup {group.sg_id}: vpc_id: VPC {group.vpc_id} does not exist")
        existing = load_group(lab, group.sg_id)
        _save_group(lab, dataclasses.replace(group, rules=existing.rules if existing else ()))
        _apply_locked(router)


def delete_group(lab: str, sg_id: str) -> None:
    with lab_lock(lab):
        group = load_group(lab, sg_id)
        _group_path(lab, sg_id).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the last group of the lab gone: no empty sg/ folder is left behind
            _group_path(lab, sg_id).parent.rmdir()
        if group is not None:
            _apply_locked(VpcRouter(lab, group.vpc_id))


def add_rule(lab: str, sg_id: str, rule: Rule) -> None:
    with lab_lock(lab):
        group = load_group(lab, sg_id)
        if group is None:
            raise NotFoundError(f"ecs.SecurityGroupRule {rule.rule_id}: security_group_id: {sg_id} does not exist")
        if rule.peer_group is not None:
            peer = load_group(lab, rule.peer_group)
            if peer is None or peer.vpc_id != group.vpc_id:
                raise NotFoundError(f"ecs.SecurityGroupRule {rule.rule_id}: source_security_group_id: "
                                    f"{rule.peer_group} is not a security group of VPC {group.vpc_id}")
        rules = (*(r for r in group.rules if r.rule_id != rule.rule_id), rule)
        _save_group(lab, dataclasses.replace(group, rules=rules))
        _apply_locked(VpcRouter(lab, group.vpc_id))


def remove_rule(lab: str, sg_id: str, rule_id: str) -> None:
    with lab_lock(lab):
        group = load_group(lab, sg_id)
        if group is None:
            return
        _save_group(lab, dataclasses.replace(group, rules=tuple(r for r in group.rules if r.rule_id != rule_id)))
        _apply_locked(VpcRouter(lab, group.vpc_id))


def eni_of(eni_id: str, facts: dict[str, str]) -> Eni:
    """An ENI as its router port's alias describes it."""
    return Eni(eni_id, (facts["ip"], *alias_addresses(facts)), words(facts, "sg"), words(facts, "routes"))


def enis_of(router: VpcRouter) -> list[Eni]:
    return [eni_of(eni_id, facts) for vswitch in router.vswitches()
            for eni_id, facts in vswitch.enis().items() if "ip" in facts]


def apply(router: VpcRouter) -> None:
    with lab_lock(router.lab):
        _apply_locked(router)


def _applied_path(router: VpcRouter, inode: int) -> Path:
    return state_dir(router.lab) / f"{router.vpc_id}.{inode}.rules"


def _ipset(router: VpcRouter, lines: list[str]) -> None:
    if not lines:
        return
    result = router.namespace.run(["ipset", "-exist", "restore"], input="\n".join(lines) + "\n", check=False)
    if result.returncode != 0:
        raise LabError(f"security groups of {router.vpc_id}: ipset refused: {result.stderr.strip()}")


def _apply_locked(router: VpcRouter) -> None:
    """Rebuild every set from the kernel's ENIs, then swap in the ruleset unless the same text is in place."""
    inode = router.namespace.inode()
    if inode is None:
        return
    groups, enis = load_groups(router.lab, router.vpc_id), enis_of(router)
    contents = set_contents(groups, enis)
    lines = []
    for name, members in sorted(contents.items()):  # fill a fresh copy, then swap: lookups never see it half-full
        lines += [f"create {name} {SET_TYPE}", f"create {name}-new {SET_TYPE}", f"flush {name}-new"]
        lines += [f"add {name}-new {m}" for m in sorted(members)]
        lines += [f"swap {name}-new {name}", f"destroy {name}-new"]
    _ipset(router, lines)
    text = compile_ruleset(groups, profiles_of(enis))
    applied = _applied_path(router, inode)
    if not (applied.exists() and applied.read_text() == text):
        # forgotten first: a process killed between the restore and the write below must not leave a record of
        # the old text while the kernel holds the new one (the next apply would skip its restore, and the sets
        # only the new text uses could not be destroyed: "in use by a kernel component")
        applied.unlink(missing_ok=True)
        rules.iptables_restore(router.namespace, text, f"security groups of {router.vpc_id}")
        write_atomic(applied, text)
    _destroy_unused_sets(router, set(contents))


def _destroy_unused_sets(router: VpcRouter, wanted: set[str]) -> None:
    listed = router.namespace.run(["ipset", "list", "-n"], check=False).stdout.split()
    stale = [name for name in listed if name.startswith(("sgp-", "sgm-")) and name not in wanted]
    refused = destroy_sets(router.namespace, stale)  # after the swap no rule refers to them any more
    if refused:
        raise LabError(f"security groups of {router.vpc_id}: ipset refused to destroy "
                       + "; ".join(f"{name}: {reason}" for name, reason in sorted(refused.items())))


def _profile_applied(router: VpcRouter, profile: str) -> bool:
    inode = router.namespace.inode()
    applied = _applied_path(router, inode) if inode is not None else None
    return applied is not None and applied.exists() and f":SG-IN-{profile} " in applied.read_text()


def join(router: VpcRouter, eni: Eni, ipset: socket.socket | None = None) -> None:
    """An ENI (already plugged, its alias written) enters its groups' sets; the ruleset is rebuilt only for a
    combination of groups the VPC has not seen yet. Call under the lab lock. ``ipset``: a netfilter socket of
    the router's (``netns.kernel.ipset.SPEC``) to send the entries on, else one is made."""
    if not eni.groups:
        return
    profile = profile_id(eni.groups)
    if not _profile_applied(router, profile):
        _apply_locked(router)
        return
    _members(router, add=_entries(eni, profile), sock=ipset)


def leave(router: VpcRouter, eni: Eni, ipset: socket.socket | None = None) -> None:
    """The reverse of ``join``: the ENI's addresses leave the sets. Call under the lab lock."""
    if not eni.groups or not _profile_applied(router, profile_id(eni.groups)):
        return  # its sets were never made (e.g. a create that failed early)
    _members(router, delete=_entries(eni, profile_id(eni.groups)), sock=ipset)


def _entries(eni: Eni, profile: str) -> list[Change]:
    """An ENI's entries: its addresses and routed blocks in its profile's set, its addresses in its groups'."""
    return [(profile_set(profile), a) for a in (*eni.addresses, *eni.routed)] + [
        (member_set(g), a) for g in eni.groups for a in eni.addresses]


def _members(router: VpcRouter, add: list[Change] | None = None, delete: list[Change] | None = None,
             sock: socket.socket | None = None) -> None:
    """Set entries in and out, over netlink in the router namespace (as ``ipset -exist``, without the fork)."""
    try:
        update_members(router.namespace.name, add or (), delete or (), sock)
    except IpsetError as exc:
        raise LabError(f"security groups of {router.vpc_id}: ipset refused: {exc}") from None
