#!/usr/bin/python
"""Module: the API server's share of Services for a lab — allocations, status, endpoints' pods (run once)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: service_plan
short_description: Allocate ClusterIPs and NodePorts for the lab's Services and list the pods behind them
description:
  - Reads the Services of the lab's manifests and does what kube-apiserver does when they are created - a
    ClusterIP from the service CIDR and NodePorts from 30000-32767, kept stable between runs - and what the
    cloud controller manager reports - the SLB address of each LoadBalancer Service in its status.
  - Returns the Services as the API server would serve them and every pod with its address and node, the
    input of M(acklab.lab.kube_proxy) on each node. Run it once, on the controller.
author: acklab
version_added: 0.1.0
options:
  lab:
    description: The lab (Pulumi stack).
    type: str
    required: true
  manifests:
    description: The folder of Kubernetes manifests (C(*.yaml)).
    type: path
    required: true
  load_balancers:
    description: C(namespace/name) of a LoadBalancer Service to the address of its SLB (the stack's
      C(kubernetes.load_balancers) output).
    type: dict
    default: {}
  placements:
    description: The pod plan (M(acklab.lab.pod_plan)'s C(placements)), the pods behind the Services; without
      it, the pods the lab recorded on this machine.
    type: list
    elements: dict
"""

EXAMPLES = r"""
- name: Allocate Service addresses (once, on the controller)
  acklab.lab.service_plan:
    lab: default
    manifests: /srv/acklab/labs/default/k8s
    load_balancers: "{{ acklab_kubernetes.load_balancers | default({}) }}"
  run_once: true
  delegate_to: localhost
  register: kube_proxy_plan
"""

RETURN = r"""
services:
  description: The Services with C(spec.clusterIP), C(nodePort)s and C(status.loadBalancer) filled in.
  type: list
  elements: dict
  returned: always
pods:
  description: Every pod (namespace, name, labels, ip, node, ports).
  type: list
  elements: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "lab": {"type": "str", "required": True},
            "manifests": {"type": "path", "required": True},
            "load_balancers": {"type": "dict", "default": {}},
            "placements": {"type": "list", "elements": "dict"},
        },
        supports_check_mode=True,
    )
    try:
        from acklab.k8s import apiserver
        from acklab.k8s.kube_proxy_sync import cluster_pods
        from acklab.k8s.model import load_manifests
        from acklab.k8s.plan import placement_from_dict
        from acklab.k8s.services import PodEndpoint
        from netns.model.errors import LabError
    except ImportError as exc:
        module.fail_json(msg=f"acklab is not importable by this interpreter: {exc}")
        return
    p = module.params
    try:
        cluster = load_manifests(p["manifests"])
        before = apiserver.load_services(p["lab"])
        allocations = apiserver.allocate(p["lab"], cluster.services)
        services = apiserver.with_status(cluster.services, allocations, p["load_balancers"])
        if not module.check_mode:
            apiserver.save_services(p["lab"], services)
        if p["placements"] is not None:
            placed = (placement_from_dict(d) for d in p["placements"])
            found = [PodEndpoint.of(pl.pod, pl.ip, pl.node) for pl in placed]
        else:
            found = cluster_pods(p["lab"])
        pods = sorted((pod.to_dict() for pod in found), key=lambda d: (d["namespace"], d["name"]))
    except (LabError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(changed=services != before, services=services, pods=pods)


if __name__ == "__main__":
    main()
