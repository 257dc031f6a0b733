"""ENI quotas of ECS instance types, pure: how many ENIs an instance takes and how many private IPv4 addresses
each ENI holds, as Alibaba publishes them per instance family, and the pods Terway fits on a node from them.

Sources (checked while writing this table; a type whose figures could not be confirmed is left out, so the
node agent refuses to guess its quota):
- ACK, "Manage pod capacity on nodes" (https://www.alibabacloud.com/help/en/ack/ack-managed-and-ack-dedicated/
  user-guide/adjusting-the-number-of-node-pods): shared ENI mode fits (EniQuantity - 1) x EniPrivateIpAddressQuantity
  pods; "the general-purpose ecs.g7.4xlarge instance type supports 8 ENIs, and each ENI supports 30 private IP
  addresses".
- ECS, "General-purpose instance families" g7 table (https://www.alibabacloud.com/help/en/ecs/user-guide/
  general-purpose-instance-families): ecs.g7.large 3 ENIs x 6, ecs.g7.xlarge 4 x 15, ecs.g7.2xlarge 4 x 15
  (acklab/provider/catalog.py's eni_limits reads this table for ecs.get_instance_types); the stored copy of the g7
  page could not be re-read in this session, so they rest on that table and on g7.4xlarge agreeing with ACK's
  example.
Left out (not confirmed): ecs.g6.*, ecs.c6.*, ecs.c7.*, ecs.r7.*, ecs.n4.*, ecs.sn1ne.*.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EniQuota:
    instance_type: str
    enis: int  # ENIs per instance, the primary ENI included
    ips_per_eni: int  # private IPv4 addresses per ENI, its primary address included

    @property
    def pod_enis(self) -> int:
        """Terway's shared ENI mode leaves the primary ENI to the node: the others carry pods."""
        return max(self.enis - 1, 0)

    @property
    def pods_per_eni(self) -> int:
        """Pod addresses one ENI holds in the lab: its secondary IPs. (Real Terway also gives the ENI's primary
        address to a pod, so ACK counts ``ips_per_eni``; in the lab the primary address stays on the node's
        ``ethN``, where the kernel would answer for it itself.)"""
        return max(self.ips_per_eni - 1, 0)

    @property
    def max_pods(self) -> int:
        """Pods with an ENI address a node of this type runs in the lab: (ENIs - 1) x (IPs per ENI - 1)."""
        return self.pod_enis * self.pods_per_eni

    @property
    def ack_max_pods(self) -> int:
        """ACK's published figure for shared ENI mode: (ENIs - 1) x IPs per ENI."""
        return self.pod_enis * self.ips_per_eni

    def describe(self) -> str:
        return f"instance type {self.instance_type} allows {self.enis} ENIs x {self.ips_per_eni} IPs"


QUOTAS: dict[str, EniQuota] = {q.instance_type: q for q in (
    EniQuota("ecs.g7.large", 3, 6),
    EniQuota("ecs.g7.xlarge", 4, 15),
    EniQuota("ecs.g7.2xlarge", 4, 15),
    EniQuota("ecs.g7.4xlarge", 8, 30),
)}


def eni_quota(instance_type: str) -> EniQuota | None:
    """The type's quota, or None when the lab does not know it (then nothing is guessed)."""
    return QUOTAS.get(instance_type)
