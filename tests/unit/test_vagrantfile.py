"""The Vagrantfile and its provisioning script, checked without a VM: `vagrant validate --ignore-provider`
(Debian's vagrant package, installed by set-up), `bash -n` and a dry run of the provisioning steps."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
PROVISION = PROJECT / "scripts" / "vagrant-provision.sh"


def vagrant_copy(tmp_path: Path) -> Path:
    """The Vagrantfile and what it refers to, in a folder of their own (vagrant writes .vagrant/ beside it)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(PROJECT / "Vagrantfile", tmp_path / "Vagrantfile")
    shutil.copy(PROVISION, tmp_path / "scripts" / PROVISION.name)
    return tmp_path


def validate(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("vagrant"), "vagrant is missing: scripts/setup.sh installs Debian's vagrant package"
    environment = {**os.environ, "VAGRANT_HOME": str(folder / ".vagrant.d"), "VAGRANT_CHECKPOINT_DISABLE": "1",
                   **env}
    for name in ("ACKLAB_NODES", "ACKLAB_CPUS", "ACKLAB_MEMORY", "ACKLAB_TESTS"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run(["vagrant", "validate", "--ignore-provider", "--no-tty"], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=120, check=False)


def test_vagrantfile_validates(tmp_path):
    result = validate(vagrant_copy(tmp_path), ACKLAB_CPUS="4", ACKLAB_MEMORY="8192")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout
    assert "==> acklab:" in result.stdout


def test_vagrantfile_refuses_bad_settings(tmp_path):
    folder = vagrant_copy(tmp_path)
    bad = validate(folder, ACKLAB_CPUS="three")
    assert bad.returncode != 0
    assert "ACKLAB_CPUS" in bad.stderr
    assert validate(folder, ACKLAB_TESTS="some").returncode != 0
    # the several-VM mode went with the file-driven playbook: one clear refusal, not a half-made set of VMs
    several = validate(folder, ACKLAB_NODES="3")
    assert several.returncode != 0 and "several-VM mode was removed" in several.stderr


def test_vagrantfile_needs_its_provisioning_script(tmp_path):
    folder = vagrant_copy(tmp_path)
    (folder / "scripts" / PROVISION.name).unlink()
    result = validate(folder)
    assert result.returncode != 0
    assert "vagrant-provision.sh" in result.stdout + result.stderr


def provision(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "ACKLAB_DRY_RUN": "1", **env}
    return subprocess.run(["bash", str(PROVISION), *args], env=environment, capture_output=True, text=True,
                          timeout=60, check=False)


def test_provisioning_script_parses():
    assert subprocess.run(["bash", "-n", str(PROVISION)], check=False).returncode == 0


def steps(output: str) -> list[str]:
    return [line.removeprefix("==> ") for line in output.splitlines() if line.startswith("==> ")]


def test_single_vm_provisioning_order():
    result = provision("single", ACKLAB_TESTS="all")
    assert result.returncode == 0, result.stderr
    done = steps(result.stdout)
    assert done.index("scripts/setup.sh") < done.index("make up") < done.index("make test")
    assert provision("single", ACKLAB_TESTS="none").stdout.count("pytest") == 0
    assert provision("single", ACKLAB_TESTS="bogus").returncode == 2
    assert provision("bogus").returncode == 2
