#!/usr/bin/python
"""Module: converge one Kubernetes node's pods (and its datapath) from the lab's manifests."""

from __future__ import annotations

DOCUMENTATION = r"""
module: pod_network
short_description: Converge one node's pods and pod datapath from Kubernetes manifests
description:
  - Reads the lab's manifests (Namespace, Pod, Deployment), schedules the pods onto the cluster's nodes
    (C(nodeName), else spreading; running pods stay where they are) and gives them addresses per datapath.
  - Realizes the share of O(node) on the kernel - the datapath (C(terway-eniip), C(vpc-route), C(vxlan)), a
    network namespace per pod plumbed from the node, and the node's pod agent that answers on every declared
    containerPort - and removes pods no longer wanted there.
  - Nodes converge one at a time (a lock per lab), so every node sees one consistent plan.
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
    description: The folder of Kubernetes manifests (C(*.yaml)).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Converge the pods of this node
  acklab.lab.pod_network:
    lab: default
    node: "{{ inventory_hostname }}"
    datapath: vxlan
    pod_cidr: 10.244.0.0/16
    nodes: "{{ acklab_k8s_nodes }}"
    manifests: /srv/acklab/labs/default/k8s
"""

RETURN = r"""
changes:
  description: What was created, changed or removed.
  type: list
  elements: str
  returned: always
pods:
  description: The pods now running on the node (namespace, name, ip, netns).
  type: list
  elements: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "lab": {"type": "str", "required": True},
            "node": {"type": "str", "required": True},
            "datapath": {"type": "str", "required": True, "choices": ["terway-eniip", "vpc-route", "vxlan"]},
            "pod_cidr": {"type": "str"},
            "nodes": {"type": "list", "elements": "dict", "required": True},
            "manifests": {"type": "path", "required": True},
        },
        supports_check_mode=False,
    )
    try:
        from acklab.k8s.model import load_manifests
        from acklab.k8s.plan import Network, Node, plan
        from acklab.k8s.pods import converge_node, current_placements, k8s_lock, load_records
        from netns.model.errors import LabError
    except ImportError as exc:
        module.fail_json(msg=f"acklab is not importable by this interpreter: {exc} "
                             "(set ansible_python_interpreter to the project's .venv/bin/python)")
        return
    p = module.params
    nodes = tuple(Node(n["name"], n["netns"], n["ip"], n.get("pod_cidr"), n.get("eni_ifname") or "eth1",
                       n.get("eni_gateway"), tuple(n.get("eni_ips") or ())) for n in p["nodes"])
    network = Network(p["lab"], p["datapath"], nodes, p["pod_cidr"] or None)
    try:
        cluster = load_manifests(p["manifests"])
        with k8s_lock(p["lab"]):
            placements = plan(network, cluster, current_placements(p["lab"]))
            changes = converge_node(network, p["node"], placements)
    except (LabError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
        return
    pods = [{"namespace": r.pod.namespace, "name": r.pod.name, "ip": r.ip, "netns": r.netns}
            for r in load_records(p["lab"]).values() if r.node == p["node"]]
    module.exit_json(changed=bool(changes), changes=changes, pods=sorted(pods, key=lambda x: (x["namespace"],
                                                                                              x["name"])))


if __name__ == "__main__":
    main()
