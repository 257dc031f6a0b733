#!/usr/bin/python
"""Module: kube-proxy (iptables mode) on one node — compile the Services' rules and sync them."""

from __future__ import annotations

DOCUMENTATION = r"""
module: kube_proxy
short_description: Sync kube-proxy's iptables rules for the cluster's Services on one node
description:
  - Resolves the Services' endpoints for this node (targetPort by name, local endpoints for
    externalTrafficPolicy/internalTrafficPolicy Local), compiles the rule set kube-proxy's iptables mode would
    write (KUBE-SERVICES, KUBE-SVC/SVL/EXT/FW/SEP chains, KUBE-NODEPORTS, KUBE-MARK-MASQ, KUBE-POSTROUTING,
    KUBE-FORWARD) and applies it in the node's network namespace with one C(iptables-restore --noflush).
  - Applies nothing when the rules are what was applied last (changed=false).
author: acklab
version_added: 0.1.0
options:
  lab:
    description: The lab (Pulumi stack).
    type: str
    required: true
  node:
    description: The node's name.
    type: str
    required: true
  netns:
    description: The node's network namespace.
    type: str
    required: true
  node_ip:
    description: The node's primary address.
    type: str
  cluster_cidr:
    description: kube-proxy's C(--cluster-cidr) (pod traffic is not masqueraded); empty for none.
    type: str
    default: ""
  services:
    description: The Services with their allocations (from M(acklab.lab.service_plan)).
    type: list
    elements: dict
    required: true
  pods:
    description: Every pod of the cluster (from M(acklab.lab.service_plan)).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Sync kube-proxy's rules
  acklab.lab.kube_proxy:
    lab: default
    node: "{{ inventory_hostname }}"
    netns: "{{ acklab_netns }}"
    node_ip: "{{ private_ip }}"
    cluster_cidr: 192.168.3.0/24
    services: "{{ kube_proxy_plan.services }}"
    pods: "{{ kube_proxy_plan.pods }}"
"""

RETURN = r"""
lines:
  description: Lines of iptables-restore input applied (0 when nothing changed).
  type: int
  returned: always
service_ports:
  description: Service ports programmed on the node.
  type: int
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "lab": {"type": "str", "required": True},
            "node": {"type": "str", "required": True},
            "netns": {"type": "str", "required": True},
            "node_ip": {"type": "str"},
            "cluster_cidr": {"type": "str", "default": ""},
            "services": {"type": "list", "elements": "dict", "required": True},
            "pods": {"type": "list", "elements": "dict", "required": True},
        },
        supports_check_mode=False,
    )
    try:
        from acklab.k8s.kube_proxy_sync import sync_node
        from acklab.k8s.services import PodEndpoint
        from netns.model.errors import LabError
    except ImportError as exc:
        module.fail_json(msg=f"acklab is not importable by this interpreter: {exc}")
        return
    p = module.params
    try:
        pods = [PodEndpoint.from_dict(d) for d in p["pods"]]
        result = sync_node(p["lab"], p["node"], p["netns"], p["services"], pods, p["node_ip"],
                           p["cluster_cidr"] or None)
    except (LabError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(changed=result.changed, lines=result.lines, service_ports=result.service_ports)


if __name__ == "__main__":
    main()
