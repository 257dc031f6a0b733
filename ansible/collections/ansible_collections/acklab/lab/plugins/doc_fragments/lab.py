"""Options every acklab.lab module that installs a cluster component shares."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  lab:
    description: The lab (Pulumi stack); the inventory sets C(acklab_lab).
    type: str
    required: true
  state:
    description:
      - C(present) installs and starts what is missing or configured differently, and leaves running components
        alone (a second run reports no change); C(absent) stops and removes them.
    type: str
    choices: [present, absent]
    default: present
notes:
  - The module imports acklab, so run it with the project's Python (the inventory sets C(ansible_python_interpreter)
    to the interpreter running Ansible).
  - It runs on the machine that holds the lab's namespaces (C(delegate_to) C(localhost) from a node's play), in
    the root network namespace, which it only reads; the components start inside the lab's namespaces.
    M(acklab.lab.k8s_node) may instead run on the node itself, inside the node's namespace (SSH mode, Ansible's
    C(ssh) connection), with its option C(api_endpoint=vpc).
"""
