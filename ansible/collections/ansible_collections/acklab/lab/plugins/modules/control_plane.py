#!/usr/bin/python
"""Module: the lab's Kubernetes control plane (ACK's managed one) and its cluster-wide controllers."""

from __future__ import annotations

DOCUMENTATION = r"""
module: control_plane
short_description: Run a lab's Kubernetes control plane, cloud controller and ingress controller
description:
  - Runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler in the namespace of the lab's cluster,
    plugged into O(vswitch_id) (the API server's address there is what nodes reach, and the C(kubernetes) Service's
    endpoint), with a relay on the host's loopback for C(kubectl) (the lab's kubeconfig, C(acklab kubeconfig)).
  - With Flannel (O(datapath) C(vpc-route) or C(vxlan)) the controller-manager gives each Node a block of
    O(pod_cidr); with C(vpc-route) the cloud controller routes each block in the VPC to its node. The pod network
    is fixed when the control plane is made.
  - Then acklab's cloud controller (SLBs for Services of type LoadBalancer) and the ingress controller on the API
    (nginx in the ingress pods); with O(ingress_addon), ACK's C(nginx-ingress-controller) add-on (IngressClass,
    controller Deployment, LoadBalancer Service) through the API.
  - Thin over C(acklab.k8s.cluster_install.install_control_plane), the installer C(cs.ManagedKubernetes) shares.
    Reports a change only when it started a component or applied an object.
  - With O(state=absent), stops the controllers, deletes the SLBs the cloud controller made and removes the
    control plane (run it after the nodes' M(acklab.lab.k8s_node) with O(state=absent)).
  - Runs on the host, in its network namespace (the relay of the lab's kubeconfig listens on its loopback); it
    fails at once elsewhere, e.g. in SSH mode's controller namespace, where only the nodes' part of
    C(cluster.yml) runs (C(--limit k8s_nodes)).
author: acklab
version_added: 0.2.0
extends_documentation_fragment:
  - acklab.lab.lab
  - acklab.lab.pod_network
options:
  vswitch_id:
    description: The vSwitch the control plane is plugged into when it is made (an existing plug is kept).
    type: str
  cluster_id:
    description: The cluster's id (C(c) and 8 hex digits); default the lab's existing control plane's, else a new one.
    type: str
  ingress_addon:
    description: Also apply ACK's C(nginx-ingress-controller) add-on (its pods start once nodes have joined).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: The control plane on the nodes' vSwitch
  acklab.lab.control_plane:
    lab: default
    vswitch_id: "{{ hostvars[groups['k8s_nodes'] | first].vswitch_id }}"
  register: control_plane

- name: Remove the cluster's control plane
  acklab.lab.control_plane:
    lab: default
    state: absent
"""

RETURN = r"""
cluster_id:
  description: The cluster's id.
  type: str
  returned: when state is present
address:
  description: The API server's address in the vSwitch (port 6443).
  type: str
  returned: when state is present
kubeconfig:
  description: The admin kubeconfig for the host (server on 127.0.0.1).
  type: str
  returned: when state is present
changes:
  description: What was started, applied or removed.
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


def main() -> None:
    module = AnsibleModule(
        argument_spec={**LAB_ARGS, **POD_NETWORK_ARGS, "vswitch_id": {"type": "str"}, "cluster_id": {"type": "str"},
                       "ingress_addon": {"type": "bool", "default": False}},
        required_if=[("state", "present", ("vswitch_id",)), *FLANNEL_REQUIRES],
        supports_check_mode=False,
    )
    install = installer(module)
    p = module.params
    from netns.kernel.namespace import own_name  # importable once installer() is: acklab's own tree

    inside = own_name()  # the lab's kubeconfig relay listens on the host's loopback
    if inside is not None:
        module.fail_json(msg=f"the control plane (ACK's managed part) is installed from the host, whose loopback "
                             f"holds the lab's kubeconfig relay, not from network namespace {inside} (SSH mode's "
                             "controller?): run cluster.yml from the host, and over SSH only its nodes' part "
                             "(--limit k8s_nodes)")

    def present() -> dict:
        result = install.install_control_plane(p["lab"], p["vswitch_id"], p["cluster_id"], p["ingress_addon"],
                                               pod_network(install, p))
        return {"cluster_id": result.cluster_id, "address": result.address, "kubeconfig": result.kubeconfig,
                "changes": result.changes}

    def absent() -> dict:
        return {"changes": install.remove_control_plane(p["lab"], p["cluster_id"])}

    run(module, present if p["state"] == "present" else absent)


if __name__ == "__main__":
    main()
