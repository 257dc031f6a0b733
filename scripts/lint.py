"""`make lint`: ruff, yamllint and ansible-lint, each printed as usual, together in reports/lint.xml (JUnit XML:
one test case per linter, its output as the failure text) so CI shows lint beside the tests' reports/junit.xml.
Exits 1 if any linter found something."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

PROJECT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@dataclass
class Linter:
    name: str
    argv: list[str]
    cwd: Path


LINTERS = [
    Linter("ruff", [str(VENV_BIN / "ruff"), "check", "."], PROJECT),
    Linter("yamllint", [str(VENV_BIN / "yamllint"), "-f", "parsable", "."], PROJECT),
    Linter("ansible-lint", [str(VENV_BIN / "ansible-lint")], PROJECT / "ansible"),
]


def main() -> int:
    suite = ET.Element("testsuite", name="lint", tests=str(len(LINTERS)))
    failures = 0
    for linter in LINTERS:
        print(f"==> {linter.name}", flush=True)
        start = time.monotonic()
        result = subprocess.run(linter.argv, cwd=linter.cwd, capture_output=True, text=True, check=False,
                                env={**os.environ, "NO_COLOR": "1", "PY_COLORS": "0"})
        output = re.sub(r"\x1b\[[0-9;]*m|[\x00-\x08\x0b\x0c\x0e-\x1f]", "", result.stdout + result.stderr).strip()
        if output:
            print(output)
        case = ET.SubElement(suite, "testcase", classname="lint", name=linter.name,
                             time=f"{time.monotonic() - start:.2f}")
        if result.returncode != 0:
            failures += 1
            failure = ET.SubElement(case, "failure", message=f"{linter.name} exited {result.returncode}")
            failure.text = output
    suite.set("failures", str(failures))
    report = PROJECT / "reports" / "lint.xml"
    report.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(report, encoding="unicode", xml_declaration=True)
    print(f"lint: {failures} of {len(LINTERS)} linters found problems; JUnit XML in {report.relative_to(PROJECT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
