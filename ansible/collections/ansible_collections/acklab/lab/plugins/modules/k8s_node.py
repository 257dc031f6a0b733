#!/usr/bin/python
"""Module: one ECS instance joins the lab's cluster as a Kubernetes node."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_node
short_description: Run the node agent, upstream kube-proxy and the NetworkPolicy agent on one node
description:
  - Starts, in the node's namespace, acklab's node agent (the kubelet's network share, which registers the
    C(Node) with ACK's labels, builds the namespaces of the pods the API binds to it, Terway's live ENI IP
    management in O(pod_vswitch_ids) or Flannel's bridge on the Node's block of O(pod_cidr), probes, pod status),
    upstream C(kube-proxy) in O(proxy_mode), and the NetworkPolicy agent (Calico Felix-like chains following
    NetworkPolicy and Calico's policies through the API).
  - Each follows the lab's API server (M(acklab.lab.control_plane) first) with watches; workloads come through
    the API (C(kubectl apply), C(kubernetes.core.k8s)).
  - Thin over C(acklab.k8s.cluster_install.install_node), the installer C(cs.NodePool) shares. A component that
    runs with the same configuration is left alone, so the task reports a change only when it started one.
  - With O(state=absent), drains the node (cordoned, its pods deleted until the agent removed their namespaces),
    stops the three and deletes the C(Node) object; the instance stays.
  - A few calls act as the cluster's admin (Flannel's RBAC, the NetworkPolicy agent's definitions, the drain, the
    C(Node)'s deletion); O(api_endpoint) says how the module reaches the API server for them.
author: acklab
version_added: 0.2.0
extends_documentation_fragment:
  - acklab.lab.lab
  - acklab.lab.pod_network
options:
  name:
    description: The Node's name (the ECS host name).
    type: str
    required: true
  netns:
    description: The node's network namespace (C(acklab_netns) of the inventory).
    type: str
    required: true
  instance_id:
    description: The ECS instance's id (the Node's C(spec.providerID) is C(<region>.<instance id>)).
    type: str
  private_ip:
    description: The primary ENI's address (the Node's InternalIP, kube-proxy's node address).
    type: str
  instance_type:
    description: The instance type; its ENI quota bounds the node's pods, as Alibaba publishes it.
    type: str
    default: ecs.g7.large
  vswitch_id:
    description: The node's vSwitch (its zone and VPC).
    type: str
  pod_vswitch_ids:
    description: Terway's pod vSwitches (eni-config's C(vswitches)); pods' ENIs are made in the first one. Required
      for C(terway-eniip).
    type: list
    elements: str
  security_groups:
    description: The security groups of the pods' ENIs.
    type: list
    elements: str
    default: []
  proxy_mode:
    description: kube-proxy's mode (this kernel has no IPVS).
    type: str
    choices: [iptables, nftables]
    default: iptables
  min_pool_size:
    description: Terway's warm pool, minimum free addresses.
    type: int
    default: 0
  max_pool_size:
    description: Terway's warm pool, maximum free addresses.
    type: int
    default: 5
  api_endpoint:
    description:
      - How the module reaches the API server as the admin.
      - C(host) when it runs on the controller (C(delegate_to) C(localhost), the M(acklab.lab.netns) connection),
        through the lab's kubeconfig, whose server is the relay on the host's 127.0.0.1.
      - C(vpc) when it runs on the node itself (Ansible's C(ssh) connection, SSH mode, inside the node's
        namespace, which cannot see the host's loopback), through the control plane's address in its vSwitch,
        port 6443, as the node's agents reach it (an in-VPC admin kubeconfig kept in the control plane's folder).
    type: str
    choices: [host, vpc]
    default: host
"""

EXAMPLES = r"""
- name: Join the cluster
  acklab.lab.k8s_node:
    lab: "{{ acklab_lab }}"
    name: "{{ inventory_hostname }}"
    netns: "{{ acklab_netns }}"
    instance_id: "{{ instance_id }}"
    private_ip: "{{ private_ip }}"
    instance_type: "{{ instance_type }}"
    vswitch_id: "{{ vswitch_id }}"
    pod_vswitch_ids: "{{ acklab_kubernetes.pod_vswitch_ids }}"
    security_groups: "{{ security_groups }}"
  delegate_to: localhost

- name: Join the cluster from the node itself (SSH mode), reaching the API server through the VPC
  acklab.lab.k8s_node:
    lab: "{{ acklab_lab }}"
    name: "{{ inventory_hostname }}"
    netns: "{{ acklab_netns }}"
    instance_id: "{{ instance_id }}"
    private_ip: "{{ private_ip }}"
    vswitch_id: "{{ vswitch_id }}"
    pod_vswitch_ids: "{{ acklab_kubernetes.pod_vswitch_ids }}"
    api_endpoint: vpc
"""

RETURN = r"""
changes:
  description: What was started or stopped on the node.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.acklab.lab.plugins.module_utils.cluster import (
    FLANNEL_REQUIRES,
    LAB_ARGS,
    POD_NETWORK_ARGS,
    installer,
    pod_network,
    run,
)

PRESENT = ("instance_id", "private_ip", "vswitch_id")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **LAB_ARGS,
            "name": {"type": "str", "required": True},
            "netns": {"type": "str", "required": True},
            "instance_id": {"type": "str"},
            "private_ip": {"type": "str"},
            "instance_type": {"type": "str", "default": "ecs.g7.large"},
            "vswitch_id": {"type": "str"},
            "pod_vswitch_ids": {"type": "list", "elements": "str"},
            "security_groups": {"type": "list", "elements": "str", "default": []},
            "proxy_mode": {"type": "str", "choices": ["iptables", "nftables"], "default": "iptables"},
            "min_pool_size": {"type": "int", "default": 0},
            "max_pool_size": {"type": "int", "default": 5},
            "api_endpoint": {"type": "str", "choices": ["host", "vpc"], "default": "host"},
            **POD_NETWORK_ARGS,
        },
        required_if=[("state", "present", PRESENT), *FLANNEL_REQUIRES],
        supports_check_mode=False,
    )
    install = installer(module)
    p = module.params
    if p["state"] == "present" and p["datapath"] in ("terway-eniip", "terway-eni") and not p["pod_vswitch_ids"]:
        module.fail_json(msg="pod_vswitch_ids: at least one pod vSwitch is needed (Terway makes the pods' ENIs there)")

    def present() -> dict:
        spec = install.NodeSpec(p["lab"], p["name"], p["instance_id"], p["netns"], p["private_ip"],
                                p["instance_type"], p["vswitch_id"], tuple(p["pod_vswitch_ids"] or ()),
                                tuple(p["security_groups"]), p["proxy_mode"], p["min_pool_size"], p["max_pool_size"],
                                network=pod_network(install, p))
        return {"changes": install.install_node(spec, p["api_endpoint"]).changes}

    def absent() -> dict:
        return {"changes": install.remove_node(p["lab"], p["name"], p["netns"], p["private_ip"] or "",
                                               p["api_endpoint"]).changes}

    run(module, present if p["state"] == "present" else absent)


if __name__ == "__main__":
    main()
