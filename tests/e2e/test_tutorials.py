"""Doc-check: every ```console block of docs/tutorials/*.md is run and its output compared.

Format of a block: lines starting with ``$ `` are commands (a trailing ``\\`` continues one on the next line), the
lines after one, up to the next command, its expected output (stdout and stderr, as a terminal shows them). A line
``...`` matches any number of lines. The fence may name the lab, `````console lab=tutvxlan``; the default is
``tutorial``. Commands name no lab: they use ``$ACKLAB_LAB``, which the test sets to a unique lab per doc lab
name (and writes back as the doc's name in the output), with a private Pulumi backend. Each command runs in
``bash -c`` from the project folder and must exit 0 (a tutorial shows a failure with ``|| echo ...``).

Volatile parts are normalized on both sides before comparing (``normalize``): random cloud ids (``i-1a2b3c4d``
→ ``i-…``), pod namespace hashes, interface indexes (``eth0@if7``), addresses on the Terway pod vSwitch
192.168.3.0/24 (they depend on which node's ENI was created first) and in Flannel's node blocks, durations, runs
of blanks. A command whose output does not match yet is run again for up to ``SETTLE`` seconds (health checks,
agents coming up).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.test_pulumi_up import PROJECT, VENV
from tests.labtools import clean_lab

# slow (6 min: three labs brought up and down): run by `make acceptance`, not `make test`
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TUTORIALS = sorted((PROJECT / "docs" / "tutorials").glob("*.md"))
DEFAULT_LAB = "tutorial"
SETTLE = 30.0

VOLATILE = [
    (re.compile(r"\b(vpc|vsw|i|eni|sg|sgr|lb|acl|rsp|vtb|vrt)-[0-9a-f]{8}\b"), r"\1-…"),
    (re.compile(r"_(vpc|vsw|i|eni|sg|lb)_[0-9a-f]{8}\b"), r"_\1_…"),  # the same in graph node ids
    (re.compile(r"\bpod-[0-9a-f]{10}\b"), "pod-…"),
    (re.compile(r"@if\d+\b"), "@if…"),
    (re.compile(r"\b192\.168\.3\.\d+\b"), "192.168.3.…"),
    # Flannel's blocks: the controller-manager hands out blocks of 10.244.0.0/16 to the Nodes in the order they
    # register (both nodes join at once); a pod's address, to the order its node's pods were made
    (re.compile(r"\b10\.244\.\d+\.\d+\b"), "10.244.…"),
    (re.compile(r"\b\d+(\.\d+)?\s?(ms|s)\b"), "… s"),
    (re.compile(r"[ \t]+"), " "),
]


def normalize(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        for pattern, replacement in VOLATILE:
            line = pattern.sub(replacement, line)
        lines.append(line.strip())
    while lines and not lines[-1]:
        lines.pop()
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; ``...`` matches any run of lines (also none)."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


@dataclass
class Step:
    lab: str
    command: str
    expected: list[str] = field(default_factory=list)
    line: int = 0


def parse(path: Path) -> list[Step]:
    steps: list[Step] = []
    lab, in_block, pending = DEFAULT_LAB, False, ""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not in_block:
            fence = re.match(r"^```console(?:\s+lab=(\w+))?\s*$", line)
            if fence:
                in_block, lab = True, fence.group(1) or DEFAULT_LAB
            continue
        if line.startswith("```"):
            in_block = False
        elif pending or line.startswith("$ "):
            text = line if pending else line[2:]
            pending += text[:-1] + " " if text.endswith("\\") else text
            if not text.endswith("\\"):
                steps.append(Step(lab, pending, line=number))
                pending = ""
        elif steps:
            steps[-1].expected.append(line)
    return steps


class Labs:
    """Doc lab names → unique labs of this run, on a private Pulumi backend; torn down at the end."""

    def __init__(self, backend: Path) -> None:
        self.backend = backend
        self.actual: dict[str, str] = {}

    def name(self, doc_lab: str) -> str:
        if doc_lab not in self.actual:
            self.actual[doc_lab] = "d" + secrets.token_hex(4) + doc_lab[-4:]
        return self.actual[doc_lab]

    def env(self, lab: str) -> dict[str, str]:
        return {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}", "ACKLAB_LAB": lab,
                "PULUMI_BACKEND_URL": f"file://{self.backend}", "PULUMI_HOME": str(self.backend / "home"),
                "PULUMI_CONFIG_PASSPHRASE": "", "PULUMI_SKIP_UPDATE_CHECK": "true", "MAKEFLAGS": ""}

    def run(self, step: Step, where: str) -> None:
        lab = self.name(step.lab)
        expected = normalize("\n".join(step.expected))
        start = time.monotonic()
        deadline = start + SETTLE
        while True:
            result = subprocess.run(["bash", "-c", step.command], cwd=PROJECT, env=self.env(lab), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, check=False)
            actual = normalize(result.stdout.replace(lab, step.lab))
            if result.returncode == 0 and matches(expected, actual):
                print(f"{time.monotonic() - start:5.1f} s  {where}  $ {step.command}")  # shown with pytest -s
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{where}: $ {step.command}\nexit {result.returncode}\n--- expected\n"
                                     + "\n".join(expected) + "\n--- got\n" + "\n".join(actual))
            time.sleep(1)

    def teardown(self) -> None:
        def down(lab: str) -> None:
            try:
                subprocess.run(["make", "-s", "tutorial-down"], cwd=PROJECT, env=self.env(lab), capture_output=True,
                               timeout=600, check=False)
            finally:
                (PROJECT / "labs" / "tutorial" / f"Pulumi.{lab}.yaml").unlink(missing_ok=True)
                clean_lab(lab)

        with ThreadPoolExecutor() as pool:  # the labs are independent: destroy them side by side
            list(pool.map(down, self.actual.values()))


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    registry = Labs(tmp_path_factory.mktemp("pulumi"))
    try:
        yield registry
    finally:
        registry.teardown()


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial(tutorial, labs):
    steps = parse(tutorial)
    if not steps:
        pytest.skip(f"{tutorial.name} has no console blocks yet")
    for step in steps:
        labs.run(step, f"{tutorial.relative_to(PROJECT)}:{step.line}")
