"""The cluster's network plug-in, as the control plane and each node take it (one set of options for both)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  datapath:
    description:
      - The network plug-in. C(terway-eniip) (ACK's default) puts pods on the lab's ENIs; C(terway-eni)
        (Terway's exclusive ENI mode) gives each pod an ENI of its own; C(vpc-route) (what ACK calls Flannel)
        gives each Node a block of O(pod_cidr), which the cloud controller routes in the VPC; C(vxlan) (community
        Flannel) carries the same blocks between nodes in VXLAN.
    type: str
    choices: [terway-eniip, terway-eni, vpc-route, vxlan]
    default: terway-eniip
  pod_cidr:
    description: Flannel's cluster CIDR (the controller-manager cuts it into one block per Node); required for
      C(vpc-route) and C(vxlan).
    type: str
  node_cidr_mask:
    description: Flannel's block size per Node (a prefix length, at most 28).
    type: int
    default: 24
"""
