"""SSH mode's pure parts: management addresses, the sshd and ssh client configurations, plan data."""

from __future__ import annotations

import ipaddress

import pytest

from acklab import sshmode
from acklab.k8s.model.pod_network import node_from_dict
from netns.model.errors import LabError
from netns.model.names import lab_of


def test_management_addresses_are_stable_and_outside_every_lab_range():
    nodes = sshmode.node_addresses({"ecs-2": "acklab-a-i-2", "ecs-1": "acklab-a-i-1"})
    assert [(n.name, n.address) for n in nodes] == [("ecs-1", "198.18.0.11"), ("ecs-2", "198.18.0.12")]
    assert sshmode.controller_address() == "198.18.0.1"
    for used in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "203.0.113.0/24"):
        assert not sshmode.MGMT_CIDR.overlaps(ipaddress.IPv4Network(used))
    with pytest.raises(LabError, match="do not fit"):
        sshmode.node_addresses({f"n{i}": f"acklab-a-i-{i}" for i in range(300)})


def test_controller_namespace_belongs_to_its_lab():
    assert sshmode.controller_netns("lab1") == "acklab-lab1-mgmt"
    assert lab_of("acklab-lab1-mgmt") == "lab1"  # so `acklab clean --lab lab1` removes it


def test_sshd_config_is_the_labs_own():
    node = sshmode.SshNode("ecs-1", "acklab-lab1-i-00000001", "198.18.0.11")
    config = sshmode.sshd_config("lab1", node)
    lines = set(config.splitlines())
    assert "ListenAddress 198.18.0.11" in lines
    assert "PasswordAuthentication no" in lines and "PermitRootLogin prohibit-password" in lines
    assert "PidFile /run/acklab/lab1/ssh/ecs-1/sshd.pid" in lines
    assert "AuthorizedKeysFile /run/acklab/lab1/ssh/ecs-1/authorized_keys" in lines
    assert "HostKey /run/acklab/lab1/ssh/ecs-1/ssh_host_ed25519_key" in lines
    assert "/etc/ssh" not in config


def test_client_config_pins_host_keys_and_names_every_node():
    nodes = sshmode.node_addresses({"ecs-1": "acklab-a-i-1", "ecs-2": "acklab-a-i-2"})
    config = sshmode.client_config("lab1", nodes)
    assert "Host ecs-2 198.18.0.12\n  HostName 198.18.0.12" in config
    assert "StrictHostKeyChecking yes" in config
    assert "UserKnownHostsFile /run/acklab/lab1/ssh/known_hosts" in config
    assert "~" not in config  # nothing of the user's ~/.ssh


def test_port_names_fit_the_kernel_limit_and_differ():
    names = {sshmode.port_name(f"node-{i}") for i in range(50)}
    assert len(names) == 50 and all(len(n) <= 15 for n in names)


def test_node_travels_as_data():
    node = node_from_dict({"name": "ecs-1", "netns": "acklab-a-i-1", "ip": "192.168.1.10", "eni_ips": ["1.2.3.4"]})
    assert node.eni_ifname == "eth1" and node.eni_ips == ("1.2.3.4",)


def test_k8s_node_role_runs_on_the_controller_for_netns_and_on_the_node_over_ssh(tmp_path):
    """The role's defaults: delegated to localhost with the host's kubeconfig for the netns connection; on the
    node itself, reaching the API server through the VPC, over ssh (SSH mode). Nothing is connected to."""
    import subprocess
    import sys
    from pathlib import Path

    project = Path(__file__).resolve().parents[2]
    (tmp_path / "inventory.yml").write_text(
        "k8s_nodes:\n  hosts:\n"
        "    by-netns: {ansible_connection: acklab.lab.netns}\n"
        "    by-ssh: {ansible_connection: ssh, ansible_host: 198.18.0.250}\n")
    where = "{{ 'localhost' if k8s_node_on_controller | bool else inventory_hostname }}"
    (tmp_path / "play.yml").write_text(f"""
- name: Where the k8s_node role's module runs
  hosts: k8s_nodes
  gather_facts: false
  vars_files: [{project}/ansible/roles/k8s_node/defaults/main.yml]
  tasks:
    - name: Report (on this machine, whatever the host's connection)
      ansible.builtin.debug:
        msg: "where={where} endpoint={{{{ k8s_node_api_endpoint }}}}"
      delegate_to: localhost
""")
    env = {"PATH": "/usr/bin:/bin", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "HOME": str(tmp_path),
           "ANSIBLE_COLLECTIONS_PATH": str(project / "ansible" / "collections")}
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory.yml", "play.yml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "where=localhost endpoint=host" in result.stdout
    assert "where=by-ssh endpoint=vpc" in result.stdout
    tasks = (project / "ansible/roles/k8s_node/tasks/main.yml").read_text()
    assert "delegate_to: \"{{ 'localhost' if k8s_node_on_controller | bool else inventory_hostname }}\"" in tasks
    assert 'api_endpoint: "{{ k8s_node_api_endpoint }}"' in tasks
