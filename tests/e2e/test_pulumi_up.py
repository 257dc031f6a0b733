"""The real Pulumi engine drives the provider: up, a second up with no changes, refresh, drift, destroy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark
from tests.labtools import TcpServer, env_with_venv, ping, tcp_greeting

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


class Stack:
    """One stack of a project, on a private file backend (the user's state is never touched)."""

    def __init__(self, project: Path, name: str, backend: Path) -> None:
        self.project, self.name, self.backend = project, name, backend
        self.env = {**env_with_venv(), "PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_CONFIG_PASSPHRASE": "",
                    "PULUMI_HOME": str(backend / "home"), "PULUMI_SKIP_UPDATE_CHECK": "true"}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["pulumi", *args, "--stack", self.name, "--non-interactive"], cwd=self.project,
                                env=self.env, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def outputs(self) -> dict:
        return json.loads(self.run("stack", "output", "--json").stdout)

    def init(self) -> None:
        subprocess.run(["pulumi", "stack", "init", self.name, "--non-interactive"], cwd=self.project, env=self.env,
                       check=True, capture_output=True)


def temp_project(tmp_path: Path, program: str, plugins: tuple[str, ...] = ("alicloud",)) -> Path:
    """A Pulumi project of its own (same virtualenv) for a test program; it names acklab's alicloud plugin as the
    lab's projects do (no "from $PATH" warning), and any other provider plugin in .venv/bin given in ``plugins``
    (e.g. "kubernetes", built by scripts/build-k8s-provider.sh): the engine then never downloads them."""
    project = tmp_path / "project"
    project.mkdir()
    providers = "".join(f"\n    - name: {name}\n      path: {VENV}/bin" for name in plugins)
    (project / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
        name: acklab-test
        runtime:
          name: python
          options:
            virtualenv: {VENV}
        plugins:
          providers:""") + providers + "\n")
    (project / "__main__.py").write_text(program)
    return project


def test_default_lab_up_connect_idempotent_destroy(stack, lab, root_unchanged):
    stack.run("up", "--yes")
    out = stack.outputs()
    ecs = out["instances"]
    assert {name: e["private_ip"] for name, e in ecs.items()} == {
        "ecs-1": "192.168.1.10", "ecs-2": "192.168.1.11", "ecs-3": "192.168.2.10"}
    assert all(Namespace(e["netns"]).exists() and e["netns"].startswith(mark(lab)) for e in ecs.values())

    src = ecs["ecs-1"]["netns"]
    assert ping(src, "192.168.1.11")  # same vSwitch
    assert ping(src, "192.168.2.10")  # other vSwitch, other zone
    with TcpServer(ecs["ecs-3"]["netns"]):
        assert tcp_greeting(src, "192.168.2.10") == "hello 192.168.1.10"

    stack.run("up", "--yes", "--expect-no-changes")
    stack.run("refresh", "--yes", "--expect-no-changes")

    stack.run("destroy", "--yes")
    assert list_namespaces(mark(lab)) == []


def test_drift_is_seen_by_refresh_and_repaired_by_up(stack, lab):
    stack.run("up", "--yes")
    ecs3 = stack.outputs()["instances"]["ecs-3"]
    Namespace(ecs3["netns"]).remove()  # someone deletes an instance behind Pulumi's back

    refresh = stack.run("refresh", "--yes", "--expect-no-changes", check=False)
    assert refresh.returncode != 0, "refresh must notice the missing instance"
    stack.run("up", "--yes")
    repaired = stack.outputs()["instances"]["ecs-3"]
    assert repaired["private_ip"] == "192.168.2.10"
    assert ping(stack.outputs()["instances"]["ecs-1"]["netns"], "192.168.2.10")
