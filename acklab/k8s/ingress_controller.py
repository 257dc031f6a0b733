"""The ingress controller on the API: nginx in the ingress-nginx controller pods, configured from the cluster's
Ingresses, IngressClasses, Services, EndpointSlices and Secrets, as ingress-nginx does.

One process per lab, in the control plane's namespace (removing that namespace ends it), the client
``system:ingress-nginx`` (a ClusterRole of its own, applied by :func:`ensure`). It lists and watches those five
kinds, the pods of ``kube-system`` and its ConfigMap ``nginx-configuration`` (list, then watch from the list's
resourceVersion; a 410 Gone lists again) into caches, and every event puts the one key ``sync`` on a work queue: the
reconcile is level-triggered over the whole cluster, as ingress-nginx's is (one configuration for every Ingress).

A sync: the caches → :class:`Inputs` (pure, :func:`inputs`: EndpointSlices become the endpoints the renderer
resolves); each Ingress of our class is validated (:func:`admit`, one render that leaves a bad one out), a rejected
one gets a Warning Event and is left out while the others keep serving; then per controller pod (the pods
``ingress.is_controller_pod`` recognises, running, with the namespace the node agent made)
``realize.ingress.NginxPod.apply``: new endpoints only → the Lua balancer takes them without a reload; a new
configuration → ``nginx -t`` then SIGHUP. Finally each served Ingress gets ``status.loadBalancer.ingress``: the
publish Service's (``kube-system/nginx-ingress-lb``, ACK's) LoadBalancer addresses, else the addresses of the nodes
the controller pods run on.

The node agent leaves controller pods' ports to nginx (``realize.pod_network.NodeNetwork.agent_pods``).
:func:`addon_manifests` is ACK's ``nginx-ingress-controller`` add-on: the IngressClass ``nginx``, the
controller Deployment and its LoadBalancer Service in ``kube-system``, applied through the API by
:func:`deploy_addon`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from acklab.k8s import informer
from acklab.k8s.cluster_controller import ClusterController
from acklab.k8s.informer import WorkQueue
from acklab.k8s.model import ingress
from acklab.k8s.model import ingress_annotations as ann
from acklab.k8s.model import services as svcs
from acklab.k8s.model.objects import ContainerPort
from acklab.k8s.realize.ingress import NginxPod, Options, ingress_dir, stop_nginx
from acklab.k8s.realize.pod_agent import k8s_dir
from acklab.k8s.realize.pod_network import PodRecord, load_records
from netns.kernel.files import write_atomic
from netns.kernel.namespace import Namespace
from netns.model.errors import LabError, ValidationError
from netns.realize import file_lock

USER = "system:ingress-nginx"
COMPONENT = "nginx-ingress-controller"  # the Events' source, as ingress-nginx's
PUBLISH_SERVICE = "kube-system/nginx-ingress-lb"  # ACK's add-on Service (ingress-nginx's --publish-service)
SYNC = "sync"
RESYNC = 10.0  # a sync even without an event: an nginx that died is started again
SERVICE_LABEL = "kubernetes.io/service-name"  # an EndpointSlice's Service
ENDPOINT_LABEL = "acklab.io/endpoints-of"  # the stand-in pods' label (the synthetic Services select on it)
REJECTED = "Rejected"  # the Warning Event's reason for an invalid Ingress
SYNCED = "Sync"  # ingress-nginx's Normal Event reason for an Ingress it takes

RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "acklab:ingress-nginx"}}
rules:
  - {{apiGroups: [""], resources: [services, secrets, pods, configmaps], verbs: [get, list, watch]}}
  - {{apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [get, list, watch]}}
  - {{apiGroups: [networking.k8s.io], resources: [ingresses, ingressclasses], verbs: [get, list, watch]}}
  - {{apiGroups: [networking.k8s.io], resources: [ingresses/status], verbs: [get, patch, update]}}
  - {{apiGroups: ["", events.k8s.io], resources: [events], verbs: [create, patch, update]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "acklab:ingress-nginx"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "acklab:ingress-nginx"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{USER}"}}]
"""

Doc = Mapping[str, Any]


# --- pure: API objects → what the renderer takes ------------------------------------------------------------------

def key_of(obj: Doc) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


@dataclass(frozen=True)
class Inputs:
    """What ``ingress.render`` takes, from the API's objects."""

    ingresses: tuple[Doc, ...]
    classes: tuple[Doc, ...]
    services: tuple[Doc, ...]  # stand-ins: selector on ENDPOINT_LABEL, targetPort named per slice port
    pods: tuple[svcs.PodEndpoint, ...]  # stand-ins: one per EndpointSlice address
    secrets: tuple[Doc, ...]


def _target_name(index: int) -> str:
    return f"ep-{index}"  # a valid IANA port name: what a stand-in pod's port is called for Service port ``index``


def backends(services: Iterable[Doc], slices: Iterable[Doc]) -> tuple[list[Doc], list[svcs.PodEndpoint]]:
    """Services + EndpointSlices → stand-in Services and pods that ``services.resolve`` turns into exactly the
    slices' endpoints: Service port ``i`` targets the port named ``ep-i``, which each stand-in pod (one per slice
    address) has with the number the slice gives the Service port's name. So named and numbered targetPorts,
    selector-less Services with hand-made slices, and readiness (``conditions.ready``; nil is ready) all come
    from the EndpointSlice controller, as ingress-nginx reads them."""
    by_service: dict[str, list[Doc]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(SERVICE_LABEL)
        if owner and s.get("addressType", "IPv4") == "IPv4":
            by_service.setdefault(f"{meta.get('namespace') or 'default'}/{owner}", []).append(s)
    out_services: list[Doc] = []
    out_pods: list[svcs.PodEndpoint] = []
    for svc in sorted(services, key=key_of):
        spec = svc.get("spec") or {}
        ports = [p for p in spec.get("ports") or [] if isinstance(p, Mapping)]
        if spec.get("type") == "ExternalName" or not ports:
            continue
        key = key_of(svc)
        namespace, name = key.split("/", 1)
        index = {str(p.get("name") or ""): i for i, p in enumerate(ports)}
        out_services.append({
            "apiVersion": "v1", "kind": "Service", "metadata": {"namespace": namespace, "name": name},
            "spec": {"type": "ClusterIP", "selector": {ENDPOINT_LABEL: name},
                     "ports": [{"name": p.get("name") or "", "port": p["port"],
                                "protocol": p.get("protocol") or "TCP", "targetPort": _target_name(i)}
                               for i, p in enumerate(ports)]}})
        for s in sorted(by_service.get(key, []), key=key_of):
            slice_ports = tuple(
                ContainerPort(int(sp["port"]), sp.get("protocol") or "TCP",
                              _target_name(index[str(sp.get("name") or "")]))
                for sp in s.get("ports") or [] if str(sp.get("name") or "") in index and sp.get("port"))
            for n, endpoint in enumerate(s.get("endpoints") or []):
                conditions = endpoint.get("conditions") or {}
                ready = conditions.get("ready") is not False  # nil: ready (the API's rule for consumers)
                for address in endpoint.get("addresses") or []:
                    stand_in = f"{(s.get('metadata') or {}).get('name')}.{n}.{address}"
                    out_pods.append(svcs.PodEndpoint(stand_in, namespace, {ENDPOINT_LABEL: name}, address,
                                                     endpoint.get("nodeName"), ready=ready, ports=slice_ports))
    return out_services, out_pods


def inputs(ingresses: Iterable[Doc], classes: Iterable[Doc], services: Iterable[Doc], slices: Iterable[Doc],
           secrets: Iterable[Doc]) -> Inputs:
    stand_in_services, pods = backends(services, slices)
    tls = [s for s in secrets if s.get("type") in (None, "kubernetes.io/tls", "Opaque")]
    return Inputs(tuple(sorted(ingresses, key=key_of)), tuple(classes), tuple(stand_in_services), tuple(pods),
                  tuple(sorted(tls, key=key_of)))


@dataclass(frozen=True)
class Admission:
    served: tuple[Doc, ...]  # Ingresses of our class that are valid (rendered)
    rejected: Mapping[str, str]  # key → why (a ValidationError's text)
    ignored: tuple[str, ...]  # keys of other classes' Ingresses


def admit(given: Inputs, settings: ingress.Settings | None = None) -> Admission:
    """Validate every Ingress of our class in one render that leaves a bad one out whole (``strict=False``): a
    rejected Ingress is told in an Event, the others keep serving."""
    rendered = ingress.render(given.ingresses, given.classes, [], [], given.secrets, settings or ingress.Settings(),
                              strict=False)
    # the renderer names an Ingress "Ingress 'namespace/name'" in its errors and "namespace/name: why" when ignored
    rejected = {exc.resource.removeprefix("Ingress ").strip("'"): str(exc) for exc in rendered.rejected}
    ignored = tuple(entry.split(": ", 1)[0] for entry in rendered.ignored)
    served = tuple(d for d in given.ingresses if key_of(d) not in rejected and key_of(d) not in ignored)
    return Admission(served, rejected, ignored)


def global_config(configmaps: Mapping[str, Doc]) -> tuple[ann.GlobalConfig, str | None]:
    """The controller ConfigMap's settings (``kube-system/nginx-configuration``, ACK's name), and the error if it
    is invalid: then upstream's defaults apply, as ingress-nginx keeps running on a bad ConfigMap."""
    name = ann.CONFIGMAP_NAMES[0]
    doc = configmaps.get(name)
    try:
        return ann.parse_configmap((doc or {}).get("data"), name), None
    except ValidationError as exc:
        return ann.GlobalConfig(), str(exc)


def is_running_controller(pod: Doc) -> bool:
    """An ingress-nginx controller pod that runs: bound, with an address, not terminating."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    return (ingress.is_controller_pod(meta.get("namespace") or "", meta.get("labels") or {})
            and not meta.get("deletionTimestamp") and status.get("phase") == "Running"
            and bool(status.get("podIP")))


def publish_addresses(services: Mapping[str, Doc], controllers: Iterable[Doc],
                      publish_service: str = PUBLISH_SERVICE) -> list[dict[str, str]]:
    """What each served Ingress's ``status.loadBalancer.ingress`` says: the publish Service's LoadBalancer
    addresses if it has any, else the addresses of the nodes running controller pods (ingress-nginx without an
    external address)."""
    svc = services.get(publish_service) or {}
    lb = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    found = [{k: v for k, v in entry.items() if k in ("ip", "hostname") and v} for entry in lb]
    found = [entry for entry in found if entry]
    if found:
        return sorted(found, key=lambda e: (e.get("ip", ""), e.get("hostname", "")))
    hosts = {(p.get("status") or {}).get("hostIP") for p in controllers} - {None, ""}
    return [{"ip": ip} for ip in sorted(hosts, key=lambda a: tuple(int(x) for x in a.split(".")))]


def status_updates(served: Iterable[Doc], addresses: list[dict[str, str]]) -> list[str]:
    """Keys of served Ingresses whose status does not say ``addresses`` yet (no controller pod: nothing)."""
    if not addresses:
        return []
    return [key_of(doc) for doc in served
            if (((doc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []) != addresses]


@dataclass(frozen=True)
class Notice:
    key: str
    kind: str  # Normal or Warning
    reason: str
    message: str


def events(admission: Admission, ingresses: Mapping[str, Doc], told: dict[str, tuple[str, str]]) -> list[Notice]:
    """Events to emit: one per Ingress spec and verdict (``told`` remembers them: key → (metadata.generation,
    message); the generation, not the resourceVersion, so the status written back tells nothing again); Warning
    ``Rejected`` for a rejected Ingress, Normal ``Sync`` for one taken into the configuration. Keys of Ingresses
    gone are forgotten."""
    out = []
    verdicts = {**{key_of(d): ("Normal", SYNCED, "Scheduled for sync") for d in admission.served},
                **{k: ("Warning", REJECTED, f"not served, the others are: {why}")
                   for k, why in admission.rejected.items()}}
    for key, (kind, reason, message) in sorted(verdicts.items()):
        version = str(((ingresses.get(key) or {}).get("metadata") or {}).get("generation", ""))
        if told.get(key) != (version, message):
            told[key] = (version, message)
            out.append(Notice(key, kind, reason, message))
    for key in set(told) - set(ingresses):
        del told[key]
    return out


# --- the controller ---------------------------------------------------------------------------------------------

@dataclass
class Caches:
    """The informers' stores: kind → key → object (raw, camelCase as the API sends it)."""

    stores: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {
        k: {} for k in ("ingresses", "classes", "services", "slices", "secrets", "pods", "configmaps")})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def replace(self, kind: str, items: list[dict[str, Any]]) -> None:
        with self.lock:
            self.stores[kind] = {_cache_key(o): o for o in items}

    def put(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        with self.lock:
            if event == "DELETED":
                self.stores[kind].pop(_cache_key(obj), None)
            else:
                self.stores[kind][_cache_key(obj)] = obj

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        with self.lock:
            return {k: dict(v) for k, v in self.stores.items()}


def _cache_key(obj: Doc) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name')}"


class Controller:
    def __init__(self, lab: str, kubeconfig: str, options: Options | None = None,
                 publish_service: str = PUBLISH_SERVICE) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(kubeconfig)
        self.lab, self.options, self.publish_service = lab, options or Options(), publish_service
        self.core = client.CoreV1Api(api)
        self.net = client.NetworkingV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.caches = Caches()
        self.queue = WorkQueue()
        self.told: dict[str, tuple[str, str]] = {}
        self.config_error: str | None = None
        self.failures = 0
        self.stopping = threading.Event()
        self.synced: dict[str, threading.Event] = {}

    def _raw(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return json.loads(call(*args, _preload_content=False, **kwargs).data)

    def watches(self) -> list[tuple[str, Callable[..., Any], tuple[Any, ...]]]:
        return [("ingresses", self.net.list_ingress_for_all_namespaces, ()),
                ("classes", self.net.list_ingress_class, ()),
                ("services", self.core.list_service_for_all_namespaces, ()),
                ("slices", self.discovery.list_endpoint_slice_for_all_namespaces, ()),
                ("secrets", self.core.list_secret_for_all_namespaces, ()),
                ("pods", self.core.list_namespaced_pod, (ingress.CONTROLLER_NAMESPACE,)),
                ("configmaps", self.core.list_namespaced_config_map, (ingress.CONTROLLER_NAMESPACE,))]

    def _list_and_watch(self, what: str, list_call: Callable[..., Any], args: tuple[Any, ...]) -> None:
        def listed(items: list[dict[str, Any]]) -> None:
            self.caches.replace(what, items)
            self.queue.add(SYNC)

        def changed(kind: str, raw: dict[str, Any]) -> None:
            self.caches.put(what, kind, raw)
            self.queue.add(SYNC)

        informer.list_and_watch(what, list_call, args, listed, changed, self.stopping, self.synced[what],
                                lambda why: print(f"{COMPONENT}: {why}", file=sys.stderr, flush=True))

    # -- reconcile --

    def reconcile(self) -> bool:
        """One level-triggered sync of every controller pod, Ingress status and Event. Returns True when every
        controller pod serves the wanted configuration."""
        stores = self.caches.snapshot()
        given = inputs(stores["ingresses"].values(), stores["classes"].values(), stores["services"].values(),
                       stores["slices"].values(), stores["secrets"].values())
        config, error = global_config(stores["configmaps"])
        if error and error != self.config_error:
            print(f"{COMPONENT}: the ConfigMap is not applied, upstream's defaults are: {error}", file=sys.stderr,
                  flush=True)
        self.config_error = error
        admission = admit(given, ingress.Settings(config=config))
        served = Inputs(admission.served, given.classes, given.services, given.pods, given.secrets)
        controllers = [p for p in stores["pods"].values() if is_running_controller(p)]
        complete = self._apply(served, controllers, config)
        by_key = {key_of(d): d for d in stores["ingresses"].values()}
        for notice in events(admission, by_key, self.told):
            self._event(by_key[notice.key], notice)
        services = {key_of(s): s for s in stores["services"].values()}
        addresses = publish_addresses(services, controllers, self.publish_service)
        for key in status_updates(admission.served, addresses):
            namespace, name = key.split("/", 1)
            with contextlib.suppress(Exception):  # the Ingress may be gone; the next event tells
                self.net.patch_namespaced_ingress_status(
                    name, namespace, {"status": {"loadBalancer": {"ingress": addresses}}},
                    _content_type="application/merge-patch+json")
        return complete

    def _apply(self, served: Inputs, controllers: list[Doc], config: ann.GlobalConfig) -> bool:
        records = load_records(self.lab)
        complete = True
        wanted: list[PodRecord] = []
        for pod in sorted(controllers, key=key_of):
            record = records.get(key_of(pod))
            uid = (pod.get("metadata") or {}).get("uid")
            if record is None or (record.pod.uid and uid and record.pod.uid != uid) or \
                    not Namespace(record.netns).exists():
                complete = False  # the node agent has not made it yet (or made the previous pod of that name)
                continue
            wanted.append(record)
        with file_lock(ingress_dir(self.lab) / "lock"):  # never interleaved with another sync of these pods
            for record in wanted:
                nginx = NginxPod(self.lab, record)
                settings = ingress.Settings(root=str(nginx.folder), http_port=self.options.http,
                                            https_port=self.options.https, status_port=self.options.status,
                                            workers=self.options.workers, config=config)
                try:
                    rendered = ingress.render(served.ingresses, served.classes, served.services, served.pods,
                                              served.secrets, settings, strict=False)
                    done = nginx.apply(rendered, self.options)
                except (LabError, ValidationError, OSError, subprocess.SubprocessError) as exc:
                    complete = False
                    print(f"{COMPONENT}: {record.pod.key}: {exc}", file=sys.stderr, flush=True)
                    continue
                if done:
                    print(done, flush=True)
            keep = {NginxPod(self.lab, r).folder.name for r in wanted}
            keep |= {f"{(p.get('metadata') or {}).get('namespace')}.{(p.get('metadata') or {}).get('name')}"
                     for p in controllers}  # a pod not made yet keeps its folder
            folder = ingress_dir(self.lab)
            for gone in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in keep):
                stop_nginx(gone)
                print(f"ingress pod {gone.name}: gone, its nginx stopped", flush=True)
        return complete

    def _event(self, ing: Doc, notice: Notice) -> None:
        meta = ing.get("metadata") or {}
        informer.record(self.core, informer.event(
            {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "namespace": meta.get("namespace"),
             "name": meta.get("name"), "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
            notice.kind, notice.reason, notice.message, COMPONENT))

    # -- run --

    def work(self) -> None:
        while not self.stopping.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                complete = self.reconcile()
                self.failures = 0 if complete else self.failures + 1
            except Exception as exc:  # the API or the kernel failing: retry with backoff
                self.failures += 1
                complete = False
                print(f"{COMPONENT}: sync: {exc!r}", file=sys.stderr, flush=True)
            finally:
                self.queue.done(key)
            if not complete:
                self.queue.add(SYNC, informer.backoff(self.failures))

    def run(self, ready_file: Path | None = None) -> None:
        ingress_dir(self.lab).mkdir(parents=True, exist_ok=True)
        for what, call, args in self.watches():
            self.synced[what] = threading.Event()
            threading.Thread(target=self._list_and_watch, args=(what, call, args), daemon=True,
                             name=f"watch {what}").start()
        threading.Thread(target=self._resync, daemon=True, name="resync").start()
        informer.wait_synced(self.synced.values(), self.stopping)  # a partial list would drop routes
        if ready_file is not None:
            write_atomic(ready_file, f"{os.getpid()}\n")
        self.work()

    def _resync(self) -> None:
        while not informer.pause(self.stopping, RESYNC):
            self.queue.add(SYNC)


# --- the process: one per lab, in the control plane's namespace ------------------------------------------------

def ingress_api_dir(lab: str) -> Path:
    return k8s_dir(lab) / "ingress-nginx"


@dataclass(frozen=True)
class IngressController(ClusterController):
    """The controller's process; the nginx in the controller pods keeps serving when it stops (it goes with their
    namespaces)."""

    module: ClassVar[str] = "acklab.k8s.ingress_controller"
    title: ClassVar[str] = "the ingress controller"
    stem: ClassVar[str] = "controller"
    user: ClassVar[str] = USER
    rbac: ClassVar[str] = RBAC
    listed: ClassVar[str] = "its objects"

    @property
    def folder(self) -> Path:
        return ingress_api_dir(self.lab)


def ensure(lab: str, timeout: float = 30.0) -> int:
    """The entry point for an Ansible role or the ``cs`` provider: the lab's ingress controller runs."""
    return IngressController(lab).ensure(timeout)


def stop(lab: str) -> None:
    IngressController(lab).stop()


def pid(lab: str) -> int | None:
    return IngressController(lab).pid()


def end_leftovers(lab: str) -> list[int]:
    """SIGKILL the lab's ingress controller processes (by command line), for ``acklab clean``."""
    return IngressController(lab).end_leftovers()


# --- ACK's nginx-ingress-controller add-on ------------------------------------------------------------------------

def addon_manifests(replicas: int = 2) -> str:
    """ACK's add-on: IngressClass ``nginx`` (the default class), the controller Deployment (``app:
    ingress-nginx``: the node agent leaves its pods' ports to nginx) and the Service ``nginx-ingress-lb`` of type
    LoadBalancer (the cloud controller gives it an SLB; its address is what the Ingresses' status says)."""
    namespace, name = PUBLISH_SERVICE.split("/")
    return f"""
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: {ingress.CLASS_NAME}
  annotations: {{{ingress.DEFAULT_CLASS_ANNOTATION}: "true"}}
spec: {{controller: {ingress.CONTROLLER}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: nginx-ingress-controller, namespace: {namespace}, labels: {{app: ingress-nginx}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: ingress-nginx}}}}
  template:
    metadata: {{labels: {{app: ingress-nginx}}}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: nginx-ingress-controller
        image: registry.cn-hangzhou.aliyuncs.com/acs/aliyun-ingress-controller:v1.11.4-aliyun.1
        ports: [{{name: http, containerPort: 80}}, {{name: https, containerPort: 443}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}, labels: {{app: nginx-ingress-lb}}}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {{app: ingress-nginx}}
  ports:
  - {{name: http, port: 80, targetPort: 80}}
  - {{name: https, port: 443, targetPort: 443}}
"""


def deploy_addon(lab: str, replicas: int = 2) -> None:
    """Apply the add-on through the API (the admin's kubeconfig, as ACK installs add-ons)."""
    from netns.realize.control_plane import kubectl_apply

    kubectl_apply(lab, addon_manifests(replicas), "the nginx-ingress-controller add-on")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="acklab.k8s.ingress_controller", description=__doc__.splitlines()[0])
    parser.add_argument("--lab", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--publish-service", default=PUBLISH_SERVICE)
    args = parser.parse_args(argv)
    controller = Controller(args.lab, args.kubeconfig, publish_service=args.publish_service)
    signal.signal(signal.SIGTERM, lambda *_: controller.stopping.set())
    controller.run(IngressController(args.lab).ready_file)


if __name__ == "__main__":
    main()
