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
  - With O(manifests), each node plans for itself; nodes converge one at a time (a lock per lab, in a folder
    every node shares), so every node sees one consistent plan.
  - With O(placements) (the output of M(acklab.lab.pod_plan), made once on the controller), the node plans
    nothing and reads only what it recorded itself (no file system or process table is shared between nodes,
    so nodes may be on different hosts, as in SSH mode). Run it first with O(prune_only=true) on every node, then
    without, so a pod that moves between nodes leaves its old node before it starts on the new one.
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
    description: The folder of Kubernetes manifests (C(*.yaml)). Required unless O(placements) is given.
    type: path
  placements:
    description: The cluster's plan from M(acklab.lab.pod_plan) (C(placements) of its result); this node
      realizes its share of it.
    type: list
    elements: dict
  prune_only:
    description: With O(placements), only remove this node's pods that the plan no longer puts here.
    type: bool
    default: false
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

- name: Converge this node's share of a plan made on the controller
  acklab.lab.pod_network:
    lab: default
    node: "{{ inventory_hostname }}"
    datapath: vxlan
    pod_cidr: 10.244.0.0/16
    nodes: "{{ acklab_k8s_nodes }}"
    placements: "{{ pod_network_plan.placements }}"
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
            "manifests": {"type": "path"},
            "placements": {"type": "list", "elements": "dict"},
            "prune_only": {"type": "bool", "default": False},
        },
        required_one_of=[("manifests", "placements")],
        mutually_exclusive=[("manifests", "placements")],
        supports_check_mode=False,
    )
    try:
        from acklab.k8s.model import load_manifests
        from acklab.k8s.plan import Network, node_from_dict, placement_from_dict, plan
        from acklab.k8s.pods import converge_node, current_placements, k8s_lock, load_records, node_lock, prune_node
        from netns.model.errors import LabError
    except ImportError as exc:
        module.fail_json(msg=f"acklab is not importable by this interpreter: {exc} "
                             "(set ansible_python_interpreter to the project's .venv/bin/python)")
        return
    p = module.params
    nodes = tuple(node_from_dict(n) for n in p["nodes"])
    network = Network(p["lab"], p["datapath"], nodes, p["pod_cidr"] or None)
    if p["prune_only"] and p["placements"] is None:
        module.fail_json(msg="prune_only needs placements (the plan of acklab.lab.pod_plan)")
        return
    try:
        if p["placements"] is not None:
            given = {q.pod.key: q for q in (placement_from_dict(d) for d in p["placements"])}
            with node_lock(p["lab"], p["node"]):
                if p["prune_only"]:
                    changes = prune_node(network, p["node"], given)
                else:
                    changes = converge_node(network, p["node"], given, own_only=True)
        else:
            cluster = load_manifests(p["manifests"])
            with k8s_lock(p["lab"]):
                placements = plan(network, cluster, current_placements(p["lab"]))
                changes = converge_node(network, p["node"], placements)
    except KeyError as exc:
        module.fail_json(msg=f"placements: an entry lacks the key {exc} (pass acklab.lab.pod_plan's result)")
        return
    except (LabError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
        return
    pods = [{"namespace": r.pod.namespace, "name": r.pod.name, "ip": r.ip, "netns": r.netns}
            for r in load_records(p["lab"]).values() if r.node == p["node"]]
    module.exit_json(changed=bool(changes), changes=changes, pods=sorted(pods, key=lambda x: (x["namespace"],
                                                                                              x["name"])))


if __name__ == "__main__":
    main()
