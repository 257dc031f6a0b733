"""Removing what a lab left behind: its namespaces (and the processes in them) and its state files."""

from __future__ import annotations

import os
import shutil

from netns.kernel import netns_etc
from netns.kernel.link import links_of, remove_link
from netns.kernel.namespace import list_namespaces
from netns.model.names import PREFIX, is_any_cloud_id, is_cloud_id, lab_of, mark
from netns.realize import LOCK_DIR, control_plane, lab_lock, slb, slb_l4, source_check, state_dir
from netns.realize import security_group as sg
from netns.realize.eip import ElasticIp
from netns.realize.eni import EniPort
from netns.realize.nat_gateway import nat_gateways
from netns.realize.vpc import VpcRouter, routers


def clean_lab(lab: str) -> list[str]:
    """Remove every namespace named ``acklab-<lab>-<cloud id>`` and ``/run/acklab/<lab>``; return what went."""
    removed = []
    # the cloud controller first, so it makes no SLB while the lab is taken apart (imported here: the
    # Kubernetes layer sits above)
    from acklab.k8s import cloud_controller

    removed += [f"cloud controller pid {pid}" for pid in cloud_controller.end_leftovers(lab)]
    from acklab.k8s import ingress_controller  # likewise: it would start nginx in pods being taken apart

    removed += [f"ingress controller pid {pid}" for pid in ingress_controller.end_leftovers(lab)]
    from acklab.k8s.realize import ingress  # nginx of controller pods whose namespace vanished

    removed += [f"nginx pid {pid}" for pid in ingress.end_leftover_nginx(lab)]
    for namespace in list_namespaces(mark(lab)):
        if lab_of(namespace.name) == lab:
            namespace.remove()
            removed.append(namespace.name)
    # namespaces' own /etc files (a pod's resolv.conf): outside the state folder, and ip netns delete leaves them
    removed += [f"/etc/netns/{name}" for name in netns_etc.sweep(lambda name: lab_of(name) == lab)]
    removed += [f"haproxy pid {pid}" for pid in slb.end_leftover_haproxy(lab)]  # SLBs whose namespace vanished
    removed += [f"SLB health checker pid {pid}" for pid in slb_l4.end_leftover_checkers(lab)]  # likewise
    # the control plane's processes whose namespace vanished, and its entries in kubeconfigs it was merged into
    removed += control_plane.clean(lab)
    # upstream kube-proxy of nodes whose namespace vanished (imported here: the Kubernetes layer sits above)
    from acklab.k8s.realize import kube_proxy

    removed += [f"kube-proxy pid {pid}" for pid in kube_proxy.end_leftovers(lab)]
    from acklab.k8s import network_policy_agent  # likewise: NetworkPolicy agents of vanished nodes

    removed += [f"NetworkPolicy agent pid {pid}" for pid in network_policy_agent.end_leftovers(lab)]
    state = state_dir(lab)
    if state.is_dir():
        shutil.rmtree(state)
        removed.append(str(state))
    return removed


def labs_present() -> set[str]:
    """Every lab with a namespace or state files on this machine."""
    labs = {lab_of(ns.name) for ns in list_namespaces(PREFIX)} - {None}
    if os.path.isdir(LOCK_DIR):
        labs |= {name for name in os.listdir(LOCK_DIR) if os.path.isdir(os.path.join(LOCK_DIR, name))}
    return labs  # type: ignore[return-value]


def prune_lab(lab: str, keep: set[str]) -> list[str]:
    """Remove every object of ``lab`` whose cloud id is not in ``keep``; return what went.

    ``keep`` holds the ids a Pulumi checkpoint knows. After a crash of ``pulumi up`` the kernel can hold
    objects whose create was interrupted, so their id never reached the checkpoint: a half-made namespace,
    bridge, ENI port (with its source-check and set entries), security group, rule or state file. Removing
    them lets the next ``pulumi up`` create them afresh, with no duplicate and no leak (ids are random per
    create, so a retried create never meets its own leftovers). Only for a lab no Pulumi operation is running
    on: an object being created is not yet known.
    """
    removed: list[str] = []
    for instance in slb.slbs(lab):  # an SLB first: its delete stops HAProxy and unplugs it from the routers
        if instance.lb_id not in keep:
            instance.delete()
            removed.append(instance.namespace.name)
    removed += _prune_nat_gateways(lab, keep)
    for router in routers(lab):  # routers next: an ENI port's facts (its addresses) are on the port
        if router.vpc_id in keep:
            removed += _prune_router(router, keep)
        else:
            router.delete()
            removed.append(router.namespace.name)
    for namespace in list_namespaces(mark(lab)):
        cloud_id = namespace.name[len(mark(lab)):]
        # Only cloud objects are Pulumi's: a pod's namespace (``pod-<hash>``) belongs to its node.
        if is_any_cloud_id(cloud_id) and not cloud_id.startswith("vpc-") and cloud_id not in keep:
            namespace.remove()  # an ECS namespace and the processes in it
            removed.append(namespace.name)
    removed += _prune_security_groups(lab, keep)
    removed += _prune_state_files(lab, keep)
    for router in routers(lab):
        sg.apply(router)  # the sets and the ruleset again match the ENIs and groups that are left
    return removed


def _prune_nat_gateways(lab: str, keep: set[str]) -> list[str]:
    """SNAT entries the checkpoint does not know; gateways it does not know, after moving their EIPs' legs back to the
    internet (deleting the namespace with them in it would destroy the EIPs' ports)."""
    removed = []
    for gateway in nat_gateways(lab):
        going = gateway.ngw_id not in keep
        for rule, _ in gateway.entries():
            if going or rule.entry_id not in keep:
                gateway.remove_entry(rule.entry_id)
                removed.append(rule.entry_id)
        if going:
            for eip_id in gateway.eips().values():
                ElasticIp(lab, eip_id).disassociate()
            gateway.delete(gateway.namespace.name)
            removed.append(gateway.namespace.name)
    return removed


def _prune_router(router: VpcRouter, keep: set[str]) -> list[str]:
    """ENI ports and vSwitch bridges in a known router that the checkpoint does not know."""
    removed = []
    with lab_lock(router.lab):
        links = links_of(router.namespace)
        # ENI ports are named by their ids (a detached secondary ENI's parked end, ``<id>p``, goes with its pair).
        ports = [n for n, kind in links.items() if kind == "veth" and is_cloud_id(n, "eni") and n not in keep]
        for name in sorted(ports):
            facts = router.port_facts(name)
            if facts and "ip" in facts:
                EniPort(router, name).unbind(facts)  # its source-check entries and group-set entries
            remove_link(router.namespace, name)
            removed.append(f"{router.namespace.name}/{name}")
        present = set(links_of(router.namespace))
        pending = router.pending_unbind
        for port, addresses in source_check.bound(router.namespace, pending).items():
            if port not in present:  # bound to a port that is gone (its namespace went first)
                source_check.unbind(router.namespace, port, addresses, pending)
                removed.append(f"{router.namespace.name}/{port} source check")
        if pending is not None:
            source_check.flush(router.namespace, pending)  # and the removals deferred by earlier deletes
        for name in sorted(n for n, kind in links.items() if kind == "veth" and n not in keep
                           and (is_cloud_id(n, "lb") or is_cloud_id(n, "ngw"))):
            remove_link(router.namespace, name)  # the router end of an SLB or NAT gateway whose create was interrupted
            removed.append(f"{router.namespace.name}/{name}")
        for name in sorted(n for n, kind in links.items() if kind == "bridge" and n.startswith("vsw-")
                           and n not in keep):
            remove_link(router.namespace, name)
            removed.append(f"{router.namespace.name}/{name}")
    return removed


def _prune_security_groups(lab: str, keep: set[str]) -> list[str]:
    removed = []
    folder = state_dir(lab) / "sg"
    for path in sorted(folder.glob("sg-*.json")) if folder.is_dir() else ():
        group = sg.load_group(lab, path.stem)
        if group is None:
            continue
        if group.sg_id not in keep:
            sg.delete_group(lab, group.sg_id)
            removed.append(group.sg_id)
            continue
        for rule in group.rules:
            if rule.rule_id not in keep:
                sg.remove_rule(lab, group.sg_id, rule.rule_id)
                removed.append(rule.rule_id)
    return removed


def _prune_state_files(lab: str, keep: set[str]) -> list[str]:
    """State named after an object that is gone: ``<vpc>.<inode>.rules``, ``<instance>.user-data…``, and the
    SLBs' ``slb/<lb>/``, ``slb/listeners/<lb>_<protocol>_<port>.json``, ``slb/groups/<rsp>.json``, …, and the
    ``alicloud`` plugin's records ``provider/<id>.json``"""
    folder = state_dir(lab)
    removed = []
    paths = sorted(folder.iterdir()) if folder.is_dir() else []
    if (folder / "slb").is_dir():
        for sub in sorted((folder / "slb").iterdir()):
            if sub.is_dir() and not is_any_cloud_id(sub.name):  # listeners/, groups/, backends/, acls/, certs/
                paths += sorted(sub.iterdir())
            else:
                paths.append(sub)  # an SLB's runtime folder slb/<lb>/
    if (folder / "provider").is_dir():  # the alicloud plugin's records, provider/<id>.json
        paths += sorted((folder / "provider").iterdir())
    for path in paths:
        cloud_id = path.name.split(".", 1)[0].split("_", 1)[0].split(":", 1)[0]  # a listener's: <lb>:<proto>:<port>
        if not is_any_cloud_id(cloud_id) or cloud_id in keep:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(str(path))
    return removed
