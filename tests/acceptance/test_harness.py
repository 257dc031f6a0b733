"""The harness itself: its testinfra backend runs in the namespace it names, and a deliberately broken rule makes
exactly the matrix test that covers it fail (the matrix, run in a subprocess against the same lab, writes JUnit)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.acceptance.harness import LAB_ENV, netns_host
from tests.acceptance.test_matrix import POD_TO_ECS_PORT, POD_VSWITCH
from tests.e2e.test_pulumi_up import PROJECT

pytestmark = [pytest.mark.e2e, pytest.mark.acceptance]


def run_matrix(lab: str, junit: Path) -> dict[str, str]:
    """Run test_matrix.py against ``lab``; each test's outcome (passed, failed, error, skipped) from the JUnit XML."""
    subprocess.run([sys.executable, "-m", "pytest", "tests/acceptance/test_matrix.py", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={junit}"], cwd=PROJECT, env={**os.environ, LAB_ENV: lab}, capture_output=True,
                   text=True, timeout=600)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
    return outcomes


def test_backend_runs_commands_in_the_namespace(lab_up):
    host = netns_host(lab_up.ecs("ecs-3")["netns"])
    assert host.backend.get_pytest_id() == f"netns://{lab_up.ecs('ecs-3')['netns']}"
    assert "192.168.2.10" in [str(a) for a in host.interface("eth0").addresses]
    assert host.run("ip -o link show eth1").rc != 0  # ecs-3 has no second ENI; the root namespace's links are not
    with pytest.raises(LookupError):
        netns_host(f"acklab-{lab_up.name}-i-00000000")


def test_removed_sg_rule_fails_exactly_its_test(lab_up, tmp_path):
    group = lab_up.group_of("ecs-3")
    rule = lab_up.rule(group, "tcp", POD_TO_ECS_PORT["tcp"], POD_VSWITCH)  # pods → ecs-3 TCP 80
    lab_up.revoke(group, rule)
    try:
        outcomes = run_matrix(lab_up.name, tmp_path / "broken.xml")
    finally:
        lab_up.restore(group, rule)
    failed = sorted(name for name, outcome in outcomes.items() if outcome != "passed")
    assert failed == ["test_pod_to_ecs_rule_present[tcp]"], outcomes
    assert len(outcomes) >= 20
