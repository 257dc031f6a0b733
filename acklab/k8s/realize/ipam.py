"""Terway's ENI IP management on the lab's cloud: the node agent's ``EniBackend`` on the provider's realization
(``netns/realize/network_interface.py``), as Terway calls the ECS API (CreateNetworkInterface,
AttachNetworkInterface, AssignPrivateIpAddresses, UnassignPrivateIpAddresses; in exclusive ENI mode also
DetachNetworkInterface and DeleteNetworkInterface).

ENIs made here carry ``owner=terway``: they are in no Pulumi state (as on ACK), ``acklab status`` shows them,
and they go with their instance (``EcsInstance.delete``) and with the lab's namespaces (``acklab clean``).
The pure decisions (warm pool, quota) are ``acklab.k8s.model.ipam.TerwayEniPool`` and ``TerwayExclusivePool``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from acklab.k8s.model.ipam import NoFreeAddress, TerwayConfig, TerwayEni
from netns.kernel.namespace import Namespace
from netns.model import addressing
from netns.model.names import netns_name
from netns.realize import alias_addresses
from netns.realize.instance import TERWAY_OWNER
from netns.realize.network_interface import NetworkInterface
from netns.realize.vpc import VpcRouter, VSwitch


@dataclass(frozen=True)
class LiveEniBackend:
    lab: str
    instance_id: str
    node_name: str
    config: TerwayConfig
    zone: str = ""  # the node's zone: Terway makes its ENIs in pod vSwitches of that zone ("": any)

    @property
    def router(self) -> VpcRouter:
        return VpcRouter(self.lab, self.config.vpc_id)

    def _vswitches(self) -> list[VSwitch]:
        return [VSwitch(self.router, v) for v in self.config.pod_vswitch_ids]

    def enis(self) -> list[TerwayEni]:
        """The instance's attached Terway ENIs, in device order (read from the ports' facts)."""
        found = [(int(f["device"]), TerwayEni(eni_id, f"eth{f['device']}", alias_addresses(f), f["ip"],
                                              _gateway(vswitch)))
                 for vswitch in self._vswitches() for eni_id, f in vswitch.enis().items()
                 if f.get("owner") == TERWAY_OWNER and f.get("instance") == self.instance_id and f.get("device")]
        return [eni for _, eni in sorted(found)]

    def choose_vswitch(self) -> VSwitch:
        """Where a new ENI goes, as Terway picks: a pod vSwitch of the node's zone, the one with the most free
        addresses (ACK: pods of a node whose zone has no pod vSwitch fail to be created)."""
        here = [v for v in self._vswitches() if not self.zone or v.zone_id() == self.zone]
        if not here:
            raise NoFreeAddress(f"no pod vSwitch in zone {self.zone} (pod_vswitch_ids: "
                                f"{', '.join(self.config.pod_vswitch_ids)}): Terway makes a node's ENIs in its zone")
        return max(here, key=_free_addresses)

    def _new_id(self) -> str:
        """``eni-t`` + 6 hex digits of the instance + a counter: unique in the lab, and short enough that the
        port and its parked peer (``<id>p``) fit Linux's 15-character interface names."""
        stem = "eni-t" + hashlib.sha1(f"{self.lab}/{self.instance_id}".encode()).hexdigest()[:6]
        taken = {eni_id for vswitch in self._vswitches() for eni_id in vswitch.enis()}
        return next(f"{stem}{n:x}" for n in range(16 * 16) if f"{stem}{n:x}" not in taken)

    def create_eni(self) -> TerwayEni:
        eni = NetworkInterface(self.lab, self._new_id())
        resource = f"terway ENI of {self.node_name}"
        vswitch = self.choose_vswitch()
        state = eni.create(vswitch, resource, None, (), 0, self.config.security_groups,
                           f"{self.node_name}-terway", owner=TERWAY_OWNER)
        try:
            ifname = eni.attach(Namespace(netns_name(self.lab, self.instance_id)), self.instance_id, resource)
        except Exception:
            eni.delete()  # an ENI Terway could not attach is not left behind
            raise
        return TerwayEni(eni.eni_id, ifname, (), state.primary_ip, _gateway(vswitch))

    def assign(self, eni_id: str, count: int) -> tuple[str, ...]:
        return NetworkInterface(self.lab, eni_id).assign_ips(count, f"terway ENI {eni_id} of {self.node_name}")

    def unassign(self, eni_id: str, ips: Sequence[str]) -> None:
        NetworkInterface(self.lab, eni_id).unassign_ips(list(ips))

    def delete_eni(self, eni_id: str) -> None:
        """Detach (its device back from the node, if there) and delete: the port goes, the address with it."""
        eni = NetworkInterface(self.lab, eni_id)
        eni.detach(Namespace(netns_name(self.lab, self.instance_id)))
        eni.delete()


def _gateway(vswitch: VSwitch) -> str:
    cidr = vswitch.cidr()
    return str(addressing.gateway(cidr)) if cidr is not None else ""


def _free_addresses(vswitch: VSwitch) -> int:
    cidr = vswitch.cidr()
    if cidr is None:
        return 0
    return cidr.num_addresses - len(addressing.reserved(cidr)) - len(vswitch.used_addresses())
