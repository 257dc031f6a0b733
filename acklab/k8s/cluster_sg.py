"""The cluster's own security group, as ACK makes one when ``cs.ManagedKubernetes`` is given no
``security_group_id``: a basic group (``normal``), or an enterprise one with ``is_enterprise_security_group``, with
the rules ACK's "Configure and manage cluster security groups" recommends for it:

- inbound ICMP from 0.0.0.0/0;
- inbound everything from the group itself (its nodes, and Terway's pod ENIs, which join the node's groups);
- inbound everything from the pod CIDR with Flannel (routed pod blocks are not group members; Terway's pods are);
- outbound everything to 0.0.0.0/0 (an enterprise group denies outbound without it);
- and, the lab's one addition: inbound TCP and UDP on the NodePort range (30000-32767) from 0.0.0.0/0. On ACK a
  new cluster's LoadBalancer Services answer from the internet with this group on the nodes; the lab's layer-4 SLB
  keeps the client's address (as Alibaba's does) and the group filters it, so without the rule an internet client
  (and the SLB's health checks from 100.64.0.0/10) would be dropped at the NodePort.

The group and its rules are made through the realization ``ecs.SecurityGroup`` and ``ecs.SecurityGroupRule`` use
(``netns/realize/security_group.py``); node pools without ``security_group_ids`` put their nodes in it. Its id and
its rules' ids are chosen before it is made and kept in the cluster's record (``ack_cluster.ClusterFacts``), so a
failed create and the cluster's delete find it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netns.model.names import new_id
from netns.model.security_group import Group, Rule
from netns.realize import security_group as sg

NODE_PORTS = (30000, 32767)  # the API server's --service-node-port-range
EVERYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class ClusterGroup:
    sg_id: str
    group_type: str  # normal or enterprise
    rule_ids: tuple[str, ...]  # one per rule of ``rules``, in order

    def to_dict(self) -> dict[str, Any]:
        return {"sg_id": self.sg_id, "group_type": self.group_type, "rule_ids": list(self.rule_ids)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ClusterGroup | None:
        if not data:
            return None
        return cls(data["sg_id"], data["group_type"], tuple(data["rule_ids"]))


RULE_COUNT = 6  # ids chosen for every rule a group can have (the pod CIDR's is used with Flannel only)


def plan(enterprise: bool) -> ClusterGroup:
    """Fresh ids for the group and its rules (chosen before anything is made)."""
    return ClusterGroup(new_id("sg"), "enterprise" if enterprise else "normal",
                        tuple(new_id("sgr") for _ in range(RULE_COUNT)))


def rules(group: ClusterGroup, pod_cidr: str | None) -> tuple[Rule, ...]:
    """ACK's default rules of the cluster's group (see the module's text); ``pod_cidr``: Flannel's."""
    ids = iter(group.rule_ids)
    low, high = NODE_PORTS
    found = [Rule(next(ids), "ingress", "icmp", None, "accept", 1, EVERYWHERE),
             Rule(next(ids), "ingress", "all", None, "accept", 1, peer_group=group.sg_id),
             Rule(next(ids), "egress", "all", None, "accept", 1, EVERYWHERE),
             Rule(next(ids), "ingress", "tcp", (low, high), "accept", 1, EVERYWHERE),
             Rule(next(ids), "ingress", "udp", (low, high), "accept", 1, EVERYWHERE)]
    pod_rule = next(ids)
    if pod_cidr:
        found.append(Rule(pod_rule, "ingress", "all", None, "accept", 1, pod_cidr))
    return tuple(found)


def make(lab: str, group: ClusterGroup, vpc_id: str, pod_cidr: str | None) -> None:
    """The group (an enterprise one never opens traffic between members by itself: inner policy Drop) and its
    rules; a retried make finds what exists and adds the rest."""
    inner = "Drop" if group.group_type == "enterprise" else "Accept"
    sg.create_group(lab, Group(group.sg_id, vpc_id, group.group_type, inner))
    for rule in rules(group, pod_cidr):
        sg.add_rule(lab, group.sg_id, rule)


def remove(lab: str, group: ClusterGroup) -> None:
    """The group and its rules (whatever of them exists)."""
    sg.delete_group(lab, group.sg_id)
