"""The node's iptables transactions, without root: the FORWARD jump is moved (or removed) in the same
``iptables-restore --noflush`` input as the chains, in an order the kernel accepts, and a transaction that lost a
race with another writer of FORWARD is planned again from a fresh read, a bounded number of times."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from acklab.k8s.model.network_policy import compile_node
from acklab.k8s.realize import network_policy as nk
from acklab.k8s.realize.network_policy import (
    Applied,
    Update,
    jump_transaction,
    plan_update,
    read_applied,
    removal_transaction,
    update_transaction,
)
from netns.model.errors import LabError
from tests import netpoltools as kt
from tests.labtools import new_lab
from tests.unit.test_network_policy import endpoints, policies_of

DELETE = "-D FORWARD -j cali-FORWARD"
INSERT = "-I FORWARD 1 -j cali-FORWARD"


def deny_all_x():
    return compile_node(policies_of(kt.DENY_ALL_X), endpoints().values(), "node-1")


def test_the_jump_alone_is_moved_in_one_transaction():
    assert jump_transaction(2, True) == f"*filter\n{DELETE}\n{DELETE}\n{INSERT}\nCOMMIT\n"
    assert jump_transaction(0, True) == f"*filter\n{INSERT}\nCOMMIT\n"  # missing: only inserted
    assert jump_transaction(1, False) == f"*filter\n{DELETE}\nCOMMIT\n"


def test_the_jump_moves_in_the_chains_transaction():
    ruleset = deny_all_x()
    chains = ruleset.iptables(["cali-pi-old"])
    lines = jump_transaction(3, True, chains).splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT" and lines.count("COMMIT") == 1
    assert lines[1:4] == [DELETE] * 3  # every copy goes, before anything else
    assert lines[-2] == INSERT  # once, after the chain it jumps to is declared and filled
    assert lines.index(INSERT) > max(i for i, line in enumerate(lines) if line.startswith(":"))
    assert [line for line in lines if line not in (DELETE, INSERT)] == chains.splitlines()  # the rest as it was
    assert not any(line.startswith(":FORWARD") for line in lines)  # declaring a built-in would reset its policy
    assert jump_transaction(0, False, chains) == chains  # nothing to move: the chains alone


def test_only_one_filter_transaction_is_extended():
    with pytest.raises(ValueError, match="not one filter-table transaction"):
        jump_transaction(1, True, "*nat\nCOMMIT\n")
    with pytest.raises(ValueError):
        jump_transaction(1, True, "*filter\n-F cali-FORWARD\n")


def test_an_update_moves_the_jump_only_when_it_must():
    ruleset = deny_all_x()
    in_place = Applied({n: len(r) for n, r in ruleset.chains.items()}, {}, False, 2)  # second behind a prepended rule
    update = plan_update(ruleset, in_place, ruleset.chains)
    assert update.jump and not update.chains
    assert update_transaction(ruleset, update, 2) == f"*filter\n{DELETE}\n{DELETE}\n{INSERT}\nCOMMIT\n"
    chains_only = Update(list(ruleset.chains), [], [], [], False)
    assert update_transaction(ruleset, chains_only, 2) == ruleset.iptables((), only=ruleset.chains)


def test_removal_deletes_the_jumps_before_the_chains():
    ruleset = deny_all_x()
    lines = removal_transaction(Applied({n: len(r) for n, r in ruleset.chains.items()}, {}, True, 1)).splitlines()
    assert lines[:2] == ["*filter", DELETE] and INSERT not in lines
    assert {f"-X {name}" for name in ruleset.chains} <= set(lines)  # -X of a chain a jump still uses would fail
    assert removal_transaction(Applied({}, {}, False, 0)) == "*filter\nCOMMIT\n"


def save(*forward: str) -> str:
    return "\n".join(["*filter", ":FORWARD ACCEPT [0:0]", ":cali-FORWARD - [0:0]", *forward,
                      "-A cali-FORWARD -j RETURN", "COMMIT", ""])


JUMP = "-A FORWARD -j cali-FORWARD"
OTHER = "-A FORWARD -m comment --comment second-agent"


class FakeNode:
    """A node namespace that answers ``iptables-save`` with ``forward`` (its FORWARD rules), ``ipset save`` with
    nothing, and ``iptables-restore`` with ``restore(input)`` (an exit status), recording each input."""

    def __init__(self, forward: list[str], restore: Callable[[FakeNode, str], int]):
        self.forward = forward
        self.restore = restore
        self.restored: list[str] = []

    def run(self, argv: list[str], *, check: bool = True, input: str | None = None, **_: object
            ) -> subprocess.CompletedProcess[str]:
        out, status = "", 0
        if argv[0] == "iptables-save":
            out = save(*self.forward)
        elif argv[0] == "iptables-restore":
            self.restored.append(input or "")
            status = self.restore(self, input or "")
        return subprocess.CompletedProcess(argv, status, out, "line 2 failed" if status else "")


@pytest.mark.parametrize(("forward", "jump", "jumps"), [
    ([JUMP], True, 1),
    ([OTHER, JUMP], False, 1),  # another agent prepended a rule
    ([JUMP, OTHER, JUMP], False, 2),  # first, but twice: the copy goes too
    ([OTHER], False, 0),
])
def test_read_applied_counts_the_jumps(forward, jump, jumps):
    applied = read_applied(FakeNode(forward, lambda node, text: 0))  # type: ignore[arg-type]
    assert (applied.jump, applied.jumps, applied.chains) == (jump, jumps, {"cali-FORWARD": 1})


def test_a_transaction_that_lost_a_race_is_planned_again():
    def race(node: FakeNode, text: str) -> int:
        if len(node.restored) == 1:  # another writer removed one copy of the jump between our read and write
            node.forward = [OTHER, JUMP]
            return 1
        return 0

    node = FakeNode([OTHER, JUMP, JUMP], race)
    ruleset = deny_all_x()
    update = nk._write(node, "node-1", ruleset, ruleset.chains)  # type: ignore[arg-type]
    assert update.jump and node.restored == [
        *(update_transaction(ruleset, update, n) for n in (2, 1))]  # two deletions refused, then one


def test_a_transaction_refused_every_time_names_the_node():
    node = FakeNode([OTHER, JUMP], lambda node, text: 1)
    ruleset = deny_all_x()
    with pytest.raises(LabError, match=r"node node-1: iptables-restore refused to apply the policy chains 5 times"):
        nk._write(node, "node-1", ruleset, ruleset.chains)  # type: ignore[arg-type]
    assert len(node.restored) == nk.RESTORE_ATTEMPTS


def test_removal_is_planned_again_after_a_race():
    def race(node: FakeNode, text: str) -> int:
        if len(node.restored) == 1:
            node.forward = [OTHER]  # the jump went meanwhile
            return 1
        return 0

    node = FakeNode([OTHER, JUMP], race)
    applied = read_applied(node)  # type: ignore[arg-type]
    assert nk.remove_node(new_lab(), "node-1", node, applied)  # type: ignore[arg-type]
    assert node.restored == [removal_transaction(applied), removal_transaction(Applied(applied.chains, {}, False))]
    with pytest.raises(LabError, match="node node-2: iptables-restore refused to remove the policy chains"):
        nk.remove_node(new_lab(), "node-2", FakeNode([JUMP], lambda node, text: 1), applied)  # type: ignore[arg-type]
