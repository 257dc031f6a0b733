"""What ``new_nat_gateway`` of ``cs.ManagedKubernetes`` makes, as ACK does when it creates a cluster: an Enhanced NAT
gateway on the cluster's first vSwitch, an EIP bound to it, and a SNAT entry per vSwitch of the cluster (the node
vSwitches and Terway's pod vSwitches: pods take their addresses there), so that nodes and pods reach the lab's
internet from the EIP.

They are made and removed through the realizations ``vpc.NatGateway``, ``ecs.EipAddress`` + ``ecs.EipAssociation``
and ``vpc.SnatEntry`` use (``netns/realize/nat_gateway.py``, ``eip.py``): one way a NAT gateway exists. No Pulumi
resource holds them; the cluster's record (``ack_cluster.ClusterFacts``) names them, written before any is made, so
a failed create, a delete, or a delete retried after a crash finds whatever of them exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from netns.model.eip import new_eip_id
from netns.model.errors import ValidationError
from netns.model.names import new_id
from netns.realize.eip import ElasticIp
from netns.realize.nat_gateway import NatGateway, nat_gateways
from netns.realize.vpc import VSwitch

FIELD = "new_nat_gateway"


@dataclass(frozen=True)
class ClusterNat:
    ngw_id: str
    eip_id: str
    entries: tuple[tuple[str, str], ...]  # (SNAT entry id, source vSwitch id), one per vSwitch of the cluster

    def ids(self) -> set[str]:
        return {self.ngw_id, self.eip_id, *(entry for entry, _ in self.entries)}

    def to_dict(self) -> dict[str, Any]:
        return {"ngw_id": self.ngw_id, "eip_id": self.eip_id, "entries": [list(e) for e in self.entries]}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ClusterNat | None:
        if not data:
            return None
        return cls(data["ngw_id"], data["eip_id"], tuple((e[0], e[1]) for e in data.get("entries") or ()))


def snat_sources(vswitch_ids: Iterable[str], pod_vswitch_ids: Iterable[str]) -> tuple[str, ...]:
    """The vSwitches ACK gives SNAT entries with Terway: the node vSwitches, then the pod vSwitches; each once (a
    gateway takes one entry per source)."""
    return tuple(dict.fromkeys([*vswitch_ids, *pod_vswitch_ids]))


def plan(sources: Iterable[str]) -> ClusterNat:
    """Fresh ids for the gateway, its EIP and one entry per source vSwitch (chosen before anything is made)."""
    return ClusterNat(new_id("ngw"), new_eip_id(), tuple((new_id("snat"), source) for source in sources))


def check_no_gateway(resource: str, vpc_id: str, gateways: Iterable[tuple[str, str]]) -> None:
    """Refuse a VPC that already has a NAT gateway (``gateways``: (gateway id, its VPC)). Whether ACK then reuses the
    user's gateway is not documented clearly; adding the cluster's entries to a gateway the cluster did not make
    would also leave them behind, or take them away, with the wrong owner."""
    found = sorted(ngw for ngw, vpc in gateways if vpc == vpc_id)
    if found:
        raise ValidationError(resource, FIELD, f"VPC {vpc_id} already has NAT gateway {found[0]}: acklab makes the "
                                               "cluster's own gateway only in a VPC without one; set new_nat_gateway "
                                               "= false and give the cluster's vSwitches vpc.SnatEntry entries on it")


def gateways_of(lab: str) -> list[tuple[str, str]]:
    """The lab's NAT gateways with their VPCs."""
    found = []
    for gateway in nat_gateways(lab):
        state = gateway.read()
        if state is not None:
            found.append((gateway.ngw_id, state.vpc_id))
    return found


def make(lab: str, nat: ClusterNat, vswitch: VSwitch, resource: str) -> str:
    """The gateway on ``vswitch``, its EIP bound to it, then the entries (traffic reaches the gateway only once it can
    leave); returns the EIP. Each step leaves nothing of itself on failure; ``remove`` takes away the earlier ones."""
    gateway, eip = NatGateway(lab, nat.ngw_id), ElasticIp(lab, nat.eip_id)
    gateway.create(vswitch, resource)
    address = eip.create(None, resource)
    eip.associate(nat.ngw_id, resource)
    for entry_id, source in nat.entries:
        gateway.add_entry(entry_id, resource, address, source_vswitch_id=source)
    return address


def remove(lab: str, nat: ClusterNat, resource: str) -> None:
    """Whatever of ``make`` exists, in the reverse order: the entries, the EIP's binding, the EIP, the gateway."""
    gateway, eip = NatGateway(lab, nat.ngw_id), ElasticIp(lab, nat.eip_id)
    for entry_id, _ in nat.entries:
        gateway.remove_entry(entry_id)
    found = eip.read()
    if found is not None and found.instance_id == nat.ngw_id:
        eip.disassociate()
    eip.delete(resource)
    gateway.delete(resource)  # refused while an EIP someone else bound is on it, as Alibaba's
