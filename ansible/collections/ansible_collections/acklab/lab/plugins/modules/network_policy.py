#!/usr/bin/python
"""Module: enforce the lab's NetworkPolicies (Kubernetes and Calico) on one Kubernetes node."""

from __future__ import annotations

DOCUMENTATION = r"""
module: network_policy
short_description: Enforce Kubernetes and Calico network policies on one node, Felix-style
description:
  - Reads the lab's manifests - networking.k8s.io/v1 C(NetworkPolicy), projectcalico.org/v3 C(NetworkPolicy) and
    C(GlobalNetworkPolicy), and the Namespaces (their labels) - and the lab's pod records (labels, addresses,
    declared containerPorts).
  - Compiles the policies into the node's filter-table chains (C(cali-FORWARD), C(cali-fw-*)/C(cali-tw-*) per
    local pod, C(cali-pi-*)/C(cali-po-*) per policy) and ipsets (C(cali40*)), applies them atomically with
    C(ipset restore) and C(iptables-restore --noflush) in the node's namespace, and cuts established flows the
    policies now forbid (their conntrack entries).
  - Every policy is validated before anything changes; an invalid one fails the task naming the object, the
    field and the reason. Nothing changes when the node already enforces the same rules.
author: acklab
version_added: 0.1.0
options:
  lab:
    description: The lab (Pulumi stack).
    type: str
    required: true
  node:
    description: The node to converge (a name in O(nodes)).
    type: str
    required: true
  datapath:
    description: The pod datapath; C(terway-eniip) pods are matched by their veth, bridged ones by address.
    type: str
    required: true
    choices: [terway-eniip, vpc-route, vxlan]
  nodes:
    description: Every node of the cluster (at least C(name) and C(netns)).
    type: list
    elements: dict
    required: true
  manifests:
    description: The folder of Kubernetes manifests (C(*.yaml)).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Enforce the network policies on this node
  acklab.lab.network_policy:
    lab: default
    node: "{{ inventory_hostname }}"
    datapath: terway-eniip
    nodes: "{{ acklab_k8s_nodes }}"
    manifests: /srv/acklab/labs/default/k8s
"""

RETURN = r"""
changes:
  description: What was applied or cut.
  type: list
  elements: str
  returned: always
policies:
  description: The policies in evaluation order (Calico order, then name).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "lab": {"type": "str", "required": True},
            "node": {"type": "str", "required": True},
            "datapath": {"type": "str", "required": True, "choices": ["terway-eniip", "vpc-route", "vxlan"]},
            "nodes": {"type": "list", "elements": "dict", "required": True},
            "manifests": {"type": "path", "required": True},
        },
        supports_check_mode=False,
    )
    try:
        from acklab.k8s.model import load_manifests
        from acklab.k8s.netpol_kernel import apply_node, endpoints_from_records
        from acklab.k8s.network_policy import parse_policies
        from acklab.k8s.pods import k8s_lock, load_records
        from netns.model.errors import LabError
    except ImportError as exc:
        module.fail_json(msg=f"acklab is not importable by this interpreter: {exc} "
                             "(set ansible_python_interpreter to the project's .venv/bin/python)")
        return
    p = module.params
    netns = next((n.get("netns") for n in p["nodes"] if n.get("name") == p["node"]), None)
    if not netns:
        module.fail_json(msg=f"node {p['node']!r} is not among the cluster's nodes")
        return
    try:
        cluster = load_manifests(p["manifests"])
        policies = parse_policies(cluster.network_policies, cluster.namespace_labels)
        with k8s_lock(p["lab"]):
            endpoints = endpoints_from_records(load_records(p["lab"]).values(), cluster.namespace_labels)
            changes = apply_node(p["lab"], p["node"], netns, policies, endpoints, p["datapath"] == "terway-eniip")
    except (LabError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(changed=bool(changes), changes=changes, policies=[f"{x.kind} {x.ident}" for x in policies])


if __name__ == "__main__":
    main()
