"""What the e2e tests that run Ansible share: the playbooks' folder, a run's PLAY RECAP totals, and the default
program on a stack of its own (its pods through cluster.yml and the API)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.test_pulumi_up import PROJECT, Stack, temp_project

ANSIBLE = PROJECT / "ansible"


def recap(output: str) -> dict[str, int]:
    """Totals of the PLAY RECAP."""
    totals: dict[str, int] = {}
    for key, value in re.findall(r"(\w+)=(\d+)", output.split("PLAY RECAP", 1)[1]):
        totals[key] = totals.get(key, 0) + int(value)
    return totals


def default_stack(lab: str, tmp_path: Path, datapath: str) -> Stack:
    """The default program on a stack of its own with the given datapath (its cluster: cluster.yml's)."""
    project = temp_project(tmp_path, (PROJECT / "__main__.py").read_text())
    stack = Stack(project, lab, tmp_path)
    stack.init()
    stack.run("config", "set", "acklab:datapath", datapath)
    return stack
