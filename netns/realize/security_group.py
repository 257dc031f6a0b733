"""Security groups → the filter table of the VPC router namespace (see netns/model/security_group.py).

A group and its rules are API state with no kernel object of their own: they are kept as one JSON file per
group under ``/run/acklab/<lab>/sg/`` (removed with the lab). Membership is kernel state: each ENI's port
carries ``sg=...`` in its alias. ``apply`` compiles both into one ruleset and swaps it in atomically with
iptables-restore; an unchanged ruleset is not applied again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from netns.model.errors import LabError, NotFoundError
from netns.model.security_group import Eni, Group, Rule, compile_ruleset
from netns.realize import lab_lock, state_dir
from netns.realize.vpc import VpcRouter


def _group_path(lab: str, sg_id: str) -> Path:
    return state_dir(lab) / "sg" / f"{sg_id}.json"


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)  # readers never see half a file


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
    _write(_group_path(lab, group.sg_id), {**dataclasses.asdict(group), "rules": [dataclasses.asdict(r)
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


def enis_of(router: VpcRouter) -> list[Eni]:
    enis = []
    for vswitch in router.vswitches():
        for eni_id, facts in vswitch.enis().items():
            if "ip" in facts:
                groups = tuple(g for g in facts.get("sg", "").split(",") if g)
                enis.append(Eni(eni_id, (facts["ip"],), groups))
    return enis


def apply(router: VpcRouter) -> None:
    with lab_lock(router.lab):
        _apply_locked(router)


def _apply_locked(router: VpcRouter) -> None:
    """Compile and swap in the router's ruleset, unless the same text is already in place."""
    inode = router.namespace.inode()
    if inode is None:
        return
    text = compile_ruleset(load_groups(router.lab, router.vpc_id), enis_of(router))
    applied = state_dir(router.lab) / f"{router.vpc_id}.{inode}.rules"
    if applied.exists() and applied.read_text() == text:
        return
    result = router.namespace.run(["iptables-restore"], input=text, check=False)
    if result.returncode != 0:
        raise LabError(f"security groups of {router.vpc_id}: iptables-restore refused the ruleset: "
                       f"{result.stderr.strip()}")
    applied.parent.mkdir(parents=True, exist_ok=True)
    applied.write_text(text)
