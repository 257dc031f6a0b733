#!/usr/bin/python
"""Module: the cluster's pod plan (which pod runs on which node with which address), made once."""

from __future__ import annotations

DOCUMENTATION = r"""
module: pod_plan
short_description: Plan an acklab cluster's pods once, on the controller
description:
  - Reads the lab's manifests (Namespace, Pod, Deployment), schedules the pods onto the nodes (C(nodeName),
    else spreading; running pods stay where they are) and gives them addresses per datapath.
  - Pure computation on the controller (run it with C(run_once) and C(delegate_to=localhost)); changes nothing.
    Each node then gets its share as data (M(acklab.lab.pod_network) with O(acklab.lab.pod_network#module:placements)).
author: acklab
version_added: 0.2.0
options:
  lab:
    description: The lab (Pulumi stack).
    type: str
    required: true
  datapath:
    description: How pods get addresses and how traffic crosses nodes.
    type: str
    required: true
    choices: [terway-eniip, vpc-route, vxlan]
  pod_cidr:
    description: The cluster's pod CIDR (C(vpc-route), C(vxlan)).
    type: str
  nodes:
    description: Every node of the cluster (C(name), C(netns), C(ip), and C(pod_cidr) or C(eni_ifname),
      C(eni_gateway), C(eni_ips)).
    type: list
    elements: dict
    required: true
  manifests:
    description: The folder of Kubernetes manifests (C(*.yaml)), on the controller.
    type: path
    required: true
  running:
    description: The pods running now, as the nodes report them (C(pods) of M(acklab.lab.pod_info)),
      each with C(key), C(node) and C(ip).
    type: list
    elements: dict
    default: []
"""

EXAMPLES = r"""
- name: Plan the cluster's pods once, on the controller
  acklab.lab.pod_plan:
    lab: default
    datapath: vxlan
    pod_cidr: 10.244.0.0/16
    nodes: "{{ acklab_k8s_nodes }}"
    manifests: /srv/acklab/labs/default/k8s
    running: "{{ ansible_play_hosts | map('extract', hostvars, ['running', 'pods']) | flatten }}"
  run_once: true
  delegate_to: localhost
  register: pod_network_plan
"""

RETURN = r"""
placements:
  description: One entry per pod, sorted by pod key - C(pod) (namespace, name, labels, ports, nodeName), C(node),
    C(ip), C(prefixlen), C(gateway), C(mtu).
  type: list
  elements: dict
  returned: success
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "lab": {"type": "str", "required": True},
            "datapath": {"type": "str", "required": True, "choices": ["terway-eniip", "vpc-route", "vxlan"]},
            "pod_cidr": {"type": "str"},
            "nodes": {"type": "list", "elements": "dict", "required": True},
            "manifests": {"type": "path", "required": True},
            "running": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        from acklab.k8s.model import load_manifests
        from acklab.k8s.plan import Network, node_from_dict, placement_to_dict, plan
        from netns.model.errors import LabError
    except ImportError as exc:
        module.fail_json(msg=f"acklab is not importable by this interpreter: {exc} "
                             "(set ansible_python_interpreter to the project's .venv/bin/python)")
        return
    p = module.params
    nodes = tuple(node_from_dict(n) for n in p["nodes"])
    network = Network(p["lab"], p["datapath"], nodes, p["pod_cidr"] or None)
    try:
        current = {str(r["key"]): (str(r["node"]), str(r["ip"])) for r in p["running"]}
    except KeyError as exc:
        module.fail_json(msg=f"running: an entry lacks the key {exc} (pass acklab.lab.pod_info's pods)")
        return
    try:
        placements = plan(network, load_manifests(p["manifests"]), current)
    except (LabError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(changed=False, placements=[placement_to_dict(placements[k]) for k in sorted(placements)])


if __name__ == "__main__":
    main()
