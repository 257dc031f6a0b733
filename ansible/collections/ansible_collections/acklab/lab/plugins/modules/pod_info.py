#!/usr/bin/python
"""Module: the pods one Kubernetes node runs now (what it reports to the controller's plan)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: pod_info
short_description: The pods a Kubernetes node of an acklab lab runs now
description:
  - Reads what this node recorded itself (C(/run/acklab/<lab>/k8s/pods/) entries whose node is O(node)) and
    keeps the pods whose network namespace exists. Nothing another node wrote is read, so nodes may be on
    different hosts.
  - The result feeds M(acklab.lab.pod_plan) on the controller: running pods keep their node and address.
author: acklab
version_added: 0.2.0
options:
  lab:
    description: The lab (Pulumi stack).
    type: str
    required: true
  node:
    description: This node's name.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Read the pods running on this node
  acklab.lab.pod_info:
    lab: default
    node: "{{ inventory_hostname }}"
  register: running
"""

RETURN = r"""
pods:
  description: The node's running pods, C(key) (namespace/name), C(node) and C(ip).
  type: list
  elements: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(argument_spec={"lab": {"type": "str", "required": True},
                                          "node": {"type": "str", "required": True}},
                           supports_check_mode=True)
    try:
        from acklab.k8s.pods import node_placements
    except ImportError as exc:
        module.fail_json(msg=f"acklab is not importable by this interpreter: {exc} "
                             "(set ansible_python_interpreter to the project's .venv/bin/python)")
        return
    running = node_placements(module.params["lab"], module.params["node"])
    module.exit_json(changed=False, pods=[{"key": key, "node": node, "ip": ip}
                                          for key, (node, ip) in sorted(running.items())])


if __name__ == "__main__":
    main()
