"""The Vagrantfile and its provisioning script, checked without a VM: `vagrant validate --ignore-provider`
(Debian's vagrant package, installed by set-up), `bash -n`, a dry run of the provisioning steps and the SSH
inventory it renders for the multi-machine mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("nodes", ["0", "3"])
def test_vagrantfile_validates(tmp_path, nodes):
    result = validate(vagrant_copy(tmp_path), ACKLAB_NODES=nodes, ACKLAB_CPUS="4", ACKLAB_MEMORY="8192")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout
    machines = ["acklab"] if nodes == "0" else ["node-1", "node-2", "node-3", "controller"]
    for machine in machines:
        assert f"==> {machine}:" in result.stdout


def test_vagrantfile_refuses_bad_settings(tmp_path):
    folder = vagrant_copy(tmp_path)
    bad = validate(folder, ACKLAB_NODES="three")
    assert bad.returncode != 0
    assert "ACKLAB_NODES" in bad.stderr
    assert validate(folder, ACKLAB_TESTS="some").returncode != 0


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


def test_controller_inventory_is_ssh_and_parses(tmp_path):
    out = tmp_path / "hosts-ssh.yml"
    result = provision("inventory", str(out), ACKLAB_VM_NODES="node-1=192.168.56.11,node-2=192.168.56.12")
    assert result.returncode == 0, result.stderr
    listed = subprocess.run([str(PROJECT / ".venv" / "bin" / "ansible-inventory"), "-i", str(out), "--list"],
                            capture_output=True, text=True, check=True, timeout=60,
                            env={**os.environ, "ANSIBLE_INVENTORY_ENABLED": "yaml"})
    inventory = json.loads(listed.stdout)
    assert sorted(inventory["k8s_nodes"]["hosts"]) == ["node-1", "node-2"]
    node = inventory["_meta"]["hostvars"]["node-2"]
    assert node["ansible_connection"] == "ssh"
    assert node["ansible_host"] == "192.168.56.12"
    # what the pod_network role needs: the node namespaces on the private network, VXLAN between them
    assert node["acklab_kubernetes"] == {"datapath": "vxlan", "pod_cidr": "10.244.0.0/16"}
    assert node["acklab_k8s_nodes"][1] == {"name": "node-2", "netns": "acklab-multi-i-00000002",
                                          "ip": "192.168.56.112", "pod_cidr": "10.244.1.0/24"}
    assert node["acklab_netns"] == "acklab-multi-i-00000002" and node["acklab_lab"] == "multi"


def test_node_vm_gets_its_namespace_on_the_private_network():
    result = provision("node", ACKLAB_VM_NODES="node-1=192.168.56.11,node-2=192.168.56.12",
                       ACKLAB_VM_HOSTNAME="node-2")
    assert result.returncode == 0, result.stderr
    done = steps(result.stdout)
    assert "ip netns add acklab-multi-i-00000002" in done
    assert "ip link add link eth1 name m2 type macvlan mode bridge" in done
    assert "ip -n acklab-multi-i-00000002 addr add 192.168.56.112/24 dev eth0" in done
    stranger = provision("node", ACKLAB_VM_NODES="node-1=192.168.56.11", ACKLAB_VM_HOSTNAME="node-7")
    assert stranger.returncode == 2 and "no node-7" in stranger.stderr


def test_controller_provisioning_runs_the_playbook_over_ssh(tmp_path):
    result = provision("controller", ACKLAB_VM_NODES="node-1=192.168.56.11",
                       ACKLAB_INVENTORY_OUT=str(tmp_path / "hosts-ssh.yml"))
    assert result.returncode == 0, result.stderr
    done = steps(result.stdout)
    assert done[-1].endswith("ansible-playbook -i inventory/hosts-ssh.yml site.yml "
                             "-e acklab_manifests=/vagrant/labs/multi/k8s")
    assert (tmp_path / "hosts-ssh.yml").exists()


def test_example_inventory_has_what_the_role_needs(tmp_path):
    copy = tmp_path / "hosts-ssh.yml"  # as the example says: copied to hosts-ssh.yml
    shutil.copy(PROJECT / "ansible" / "inventory" / "hosts-ssh.yml.example", copy)
    listed = subprocess.run([str(PROJECT / ".venv" / "bin" / "ansible-inventory"), "-i", str(copy), "--list"],
                            capture_output=True, text=True, check=True, timeout=60,
                            env={**os.environ, "ANSIBLE_INVENTORY_ENABLED": "yaml"})
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]
    assert sorted(hostvars) == ["node-1", "node-2", "node-3"]
    for name, host in hostvars.items():
        assert host["ansible_connection"] == "ssh"
        assert {n["name"] for n in host["acklab_k8s_nodes"]} == set(hostvars)
        assert host["acklab_netns"] == next(n["netns"] for n in host["acklab_k8s_nodes"] if n["name"] == name)


def test_controller_inventory_refuses_bad_nodes(tmp_path):
    out = tmp_path / "hosts-ssh.yml"
    result = provision("inventory", str(out), ACKLAB_VM_NODES="node-1=not-an-address")
    assert result.returncode == 2
    assert "must be NAME=IPv4" in result.stderr
    assert not out.exists()
