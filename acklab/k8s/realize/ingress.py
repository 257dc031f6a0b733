"""nginx in each ingress-nginx controller pod: the Ingress model (``model/ingress``: the rendered nginx.conf) on the
kernel. The ingress controller on the API (``acklab.k8s.ingress_controller``) drives :class:`NginxPod` per pod.

Controller pods are the lab's pods that ``acklab.k8s.model.ingress.is_controller_pod`` recognises (namespace
``kube-system``, label ``app: ingress-nginx`` or ``app.kubernetes.io/name: ingress-nginx``); the pod agent leaves
their ports to nginx. Per controller pod, under ``/run/acklab/<lab>/ingress/<namespace>.<pod>/``:
``nginx.conf`` (the rendered configuration), ``endpoints`` (what the Lua balancer picks pods from),
``nginx.pid`` (the master, started inside the pod's network namespace), ``certs/`` (certificate and key files,
named by content), ``tmp/``, ``error.log``.

``sync`` is idempotent: render (a ValidationError for an invalid Ingress stops it before anything is written;
given a ``rejected`` list, an invalid Ingress is left out whole and listed there instead, the others served),
then per controller pod: new endpoints only → replace the endpoints file and ``POST /acklab/endpoints`` on the
pod's status server (every worker uses them at once; no reload); a new configuration, or no nginx running →
write ``nginx.conf.new``, ``nginx -t`` it, rename it over ``nginx.conf``, SIGHUP the master (graceful: old
workers finish the requests they hold, the listening sockets stay open) or start nginx, and wait until
``127.0.0.1:10254/acklab/generation`` in the pod answers the new generation and no old worker still accepts.
Nothing changed: nothing is done.

``sync`` (for pods built from a pod plan without an API server: bench/ingress_wrk.py): the endpoints are the pods
that are both wanted by the cluster's objects and running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from acklab.k8s.model import ingress, services
from acklab.k8s.model.ingress_annotations import GlobalConfig
from acklab.k8s.model.objects import Cluster
from acklab.k8s.realize.pod_network import PodRecord, load_records
from netns.kernel import process
from netns.kernel.files import write_atomic
from netns.kernel.namespace import NETNS_DIR, Namespace, alive
from netns.model.errors import LabError, ValidationError
from netns.realize import file_lock, state_dir


def ingress_dir(lab: str) -> Path:
    return state_dir(lab) / "ingress"


@dataclass(frozen=True)
class Options:
    """nginx's ports in the controller pods, its worker processes (0: one per CPU, ingress-nginx's default) and
    the controller ConfigMap's settings (``ingress_annotations.parse_configmap``)."""

    http: int = 80
    https: int = 443
    status: int = ingress.STATUS_PORT
    workers: int = 0
    config: GlobalConfig = field(default_factory=GlobalConfig)


@dataclass(frozen=True)
class NginxPod:
    """nginx in one controller pod."""

    lab: str
    record: PodRecord

    @property
    def folder(self) -> Path:
        return ingress_dir(self.lab) / f"{self.record.pod.namespace}.{self.record.pod.name}"

    @property
    def namespace(self) -> Namespace:
        return Namespace(self.record.netns)

    def pid(self) -> int | None:
        """The master's PID, if it runs inside this pod's namespace."""
        return master_pid(self.folder, self.namespace.inode())

    def generation(self, port: int) -> str | None:
        """What the status location answers (the generation nginx serves), None if nothing answers."""
        return self.status(port, "/acklab/generation")

    def endpoints_version(self, port: int, load: bool = False) -> str | None:
        """The endpoints version nginx's workers use; ``load``: make them load the endpoints file first."""
        return self.status(port, "/acklab/endpoints", "POST" if load else "GET")

    def status(self, port: int, path: str, method: str = "GET") -> str | None:
        """The body of a 200 answer of nginx's status server in the pod, None otherwise."""
        try:
            sock = self.namespace.socket()
        except OSError:
            return None
        sock.settimeout(2.0)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"{method} {path} HTTP/1.0\r\nHost: status\r\nContent-Length: 0\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        except OSError:
            return None
        finally:
            sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return body.decode().strip() if head.startswith(b"HTTP/1.1 200") else None

    def apply(self, rendered: ingress.Rendered, options: Options, timeout: float = 15.0) -> str | None:
        """Make nginx serve ``rendered``; returns what was done, None if it already did."""
        conf = self.folder / "nginx.conf"
        pid = self.pid()
        current = conf.read_text() if conf.exists() else None
        same_config = (pid is not None and current == rendered.config
                       and self.generation(options.status) == rendered.generation)
        endpoints = self.folder / "endpoints"
        same_endpoints = (endpoints.exists() and endpoints.read_text() == rendered.endpoints
                          and self.endpoints_version(options.status) == rendered.endpoints_version)
        if same_config and same_endpoints:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(endpoints, rendered.endpoints)  # read by the master at (re)load and by POST /acklab/endpoints
        if same_config:  # pods came or went: every worker takes the new endpoints at once, no reload
            self._load_endpoints(rendered, options)
            return (f"ingress pod {self.record.pod.key}: endpoints updated without a reload "
                    f"(version {rendered.endpoints_version})")
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        for name, data in rendered.files.items():  # content-addressed names: never overwrite a file in use
            path = self.folder / name
            if not path.exists():
                write_atomic(path, data, mode=0o600)
        new = self.folder / "nginx.conf.new"
        new.write_text(rendered.config)
        test = self._nginx(["-t", "-q", "-c", str(new)])
        if test.returncode != 0:
            new.unlink(missing_ok=True)
            raise LabError(f"ingress pod {self.record.pod.key}: nginx -t refused the configuration, the running "
                           f"one is kept: {test.stderr.strip()}")
        os.replace(new, conf)
        old_workers = self.workers(pid) if pid is not None else []
        if pid is not None:
            os.kill(pid, signal.SIGHUP)  # graceful reload
            what = f"ingress pod {self.record.pod.key}: nginx reloaded (generation {rendered.generation})"
        else:
            started = self._nginx(["-c", str(conf)])
            if started.returncode != 0:
                raise LabError(f"ingress pod {self.record.pod.key}: nginx did not start: {started.stderr.strip()}")
            what = f"ingress pod {self.record.pod.key}: nginx started (generation {rendered.generation})"
        deadline = time.monotonic() + timeout
        # Served by a new worker, and no old worker still accepting (an old one that has closed its listening
        # sockets calls itself "shutting down" while it finishes the requests it holds).
        while self.generation(options.status) != rendered.generation or any(
                still_accepting(w) for w in old_workers):
            if time.monotonic() > deadline:
                raise LabError(f"ingress pod {self.record.pod.key}: nginx did not serve generation "
                               f"{rendered.generation} within {timeout}s (see {self.folder / 'error.log'})")
            time.sleep(0.02)
        self._load_endpoints(rendered, options)
        self._drop_unused_files(rendered)
        return what

    def _load_endpoints(self, rendered: ingress.Rendered, options: Options) -> None:
        version = self.endpoints_version(options.status, load=True)
        if version != rendered.endpoints_version:
            raise LabError(f"ingress pod {self.record.pod.key}: nginx loaded endpoints version {version}, not "
                           f"{rendered.endpoints_version} (see {self.folder / 'error.log'})")

    def workers(self, master: int) -> list[int]:
        """The master's worker processes (its children in the pod's namespace)."""
        return [p for p in self.namespace.pids() if _parent(p) == master and _cmdline(p).startswith(b"nginx: worker")]

    def _nginx(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        """nginx inside the pod's network namespace (``daemon on``: the master detaches, pidfile in the folder)."""
        return subprocess.run(["nsenter", f"--net={NETNS_DIR}/{self.record.netns}", "--", "nginx",
                               "-p", str(self.folder), "-e", str(self.folder / "error.log"), *args],
                              capture_output=True, text=True, timeout=30, check=False, cwd="/")

    def _drop_unused_files(self, rendered: ingress.Rendered) -> None:
        certs = self.folder / "certs"
        for path in certs.iterdir() if certs.is_dir() else ():
            if f"certs/{path.name}" not in rendered.files:
                path.unlink(missing_ok=True)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def still_accepting(worker: int) -> bool:
    """An nginx worker that may still accept connections: alive and not yet "shutting down"."""
    return alive(worker) and b"shutting down" not in _cmdline(worker)


def master_pid(folder: Path, netns_inode: int | None) -> int | None:
    """The nginx master recorded in ``folder/nginx.pid`` if it is alive, is nginx, and (when given) runs in the
    namespace with inode ``netns_inode``."""
    try:
        pid = int((folder / "nginx.pid").read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    if not cmdline.startswith(b"nginx: master process") or not alive(pid):
        return None
    if netns_inode is not None and inode != netns_inode:
        return None
    return pid


def stop_nginx(folder: Path, grace: float = 10.0) -> None:
    """Gracefully stop the nginx recorded in ``folder`` (SIGQUIT, then SIGKILL) and remove the folder."""
    pid = master_pid(folder, None)
    if pid is not None:
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + grace
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def end_leftover_nginx(lab: str) -> list[int]:
    """SIGKILL every nginx of the lab's controller pods that is still running, and its workers: found by the prefix
    path on the master's command line, so also one whose pod's namespace is gone (``acklab clean``'s safety net)."""
    prefix = f"-p {ingress_dir(lab)}/"
    masters = process.find(lambda argv: " ".join(argv).startswith("nginx: master process")
                           and prefix in " ".join(argv))
    return process.kill_all(masters + process.children(masters)) if masters else []


# --- the cluster's view -----------------------------------------------------------------------------------------


def controller_pods(lab: str, records: dict[str, PodRecord] | None = None) -> list[PodRecord]:
    records = load_records(lab) if records is None else records
    return [r for _, r in sorted(records.items())
            if ingress.is_controller_pod(r.pod.namespace, r.pod.labels) and Namespace(r.netns).exists()]


def endpoint_pods(cluster: Cluster, records: dict[str, PodRecord]) -> list[services.PodEndpoint]:
    """Pods that may receive traffic: wanted by the manifests and running (namespace present), as the endpoint
    controller sees them. A pod the manifests no longer want is left out (it is terminating)."""
    wanted = {p.key: p for p in cluster.all_pods()}
    out = []
    for key, record in sorted(records.items()):
        pod = wanted.get(key)
        if pod is None or not Namespace(record.netns).exists():
            continue
        out.append(services.PodEndpoint.of(pod, record.ip, record.node))
    return out


def render_for(lab: str, cluster: Cluster, record: PodRecord, records: dict[str, PodRecord],
               options: Options = Options(), strict: bool = True) -> ingress.Rendered:
    folder = NginxPod(lab, record).folder
    settings = ingress.Settings(root=str(folder), http_port=options.http, https_port=options.https,
                                status_port=options.status, workers=options.workers, config=options.config)
    return ingress.render(cluster.ingresses, cluster.ingress_classes, cluster.services,
                          endpoint_pods(cluster, records), cluster.secrets, settings, strict=strict)


def sync(lab: str, cluster: Cluster, options: Options = Options(),
         rejected: list[ValidationError] | None = None) -> list[str]:
    """Make every controller pod's nginx serve the cluster's Ingresses. Returns what changed (empty: nothing).

    Without ``rejected``, an invalid Ingress raises ValidationError before any file is written or any nginx is
    signalled. With it, each invalid Ingress is left out whole and appended to ``rejected`` (for Events), and
    the others are served.
    """
    strict = rejected is None
    with file_lock(ingress_dir(lab) / "lock"):
        records = load_records(lab)
        controllers = controller_pods(lab, records)
        rendered = {r.pod.key: render_for(lab, cluster, r, records, options, strict) for r in controllers}
        if rejected is not None and rendered:  # the same Ingresses fail for every controller pod
            rejected += next(iter(rendered.values())).rejected
        changes = []
        for record in controllers:
            done = NginxPod(lab, record).apply(rendered[record.pod.key], options)
            if done:
                changes.append(done)
        keep = {NginxPod(lab, r).folder.name for r in controllers}
        for folder in sorted(p for p in ingress_dir(lab).iterdir() if p.is_dir() and p.name not in keep):
            stop_nginx(folder)
            changes.append(f"ingress pod {folder.name}: gone, its nginx stopped")
        return changes
