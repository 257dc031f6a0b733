"""Inventory plugin: the hosts of an acklab lab, read from its Pulumi stack (``pulumi stack export``)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: pulumi_stack
short_description: Hosts of an acklab lab from its Pulumi stack
description:
  - Runs C(pulumi stack export) for the lab's stack and turns its resources into hosts and groups.
  - ECS instances (pulumi-alicloud's C(ecs.Instance); in stacks made by acklab's former look-alike providers too)
    tagged with the key C(ack.aliyun.com) (as ACK tags its nodes) form the group C(k8s_nodes); other ECS instances
    form C(ecs); load balancers (C(slb.ApplicationLoadBalancer)) form C(slb).
  - Host variables are the instance's facts (C(private_ip), C(acklab_netns), C(instance_id), ...). The stack's
    C(kubernetes) output (datapath, pod CIDR, pod vSwitches) becomes the group variable C(acklab_kubernetes) of
    C(k8s_nodes).
author: acklab
version_added: 0.1.0
options:
  plugin:
    description: The name of this plugin.
    required: true
    choices: [acklab.lab.pulumi_stack]
  stack:
    description: The lab (Pulumi stack); default the ACKLAB_LAB environment variable, else C(default).
    type: str
    env:
      - name: ACKLAB_LAB
  project_dir:
    description: The Pulumi project; default the environment's ACKLAB_PROJECT, else the repository holding this
      collection.
    type: path
    env:
      - name: ACKLAB_PROJECT
  pulumi:
    description: The Pulumi CLI; default the one beside the Python running Ansible (the project's .venv/bin).
    type: str
  connection:
    description:
      - How tasks reach the hosts. C(netns) runs them in each host's namespace on this machine
        (M(acklab.lab.netns) connection). C(ssh) uses Ansible's standard ssh connection to the nodes' sshd
        on the lab's management segment (C(python -m acklab.sshmode up) first; run Ansible inside the
        controller namespace, C(python -m acklab.sshmode exec)); hosts without sshd keep C(netns).
    type: str
    default: netns
    choices: [netns, ssh]
    env:
      - name: ACKLAB_CONNECTION
"""

EXAMPLES = r"""
plugin: acklab.lab.pulumi_stack
stack: default
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

NODE_TAG = "ack.aliyun.com"
INSTANCE = "alicloud:ecs/instance:Instance"
LOAD_BALANCER = "alicloud:slb/applicationLoadBalancer:ApplicationLoadBalancer"
SSH_STATE = "/run/acklab/{lab}/ssh"  # written by acklab.sshmode
REPO = Path(__file__).resolve().parents[7]  # ansible/collections/ansible_collections/acklab/lab/plugins/inventory


def stack_of(urn: str) -> str:
    """The stack (lab) of a resource's URN, ``urn:pulumi:<stack>::<project>::<type>::<name>``."""
    return urn.removeprefix("urn:pulumi:").split("::", 1)[0]


def snake_keys(outputs: dict) -> dict:
    """A pulumi-alicloud resource's state with the SDK's (Python) names: the engine records its wire names
    (``privateIp`` for ``private_ip``)."""
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): value for key, value in outputs.items()}


def namespace_of(resource: dict, outputs: dict) -> str | None:
    """The namespace realizing an instance or SLB: a look-alike (``netns``) resource outputs it; a pulumi-alicloud
    one's is named by its id in its lab (``acklab-<lab>-<id>``), as every acklab tool names it."""
    if "netns" in outputs:
        return outputs["netns"]
    if not resource.get("id") or not resource.get("urn"):
        return None
    from netns.model.names import netns_name  # the project's .venv runs Ansible

    return netns_name(stack_of(resource["urn"]), resource["id"])


def classify(resources: list[dict]) -> tuple[dict[str, dict], dict]:
    """(host name → facts and group, the stack's outputs), from the resources of a stack export: pulumi-alicloud's
    ``ecs.Instance`` and ``slb.ApplicationLoadBalancer`` by type, the look-alike dynamic resources by their outputs."""
    hosts: dict[str, dict] = {}
    stack_outputs: dict = {}
    for resource in resources:
        outputs = resource.get("outputs") or {}
        kind = resource.get("type") or ""
        if kind.startswith("alicloud:"):
            outputs = snake_keys(outputs)
        if kind == "pulumi:pulumi:Stack":
            stack_outputs = outputs
            continue
        if kind == INSTANCE or ("instance_type" in outputs and "netns" in outputs and "private_ip" in outputs):
            tags = outputs.get("tags") or {}
            name = outputs.get("instance_name") or outputs.get("__name") or resource["id"]
            hosts[name] = {
                "group": "k8s_nodes" if NODE_TAG in tags else "ecs",
                "vars": {"acklab_netns": namespace_of(resource, outputs), "private_ip": outputs["private_ip"],
                         "instance_id": resource.get("id"), "vswitch_id": outputs.get("vswitch_id"),
                         "instance_type": outputs.get("instance_type"),
                         "network_interface_id": outputs.get("network_interface_id"),
                         "security_groups": outputs.get("security_groups") or [], "ecs_tags": tags},
            }
        elif kind == LOAD_BALANCER or ("address" in outputs and ("load_balancer_name" in outputs
                                                                 or "load_balancer_spec" in outputs)):
            name = outputs.get("load_balancer_name") or outputs.get("__name") or resource["id"]
            hosts[name] = {"group": "slb", "vars": {"acklab_netns": namespace_of(resource, outputs),
                                                     "address": outputs["address"], "slb_id": resource.get("id")}}
    return hosts, stack_outputs


def ssh_group_vars(lab: str) -> dict[str, object]:
    """Ansible's standard ssh connection with the lab's own ssh_config (keys, pinned host keys, control
    sockets under the lab's folder): nothing of the user's ~/.ssh is read or written."""
    folder = SSH_STATE.format(lab=lab)
    return {"ansible_user": "root", "ansible_ssh_private_key_file": f"{folder}/id_ed25519",
            "ansible_ssh_common_args": f"-F {folder}/ssh_config", "ansible_control_path_dir": folder,
            "ansible_pipelining": True}


class InventoryModule(BaseInventoryPlugin):
    NAME = "acklab.lab.pulumi_stack"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("pulumi_stack.yml", "pulumi_stack.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        stack = self.get_option("stack") or "default"
        project = Path(self.get_option("project_dir") or REPO)
        export = self._export(stack, project)
        hosts, outputs = classify(export.get("deployment", {}).get("resources") or [])
        for group in ("k8s_nodes", "ecs", "slb"):
            self.inventory.add_group(group)
        self.inventory.set_variable("all", "acklab_lab", stack)
        self.inventory.set_variable("all", "acklab_project", str(project))
        # Modules import acklab: they run with the interpreter running Ansible (the project's .venv).
        self.inventory.set_variable("all", "ansible_python_interpreter", sys.executable)
        ssh_hosts = self._ssh_hosts(stack) if self.get_option("connection") == "ssh" else {}
        if ssh_hosts:
            for key, value in ssh_group_vars(stack).items():
                self.inventory.set_variable("all", key, value)
        kubernetes = outputs.get("kubernetes") or {}
        self.inventory.set_variable("k8s_nodes", "acklab_kubernetes", kubernetes)
        for name, host in sorted(hosts.items()):
            self.inventory.add_host(name, group=host["group"])
            for key, value in host["vars"].items():
                self.inventory.set_variable(name, key, value)
            if name in ssh_hosts:
                self.inventory.set_variable(name, "ansible_connection", "ssh")
                self.inventory.set_variable(name, "ansible_host", ssh_hosts[name])
            else:
                self.inventory.set_variable(name, "ansible_connection", "acklab.lab.netns")

    def _ssh_hosts(self, stack: str) -> dict[str, str]:
        """Node name → management address, as ``python -m acklab.sshmode up`` recorded them."""
        path = Path(SSH_STATE.format(lab=stack)) / "nodes.json"
        try:
            return {n["name"]: n["address"] for n in json.loads(path.read_text())}
        except FileNotFoundError as exc:
            raise AnsibleParserError(f"acklab.lab.pulumi_stack: connection=ssh but lab {stack} has no SSH mode "
                                     f"({path} is missing): run `python -m acklab.sshmode up --lab {stack}`") from exc

    def _export(self, stack: str, project: Path) -> dict:
        beside = Path(sys.executable).parent / "pulumi"
        pulumi = self.get_option("pulumi") or (str(beside) if beside.exists() else "pulumi")
        # The project's defaults (as the Makefile sets them) unless the environment says otherwise.
        env = {"PULUMI_BACKEND_URL": f"file://{project}/.pulumi/state", "PULUMI_HOME": f"{project}/.pulumi/home",
               "PULUMI_CONFIG_PASSPHRASE": "", "PULUMI_SKIP_UPDATE_CHECK": "true", **os.environ}
        try:
            result = subprocess.run([pulumi, "stack", "export", "--stack", stack, "--non-interactive"], cwd=project,
                                    capture_output=True, text=True, timeout=120, env=env, check=False)
        except FileNotFoundError as exc:
            raise AnsibleParserError(f"acklab.lab.pulumi_stack: {exc}") from exc
        if result.returncode != 0:
            raise AnsibleParserError(f"acklab.lab.pulumi_stack: pulumi stack export --stack {stack} in {project} "
                                     f"failed: {result.stderr.strip()}")
        return json.loads(result.stdout or "{}")
