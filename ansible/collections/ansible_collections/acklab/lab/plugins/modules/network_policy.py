#!/usr/bin/python
"""Module: enforce the lab's NetworkPolicies (Kubernetes and Calico) on one Kubernetes node."""

from __future__ import annotations

DOCUMENTATION = r"""
module: network_policy
short_description: Enforce Kubernetes and Calico network policies on one node, Felix-style
description:
  - Policies are networking.k8s.io/v1 C(NetworkPolicy), projectcalico.org/v3 C(NetworkPolicy) and
    C(GlobalNetworkPolicy) manifests; Namespaces' labels feed namespace selectors.
  - With O(validate_only), reads and validates the manifests folder and returns the policies and namespace
    labels as data (run it once on the controller); nothing on any node changes. An invalid policy fails the
    task naming the object, the field and the reason.
  - Otherwise compiles the policies for O(node) into filter-table chains (C(cali-FORWARD), C(cali-fw-*)/C(cali-tw-*)
    per local pod, C(cali-pi-*)/C(cali-po-*) per policy) and ipsets (C(cali40*)), applies what differs from the
    node's namespace with C(ipset restore) and C(iptables-restore --noflush), keeps its FORWARD jump first, and
    cuts established flows the policies now forbid (their conntrack entries). Nothing changes when the node
    already enforces the same rules.
  - The cluster's pods come from O(placements) (the controller's plan, as data, so no node reads another's files),
    else from the lab's pod records on this machine.
author: acklab
version_added: 0.1.0
options:
  lab:
    description: The lab (Pulumi stack).
    type: str
    required: true
  validate_only:
    description: Read and validate O(manifests), return them as data, change nothing.
    type: bool
    default: false
  manifests:
    description: The folder of Kubernetes manifests (C(*.yaml)); read when O(policies) is not given.
    type: path
  policies:
    description: The policy manifests as data (the RV(manifests) of a O(validate_only) run).
    type: list
    elements: dict
  namespace_labels:
    description: Namespace name to its labels (the RV(namespace_labels) of a O(validate_only) run).
    type: dict
  node:
    description: The node to converge.
    type: str
  netns:
    description: The node's network namespace.
    type: str
  datapath:
    description: The pod datapath; C(terway-eniip) pods are matched by their veth, bridged ones by address.
    type: str
    choices: [terway-eniip, vpc-route, vxlan]
  placements:
    description: The cluster's pods as M(acklab.lab.pod_plan) returns them (pod, node, ip).
    type: list
    elements: dict
"""

EXAMPLES = r"""
- name: Read and validate the policies once, on the controller
  acklab.lab.network_policy:
    lab: default
    manifests: /srv/acklab/labs/default/k8s
    validate_only: true
  run_once: true
  delegate_to: localhost
  register: network_policy_plan

- name: Enforce the network policies on this node
  acklab.lab.network_policy:
    lab: default
    node: "{{ inventory_hostname }}"
    netns: "{{ acklab_netns }}"
    datapath: terway-eniip
    policies: "{{ network_policy_plan.manifests }}"
    namespace_labels: "{{ network_policy_plan.namespace_labels }}"
    placements: "{{ pod_network_plan.placements }}"
"""

RETURN = r"""
changes:
  description: What was written, removed or cut.
  type: list
  elements: str
  returned: always
policies:
  description: The policies in evaluation order (Calico order, then name).
  type: list
  elements: str
  returned: always
manifests:
  description: The policy manifests (with O(validate_only)).
  type: list
  elements: dict
  returned: when validate_only
namespace_labels:
  description: Namespace name to its labels (with O(validate_only)).
  type: dict
  returned: when validate_only
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "lab": {"type": "str", "required": True},
            "validate_only": {"type": "bool", "default": False},
            "manifests": {"type": "path"},
            "policies": {"type": "list", "elements": "dict"},
            "namespace_labels": {"type": "dict"},
            "node": {"type": "str"},
            "netns": {"type": "str"},
            "datapath": {"type": "str", "choices": ["terway-eniip", "vpc-route", "vxlan"]},
            "placements": {"type": "list", "elements": "dict"},
        },
        required_one_of=[("manifests", "policies")],
        required_if=[("validate_only", False, ("node", "netns", "datapath"))],
        supports_check_mode=False,
    )
    try:
        from acklab.k8s.model import load_manifests
        from acklab.k8s.netpol_kernel import apply_node, endpoints_from_placements, endpoints_from_records
        from acklab.k8s.network_policy import parse_policies
        from acklab.k8s.pods import k8s_lock, load_records
        from netns.model.errors import LabError
    except ImportError as exc:
        module.fail_json(msg=f"acklab is not importable by this interpreter: {exc} "
                             "(set ansible_python_interpreter to the project's .venv/bin/python)")
        return
    p = module.params
    try:
        if p["policies"] is None:
            cluster = load_manifests(p["manifests"])
            docs, ns_labels = list(cluster.network_policies), dict(cluster.namespace_labels)
        else:
            docs, ns_labels = p["policies"], p["namespace_labels"] or {}
        policies = parse_policies(docs)  # every policy is valid before anything changes
        names = [f"{x.kind} {x.ident}" for x in policies]
        if p["validate_only"]:
            module.exit_json(changed=False, changes=[], policies=names, manifests=docs, namespace_labels=ns_labels)
            return
        if p["placements"] is not None:
            endpoints = endpoints_from_placements(p["placements"], ns_labels)
            changes = apply_node(p["lab"], p["node"], p["netns"], policies, endpoints,
                                 p["datapath"] == "terway-eniip")
        else:
            with k8s_lock(p["lab"]):
                endpoints = endpoints_from_records(load_records(p["lab"]).values(), ns_labels)
                changes = apply_node(p["lab"], p["node"], p["netns"], policies, endpoints,
                                     p["datapath"] == "terway-eniip")
    except (LabError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(changed=bool(changes), changes=changes, policies=names)


if __name__ == "__main__":
    main()
