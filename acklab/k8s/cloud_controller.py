"""acklab's cloud controller manager on the API: Services of type LoadBalancer → SLBs, as ACK's CCM does.

One process per lab, in the control plane's namespace (removing that namespace ends it), the client
``system:cloud-controller-manager`` (a ClusterRole of its own, applied by :func:`ensure`). It watches Services,
Nodes and EndpointSlices (these for ENI backends: ``service.beta.kubernetes.io/backend-type: eni``; list, then watch
from the list's resourceVersion; a 410 Gone lists again), puts Service keys on a work
queue and reconciles each one level-triggered: the wanted SLB (``load_balancer.load_balancer_spec`` + the Nodes' ECS
ids) against what the realizations hold (``netns/realize/slb.py``), then ``load_balancer.decide``'s steps through those
realizations (each takes the lab lock itself). The Service gets ``status.loadBalancer.ingress[].ip``.

No SLB leaks: the finalizer ``service.k8s.alibaba/resources`` (ACK's) goes on before an SLB is made and comes off
after it is deleted; and each Service's SLB is recorded (``/run/acklab/<lab>/k8s/ccm/slbs/<uid>.json``: the
Service's uid, key and the SLB's id) *before* it is created, with an id chosen up front, so a controller killed
mid-create finds and finishes (or deletes) the same SLB after a restart, never a second one. Records whose
Service is gone are deleted at each full resync.

Errors become Events on the Service (a bad annotation: ``SyncLoadBalancerFailed`` and no SLB; a failed step:
the same, retried with backoff).

Routes (``--configure-cloud-routes``, set for Flannel's VPC-route mode, as ACK's CCM runs its route controller): a
VPC route entry per Node's ``spec.podCIDR`` with the Node's ECS as next hop (``netns/realize/route_entry.py``),
recorded (``.../ccm/routes/<node>.json``) before it is made and deleted when its Node goes; the Node then gets
``NetworkUnavailable=False`` (``RouteCreated``), as upstream's route controller sets it.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from acklab.k8s import informer
from acklab.k8s.cluster_controller import ClusterController
from acklab.k8s.informer import WorkQueue
from acklab.k8s.model import load_balancer
from acklab.k8s.model.kubelet import rfc3339
from acklab.k8s.realize.pod_agent import k8s_dir
from netns.kernel.files import read_json, write_atomic, write_if_changed, write_json
from netns.model import slb as model
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import new_id
from netns.realize import slb
from netns.realize.eni import find_primary_port
from netns.realize.route_entry import RouteEntry
from netns.realize.vpc import VpcRouter, VSwitch, find_vswitch, routers

USER = "system:cloud-controller-manager"
FINALIZER = "service.k8s.alibaba/resources"
COMPONENT = "acklab-cloud-controller"
RESYNC = 30.0  # a full list of Services (also: records of Services gone while the controller was down)
ROUTES = "@routes"  # the route controller's work-queue key (Service keys are namespace/name)

RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "acklab:cloud-controller-manager"}}
rules:
  - {{apiGroups: [""], resources: [services], verbs: [get, list, watch, patch, update]}}
  - {{apiGroups: [""], resources: [services/status], verbs: [get, patch, update]}}
  - {{apiGroups: [""], resources: [nodes], verbs: [get, list, watch]}}
  - {{apiGroups: [""], resources: [nodes/status], verbs: [patch]}}
  - {{apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [get, list, watch]}}
  - {{apiGroups: ["", events.k8s.io], resources: [events], verbs: [create, patch, update]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "acklab:cloud-controller-manager"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "acklab:cloud-controller-manager"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{USER}"}}]
"""


T = TypeVar("T")


def ccm_dir(lab: str) -> Path:
    return k8s_dir(lab) / "ccm"


# --- records: Service uid → SLB id, written before the SLB is created -----------------------------------------

@dataclass(frozen=True)
class Record:
    uid: str
    namespace: str
    name: str
    lb_id: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _records_dir(lab: str) -> Path:
    return ccm_dir(lab) / "slbs"


def _load(folder: Path, kind: type[T]) -> list[T]:
    """The records in ``folder`` (``*.json``, one object each); a torn or foreign file is skipped."""
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        with contextlib.suppress(OSError, ValueError, TypeError):
            found.append(kind(**json.loads(path.read_text())))
    return found


def load_records(lab: str) -> dict[str, Record]:
    return {record.uid: record for record in _load(_records_dir(lab), Record)}


def save_record(lab: str, record: Record) -> None:
    write_json(_records_dir(lab) / f"{record.uid}.json", asdict(record))


def drop_record(lab: str, uid: str) -> None:
    (_records_dir(lab) / f"{uid}.json").unlink(missing_ok=True)


def settings_path(lab: str) -> Path:
    """What the controller runs with (``configure_cloud_routes``), read when it starts."""
    return ccm_dir(lab) / "settings.json"


# --- routes: Node name → its block and instance, recorded before the route is made ----------------------------

@dataclass(frozen=True)
class RouteRecord:
    node: str
    cidr: str
    instance_id: str
    vpc_id: str


def _routes_dir(lab: str) -> Path:
    return ccm_dir(lab) / "routes"


def load_routes(lab: str) -> dict[str, RouteRecord]:
    return {record.node: record for record in _load(_routes_dir(lab), RouteRecord)}


def router_of(lab: str, instance_id: str) -> VpcRouter | None:
    """The VPC an instance's primary ENI is plugged into."""
    return next((r for r in routers(lab) if find_primary_port(r, instance_id) is not None), None)


def route_entry(lab: str, record: RouteRecord) -> RouteEntry:
    return RouteEntry(VpcRouter(lab, record.vpc_id), ipaddress.IPv4Network(record.cidr), record.instance_id)


def make_route(lab: str, node: str, cidr: str, router: VpcRouter, instance_id: str) -> RouteRecord:
    record = RouteRecord(node, cidr, instance_id, router.vpc_id)
    path = _routes_dir(lab) / f"{node}.json"
    write_json(path, asdict(record))  # first: a restart finds what it was making
    try:
        route_entry(lab, record).create(f"route of Node {node}")
    except (ValidationError, NotFoundError):  # refused (e.g. the block is routed elsewhere): nothing was made
        path.unlink(missing_ok=True)
        raise
    return record


def delete_route(lab: str, record: RouteRecord) -> None:
    route_entry(lab, record).delete()
    (_routes_dir(lab) / f"{record.node}.json").unlink(missing_ok=True)


# --- the lab's side: ECS by address, what exists of an SLB, the steps -------------------------------------------

def ecs_by_ip(lab: str) -> dict[str, str]:
    """Primary address → ECS instance id, from the routers' port aliases (a Node without providerID)."""
    found = {}
    for router in routers(lab):
        for vswitch in router.vswitches():
            for facts in vswitch.enis().values():
                if facts.get("device") == "0" and "instance" in facts and "ip" in facts:
                    found[facts["ip"]] = facts["instance"]
    return found


def eni_of_address(lab: str) -> dict[str, str]:
    """Address → the ENI holding it (its primary or a secondary IP): where an ENI backend's ``ServerIp`` is."""
    return {address: eni_id for eni_id, held in slb.eni_addresses(lab).items() for address in held}


def vswitch_of(lab: str, instance: str) -> VSwitch | None:
    """The vSwitch of an ECS's primary ENI (an intranet SLB takes its address on the nodes' vSwitch)."""
    for router in routers(lab):
        for vswitch in router.vswitches():
            if any(f.get("instance") == instance and f.get("device") == "0" for f in vswitch.enis().values()):
                return vswitch
    return None


def read_actual(lab: str, lb_id: str) -> load_balancer.ActualLb | None:
    state = slb.SlbInstance(lab, lb_id).read()
    if state is None:
        return None
    listeners = {(lst.protocol, lst.frontend_port): args for lst, args in slb.load_listeners(lab, lb_id)}
    servers = slb.backend_servers(lab, lb_id)
    acl = slb.acl(lab, load_balancer.acl_of(lb_id))
    return load_balancer.ActualLb(lb_id, state.name, state.address, state.address_type, state.vswitch_id, listeners,
                        None if servers is None else tuple(sorted(
                            load_balancer.eni_server(s["server_id"], s["ip"]) if s.get("ip") else s["server_id"]
                            for s in servers)),
                        None if acl is None else tuple(sorted(acl["entries"])))


def delete_slb(lab: str, lb_id: str) -> None:
    """The SLB with its listeners (so its ACL is unused), then its ACL."""
    slb.delete_slb(lab, lb_id)
    if slb.acl(lab, load_balancer.acl_of(lb_id)) is not None:
        slb.delete_acl(lab, load_balancer.acl_of(lb_id))


def apply_step(lab: str, lb_id: str, lb: load_balancer.LbSpec, step: load_balancer.Step,
               vswitch: VSwitch | None) -> None:
    resource = f"Service {lb.key}"
    if step.op == "delete":
        delete_slb(lab, lb_id)
    elif step.op == "create":
        slb.SlbInstance(lab, lb_id).create(lb.address_type, vswitch, None, resource, lb.lb_name)
    elif step.op == "rename":
        slb.SlbInstance(lab, lb_id).rename(step.value)
    elif step.op == "acl":
        acl_id = load_balancer.acl_of(lb_id)
        current = slb.acl(lab, acl_id)
        if current is None:
            slb.create_acl(lab, acl_id, f"{lb.lb_name}-source-ranges")
            current = {"entries": {}}
        for entry in step.value:
            if entry not in current["entries"]:
                slb.set_acl_entry(lab, acl_id, entry, "loadBalancerSourceRanges", resource)
        for entry in set(current["entries"]) - set(step.value):
            slb.set_acl_entry(lab, acl_id, entry, None, resource)
    elif step.op == "drop_acl":
        slb.delete_acl(lab, load_balancer.acl_of(lb_id))
    elif step.op == "backends":
        refs = []
        for server in step.value:
            server_id, ip = load_balancer.parse_server(server)
            refs.append(model.BackendRef(server_id, type="eni" if ip else "ecs", ip=ip))
        slb.put_backend_servers(lab, lb_id, tuple(refs), resource)
    elif step.op == "delete_listener":
        slb.delete_listener(lab, lb_id, *step.value)
    elif step.op == "put_listener":
        args = dict(step.value)
        # the SLB's id was not known when decided
        if args.get("acl_id") == load_balancer.acl_of(load_balancer.PLACEHOLDER_LB):
            args["acl_id"] = load_balancer.acl_of(lb_id)
        slb.put_listener(lab, model.parse_listener(resource, lb_id, args), args, resource)
    else:
        raise LabError(f"unknown step {step.op}")


# --- the controller -------------------------------------------------------------------------------------------

def _node_facts(node: dict[str, Any]) -> tuple[Any, ...]:
    """What of a Node decides backends (heartbeats and conditions do not)."""
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    return (json.dumps(meta.get("labels") or {}, sort_keys=True), spec.get("providerID"),
            json.dumps(status.get("addresses") or [], sort_keys=True))


def _route_facts(node: dict[str, Any]) -> tuple[Any, ...]:
    """What of a Node decides its route: its block and its instance."""
    spec = node.get("spec") or {}
    return spec.get("podCIDR"), spec.get("providerID"), json.dumps((node.get("status") or {}).get("addresses") or [])


def _route_condition_set(node: dict[str, Any]) -> bool:
    return any((c.get("type"), c.get("status"), c.get("reason")) == ("NetworkUnavailable", "False", "RouteCreated")
               for c in (node.get("status") or {}).get("conditions") or [])


class Controller:
    def __init__(self, lab: str, kubeconfig: str) -> None:
        from kubernetes import client, config

        self.lab = lab
        self.api = client.CoreV1Api(config.new_client_from_config(kubeconfig))
        self.queue = WorkQueue()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.lb_keys: set[str] = set()  # Services that are (or were) type LoadBalancer
        self.failures: dict[str, int] = {}
        self.refused: dict[str, tuple[str, str]] = {}  # key → (resourceVersion, reason) already told in an Event
        self.stopping = threading.Event()
        self.slices: dict[str, dict[str, dict[str, Any]]] = {}  # Service key → its EndpointSlices (ENI backends)
        self.synced = {"services": threading.Event(), "nodes": threading.Event(), "endpointslices": threading.Event()}
        self.cloud_routes = bool((read_json(settings_path(lab)) or {}).get("configure_cloud_routes"))

    # -- API helpers (raw dicts: the pure code reads the API's camelCase) --

    def _raw(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return json.loads(call(*args, _preload_content=False, **kwargs).data)

    def _get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._raw(self.api.read_namespaced_service, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _patch(self, svc: dict[str, Any], body: dict[str, Any], status: bool = False) -> None:
        meta = svc["metadata"]
        call = self.api.patch_namespaced_service_status if status else self.api.patch_namespaced_service
        # strategic merge: finalizers merge as a set, so another controller's finalizer is kept
        call(meta["name"], meta["namespace"], body, _content_type="application/strategic-merge-patch+json")

    def event(self, svc: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = svc["metadata"]
        informer.record(self.api, informer.event(
            {"apiVersion": "v1", "kind": "Service", "namespace": meta["namespace"], "name": meta["name"],
             "uid": meta.get("uid")}, kind, reason, message, COMPONENT))

    # -- watches --

    def _list_and_watch(self, what: str, list_call: Callable[..., Any], on_list: Callable[[list[dict]], None],
                        on_event: Callable[[str, dict[str, Any]], None]) -> None:
        informer.list_and_watch(what, list_call, (), on_list, on_event, self.stopping, self.synced[what],
                                lambda why: print(f"{COMPONENT}: {why}", file=sys.stderr, flush=True))

    def _on_services(self, items: list[dict[str, Any]]) -> None:
        for svc in items:
            self._on_service("ADDED", svc)
        live = {svc["metadata"].get("uid") for svc in items}
        for record in load_records(self.lab).values():
            if record.uid not in live:  # its Service went while nobody watched
                self.queue.add(record.key)

    def _on_service(self, kind: str, svc: dict[str, Any]) -> None:
        meta = svc["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        if (svc.get("spec") or {}).get("type") == "LoadBalancer" or FINALIZER in (meta.get("finalizers") or ()) \
                or key in self.lb_keys:
            self.lb_keys.add(key)
            self.queue.add(key)

    def _on_nodes(self, items: list[dict[str, Any]]) -> None:
        self.nodes = {node["metadata"]["name"]: node for node in items}
        self._all_services()
        if self.cloud_routes:
            self.queue.add(ROUTES)

    def _on_node(self, kind: str, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        old = self.nodes.get(name)
        if kind == "DELETED":
            self.nodes.pop(name, None)
        else:
            self.nodes[name] = node
        if kind == "DELETED" or old is None or _node_facts(old) != _node_facts(node):
            self._all_services()
        if self.cloud_routes and (kind == "DELETED" or old is None or _route_facts(old) != _route_facts(node)):
            self.queue.add(ROUTES)

    def _on_slices(self, items: list[dict[str, Any]]) -> None:
        slices: dict[str, dict[str, dict[str, Any]]] = {}
        for piece in items:
            key = _slice_owner(piece)
            if key is not None:
                slices.setdefault(key, {})[piece["metadata"]["name"]] = piece
        self.slices = slices
        self._all_services()

    def _on_slice(self, kind: str, piece: dict[str, Any]) -> None:
        key = _slice_owner(piece)
        if key is None:
            return
        own = dict(self.slices.get(key) or {})  # a copy: the worker reads the dict it replaces
        if kind == "DELETED":
            own.pop(piece["metadata"]["name"], None)
        else:
            own[piece["metadata"]["name"]] = piece
        self.slices[key] = own
        if key in self.lb_keys:
            self.queue.add(key)

    def _all_services(self) -> None:
        for key in list(self.lb_keys):
            self.queue.add(key)

    # -- reconcile --

    def reconcile(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        svc = self._get_service(namespace, name)
        uid = svc["metadata"]["uid"] if svc else None
        records = load_records(self.lab)  # read once: the loop drops only records of other uids
        for record in records.values():
            if record.key == key and record.uid != uid:  # the Service is gone (or made anew under the same name)
                delete_slb(self.lab, record.lb_id)
                drop_record(self.lab, record.uid)
        if svc is None:
            self.lb_keys.discard(key)
            return
        meta, spec = svc["metadata"], svc.get("spec") or {}
        record = records.get(uid)
        if meta.get("deletionTimestamp") or spec.get("type") != "LoadBalancer":
            self._release(svc, record)
            return
        try:
            lb = load_balancer.load_balancer_spec(svc)
        except ValidationError as exc:
            told = (meta.get("resourceVersion", ""), str(exc))
            if self.refused.get(key) != told:  # once per version of the Service, not at every resync
                self.refused[key] = told
                self.event(svc, "Warning", "SyncLoadBalancerFailed", str(exc))
            return  # nothing to retry until the Service changes
        self.refused.pop(key, None)
        assert lb is not None
        if FINALIZER not in (meta.get("finalizers") or ()):
            self._patch(svc, {"metadata": {"finalizers": [FINALIZER]}})
        if record is None:
            record = Record(uid, namespace, name, new_id("lb"))
            save_record(self.lab, record)  # before the SLB exists: a restart finds this id, never makes another
        self._ensure(svc, lb, record)

    def _ensure(self, svc: dict[str, Any], lb: load_balancer.LbSpec, record: Record) -> None:
        # a copy: the Nodes' watch thread changes the dict meanwhile
        nodes = load_balancer.backend_servers(lb, list(self.nodes.values()), ecs_by_ip(self.lab))
        servers, ports = nodes, None
        if lb.backend_type == "eni":
            slices = (self.slices.get(lb.key) or {}).values()
            servers, ports = load_balancer.eni_backends(lb, slices, eni_of_address(self.lab))
        vswitch = None
        if lb.address_type == "intranet":
            if lb.vswitch_id:
                vswitch = find_vswitch(self.lab, lb.vswitch_id)
            elif nodes:
                vswitch = vswitch_of(self.lab, nodes[0])
            if vswitch is None:
                raise NotFoundError(f"Service {lb.key}: an intranet SLB needs a vSwitch: no node has an ECS yet "
                                    f"and {load_balancer.VSWITCH} is not set")
        actual = read_actual(self.lab, record.lb_id)
        steps = load_balancer.decide(lb, servers, actual, vswitch.vswitch_id if vswitch else None, ports)
        for step in steps:
            apply_step(self.lab, record.lb_id, lb, step, vswitch)
        state = slb.SlbInstance(self.lab, record.lb_id).read()
        assert state is not None
        ingress = [{"ip": state.address}]
        if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") != ingress:
            self._patch(svc, {"status": {"loadBalancer": {"ingress": ingress}}}, status=True)
        if steps:
            self.event(svc, "Normal", "EnsuredLoadBalancer",
                       f"SLB {record.lb_id} at {state.address}: {', '.join(s.op for s in steps)}")

    def _release(self, svc: dict[str, Any], record: Record | None) -> None:
        """No SLB wanted (deleted, or no longer type LoadBalancer): delete it, then drop the finalizer."""
        meta = svc["metadata"]
        if record is not None:
            delete_slb(self.lab, record.lb_id)
            drop_record(self.lab, record.uid)
            self.event(svc, "Normal", "DeletedLoadBalancer", f"SLB {record.lb_id} deleted")
        if FINALIZER in (meta.get("finalizers") or ()):
            self._patch(svc, {"metadata": {"$deleteFromPrimitiveList/finalizers": [FINALIZER]}})
        if not meta.get("deletionTimestamp") and (svc.get("status") or {}).get("loadBalancer"):
            self._patch(svc, {"status": {"loadBalancer": {"ingress": None}}}, status=True)

    # -- routes --

    def reconcile_routes(self) -> None:
        """The VPC routes the Nodes' blocks need, against those this controller made (its records)."""
        nodes = list(self.nodes.values())  # a copy: the Nodes' watch thread changes the dict meanwhile
        # a Node whose instance is gone (deleted behind the cluster's back) has no route: its old one goes
        every = load_balancer.wanted_routes(nodes, ecs_by_ip(self.lab))
        vpcs = {instance: router_of(self.lab, instance) for _, instance in every.values()}
        wanted = {n: route for n, route in every.items() if vpcs[route[1]] is not None}
        made = load_routes(self.lab)
        delete, create = load_balancer.route_changes(wanted, {n: (r.cidr, r.instance_id) for n, r in made.items()},
                                           lambda n: route_entry(self.lab, made[n]).exists())
        failed: list[str] = []  # one Node's failure does not keep the others from their routes
        for name in delete:
            try:
                delete_route(self.lab, made[name])
                print(f"{COMPONENT}: route {made[name].cidr} of Node {name} deleted", file=sys.stderr, flush=True)
            except Exception as exc:
                failed.append(f"Node {name}: {exc}")
        for name in create:
            cidr, instance = wanted[name]
            try:
                record = make_route(self.lab, name, cidr, vpcs[instance], instance)  # type: ignore[arg-type]
                print(f"{COMPONENT}: route {record.cidr} → {record.instance_id} ({name}) in {record.vpc_id}",
                      file=sys.stderr, flush=True)
            except Exception as exc:
                failed.append(f"Node {name}: {exc}")
        for node in nodes:
            name = node["metadata"]["name"]
            if name in wanted and not _route_condition_set(node) and not any(f.startswith(f"Node {name}:")
                                                                              for f in failed):
                self._set_route_condition(name)
        if failed:  # retried with backoff
            raise LabError("routes: " + "; ".join(failed))

    def _set_route_condition(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        now = rfc3339(time.time())
        condition = {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated",
                     "message": "RouteController created a route", "lastTransitionTime": now,
                     "lastHeartbeatTime": now}
        with contextlib.suppress(ApiException):  # a Node deleted meanwhile
            self.api.patch_node_status(name, {"status": {"conditions": [condition]}},
                                       _content_type="application/strategic-merge-patch+json")

    # -- run --

    def work(self) -> None:
        while not self.stopping.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                if key == ROUTES:
                    self.reconcile_routes()
                else:
                    self.reconcile(key)
                self.failures.pop(key, None)
            except Exception as exc:  # a failed step: tell the Service's owner, retry later
                count = self.failures[key] = self.failures.get(key, 0) + 1
                print(f"{COMPONENT}: {key}: {exc!r}", file=sys.stderr, flush=True)
                with contextlib.suppress(Exception):
                    svc = self._get_service(*key.split("/", 1)) if key != ROUTES else None
                    if svc is not None:
                        self.event(svc, "Warning", "SyncLoadBalancerFailed", str(exc))
                self.queue.add(key, informer.backoff(count))
            finally:
                self.queue.done(key)

    def run(self, ready_file: Path | None = None) -> None:
        from kubernetes import client

        discovery = client.DiscoveryV1Api(self.api.api_client)
        watches = [("services", self.api.list_service_for_all_namespaces, self._on_services, self._on_service),
                   ("nodes", self.api.list_node, self._on_nodes, self._on_node),
                   ("endpointslices", discovery.list_endpoint_slice_for_all_namespaces, self._on_slices,
                    self._on_slice)]
        for what, call, on_list, on_event in watches:
            threading.Thread(target=self._list_and_watch, args=(what, call, on_list, on_event), daemon=True,
                             name=f"watch {what}").start()
        threading.Thread(target=self._resync, daemon=True, name="resync").start()
        informer.wait_synced(self.synced.values(), self.stopping)  # a partial Node list would drop backends
        if ready_file is not None:
            write_atomic(ready_file, f"{os.getpid()}\n")
        self.work()

    def _resync(self) -> None:
        while not informer.pause(self.stopping, RESYNC):
            if self.cloud_routes:  # a route removed behind the controller's back is made again
                self.queue.add(ROUTES)
            with contextlib.suppress(Exception):
                self._on_services(self._raw(self.api.list_service_for_all_namespaces).get("items") or [])


def _slice_owner(piece: dict[str, Any]) -> str | None:
    """The key of the Service an EndpointSlice is for (its ``kubernetes.io/service-name`` label)."""
    meta = piece.get("metadata") or {}
    name = (meta.get("labels") or {}).get("kubernetes.io/service-name")
    return f"{meta.get('namespace')}/{name}" if name else None


# --- the process: one per lab, in the control plane's namespace ------------------------------------------------

@dataclass(frozen=True)
class CloudController(ClusterController):
    module: ClassVar[str] = "acklab.k8s.cloud_controller"
    title: ClassVar[str] = "the cloud controller"
    stem: ClassVar[str] = "ccm"
    user: ClassVar[str] = USER
    rbac: ClassVar[str] = RBAC
    listed: ClassVar[str] = "Services, Nodes and EndpointSlices"

    @property
    def folder(self) -> Path:
        return ccm_dir(self.lab)


def ensure(lab: str, timeout: float = 30.0, cloud_routes: bool | None = None) -> int:
    """The entry point for an Ansible role or the ``cs`` provider: the lab's controller runs; with
    ``cloud_routes`` (None: as it ran before) routing the Nodes' pod blocks in the VPC (a change restarts it)."""
    controller = CloudController(lab)
    if cloud_routes is not None:
        settings = json.dumps({"configure_cloud_routes": cloud_routes}, sort_keys=True)
        controller.folder.mkdir(parents=True, exist_ok=True)
        if write_if_changed(settings_path(lab), settings) and controller.pid() is not None:
            controller.stop()
    return controller.ensure(timeout)


def remove_routes(lab: str) -> list[str]:
    """Every route the controller made (the cluster goes): what was deleted."""
    gone = []
    for record in load_routes(lab).values():
        delete_route(lab, record)
        gone.append(f"route {record.cidr} of Node {record.node} deleted")
    return gone


def end_leftovers(lab: str) -> list[int]:
    """SIGKILL the lab's controller processes (by command line), for ``acklab clean``: first, so none makes an
    SLB while the lab is taken apart."""
    return CloudController(lab).end_leftovers()




def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="acklab.k8s.cloud_controller", description=__doc__.splitlines()[0])
    parser.add_argument("--lab", required=True)
    parser.add_argument("--kubeconfig", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    controller = Controller(args.lab, args.kubeconfig)
    signal.signal(signal.SIGTERM, lambda *_: controller.stopping.set())
    controller.run(CloudController(args.lab).ready_file)


if __name__ == "__main__":
    main()
