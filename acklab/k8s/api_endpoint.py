"""The API server's SLB, as ACK makes one for every managed cluster: an intranet CLB in the cluster's vSwitch with a
TCP listener on 6443 whose backend is the control plane (the slb.Listener realization: layer 4 in the VPC
router's kernel, health-checked over TCP). Its address is the cluster's ``api_server_intranet`` and ``slb_intranet``,
its id ``slb_id``, and the API server's certificate names it, so clients in the VPC verify the server there.

With ``slb_internet_enabled`` (the SDK's default), ACK binds an EIP to that SLB so the API server is reachable from
the internet: here an EIP on the lab's internet (``ecs.EipAddress``'s realization, ``netns/realize/eip.py``) bound to
the SLB as ``ecs.EipAssociation`` with ``instance_type`` ``SlbInstance`` binds one: another frontend address of the
SLB's TCP 6443 listener in the VPC router. Its address is the cluster's ``slb_internet`` and ``api_server_internet``,
and the API server's certificate names it too.

The ids are chosen before anything is made and kept in the cluster's record, so a create interrupted midway is
finished or removed by id (``cs.ManagedKubernetes`` delete, ``acklab recover``), never duplicated.
"""

from __future__ import annotations

from typing import Any

from netns.model import slb as model
from netns.realize import slb
from netns.realize.eip import ElasticIp
from netns.realize.vpc import VSwitch

API_PORT = 6443


def listener_args() -> dict[str, Any]:
    """``slb.Listener`` arguments: TCP 6443 to the control plane's 6443, checked by TCP connect."""
    return {"protocol": "tcp", "frontend_port": API_PORT, "backend_port": API_PORT, "bandwidth": -1,
            "scheduler": "wrr", "health_check": "on", "health_check_type": "tcp"}


def make(lab: str, lb_id: str, cluster_id: str, vswitch: VSwitch, name: str, resource: str) -> str:
    """The SLB (made, or finished when a part exists), its backend and listener; returns its address."""
    instance = slb.SlbInstance(lab, lb_id)
    state = instance.read()
    if state is None:
        instance.create("intranet", vswitch, None, resource, name)
        state = instance.read()
        assert state is not None
    slb.put_backend_servers(lab, lb_id, (model.BackendRef(cluster_id),), resource)
    args = listener_args()
    slb.put_listener(lab, model.parse_listener(resource, lb_id, args), args, resource)
    return state.address


def make_internet(lab: str, eip_id: str, lb_id: str, resource: str) -> str:
    """The SLB's EIP (allocated, or found from an earlier attempt) bound to it; returns the EIP's address."""
    eip = ElasticIp(lab, eip_id)
    found = eip.read()
    if found is None:
        eip.create(None, resource)
    return eip.associate(lb_id, resource).address


def address(lab: str, lb_id: str) -> str | None:
    state = slb.SlbInstance(lab, lb_id).read() if lb_id else None
    return state.address if state is not None else None


def internet_address(lab: str, eip_id: str, lb_id: str) -> str | None:
    """The EIP's address while it is bound to the SLB."""
    found = ElasticIp(lab, eip_id).read() if eip_id else None
    return found.address if found is not None and found.instance_id == lb_id else None


def remove(lab: str, lb_id: str, eip_id: str = "") -> None:
    """The EIP (unbound, released), then the SLB's listener, backends and namespace (whatever of them exists)."""
    if eip_id:
        eip = ElasticIp(lab, eip_id)
        if eip.read() is not None:
            eip.disassociate()
            eip.delete(f"the API server's EIP {eip_id}")
    if lb_id:
        slb.delete_slb(lab, lb_id)
