#!/usr/bin/env python3
"""`make up`'s and `make ack-up`'s last step: wait until a lab's cluster serves, from the lab's internet, as a user
would see it.

`acklab wait` checks SLB listeners and playbook pods; it does not know Kubernetes objects, so it cannot tell an
Ingress rule that routes from an nginx that answers 404. This script asks the cluster (kubectl, the stack's
kubeconfig) where things are and sends the requests a user would:

1. every Node is Ready, every Deployment, StatefulSet and DaemonSet has all its replicas ready (a wait right after
   `kubectl apply` must not pass before their pods exist), and every pod (not finished) is Running and Ready;
2. the Ingress has an address (the ingress controller writes its SLB's address into the Ingress's status) and a
   GET of http://<host><path> to that address, from the lab's internet namespace, is answered 200 by a pod;
3. each LoadBalancer Service named has an external IP (the cloud controller's SLB) and answers 200 likewise.

The targets are named (``--ingress``, ``--service``), or with ``--all`` found: each Ingress's first rule with a
literal path (Prefix or Exact), answered 200; and each LoadBalancer Service with a TCP port 80 and each Ingress
without a literal path, at /, where any HTTP answer counts (what serves there is the application's or the ingress
controller's business: a 404 from nginx still proves the path through the SLB).
It polls until all of that holds in one round or the deadline passes; then it exits 1 naming what is missing.
Run with the project's venv (acklab's packages: sockets made inside the lab's namespaces), as root.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from netns.kernel.namespace import Namespace
from netns.model.names import mark

POLL_INTERVAL = 0.5  # between rounds: each round already waits up to PROBE_TIMEOUT per request
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Target:
    """A request to send: GET ``path`` with ``Host: host`` to the address of an Ingress or a Service."""

    kind: str  # ingress, service
    namespace: str
    name: str
    host: str  # "" means the address itself
    path: str
    answers: tuple[int, ...] | None = (200,)  # the HTTP statuses that count as served; None: any

    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class Kubectl:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig

    def get(self, *args: str) -> Any | None:
        """One object or list as JSON, or None while the API cannot answer (it is checked again next round)."""
        try:
            result = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, "get", *args, "-o", "json"],
                                    capture_output=True, text=True, timeout=20, check=False)
        except subprocess.TimeoutExpired:
            return None
        return json.loads(result.stdout) if result.returncode == 0 else None


def load_balancer_ip(obj: Any | None) -> str | None:
    """``status.loadBalancer.ingress[0].ip`` of a Service or an Ingress."""
    entries = ((obj or {}).get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return entries[0].get("ip") if entries else None


def http_get(netns: str, address: str, path: str, host: str) -> tuple[int, str] | str:
    """(status, body) of a GET on port 80 from ``netns``, or why there was no answer."""
    try:
        sock = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        return f"no namespace {netns}: {exc.strerror or exc}"
    try:
        sock.settimeout(PROBE_TIMEOUT)
        sock.connect((address, 80))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or address}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    words = head.split(b"\r\n", 1)[0].split()
    if len(words) < 2 or not words[1].isdigit():
        return f"not an HTTP answer: {data[:40]!r}"
    return int(words[1]), body.decode(errors="replace").strip()


def node_problems(kubectl: Kubectl) -> list[str]:
    nodes = kubectl.get("nodes")
    if nodes is None:
        return ["the API server does not answer"]
    items = nodes.get("items") or []
    not_ready = [n["metadata"]["name"] for n in items
                 if not any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
    if not items:
        return ["no Nodes yet"]
    return [f"node {name} is not Ready" for name in not_ready]


def pod_problems(kubectl: Kubectl) -> list[str]:
    pods = kubectl.get("pods", "--all-namespaces")
    if pods is None:
        return ["the API server does not answer"]
    problems = []
    for pod in pods.get("items") or []:
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        if status.get("phase") != "Running" or not ready:
            meta = pod["metadata"]
            problems.append(f"pod {meta['namespace']}/{meta['name']} is {status.get('phase', 'new')}"
                            f"{'' if status.get('phase') != 'Running' else ', not Ready'}")
    return problems


WORKLOADS = ("deployments", "statefulsets", "daemonsets")


def _ready_of(kind: str, obj: dict[str, Any]) -> tuple[int, int]:
    """(ready, wanted) replicas of a workload, as `kubectl rollout status` counts them."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "daemonsets":
        return int(status.get("numberReady") or 0), int(status.get("desiredNumberScheduled") or 0)
    wanted = int(spec.get("replicas", 1))
    return min(int(status.get("readyReplicas") or 0), int(status.get("updatedReplicas") or 0)), wanted


def workload_problems(kubectl: Kubectl) -> list[str]:
    problems = []
    for kind in WORKLOADS:
        found = kubectl.get(kind, "--all-namespaces")
        if found is None:
            return ["the API server does not answer"]
        for obj in found.get("items") or []:
            ready, wanted = _ready_of(kind, obj)
            if ready < wanted:
                meta = obj["metadata"]
                problems.append(f"{kind[:-1]} {meta['namespace']}/{meta['name']}: {ready} of {wanted} ready")
    return problems


def ingress_target(ingress: dict[str, Any]) -> Target:
    """The first rule's literal path (Prefix or Exact) with its host, a host without TLS first; else the default
    backend at /. A TLS host is asked over HTTP, where ingress-nginx answers 308 (its ssl-redirect) once it has
    the host's server: that counts as served."""
    meta, spec = ingress["metadata"], ingress.get("spec") or {}
    tls_hosts = {h for entry in spec.get("tls") or [] for h in entry.get("hosts") or []}
    candidates = [(rule.get("host", ""), path.get("path", "/")) for rule in spec.get("rules") or []
                  for path in (rule.get("http") or {}).get("paths") or []
                  if path.get("pathType") in ("Prefix", "Exact")]
    candidates.sort(key=lambda candidate: candidate[0] in tls_hosts)  # stable: the first rule without TLS first
    if not candidates:
        return Target("ingress", meta["namespace"], meta["name"], "", "/", None)
    host, path = candidates[0]
    return Target("ingress", meta["namespace"], meta["name"], host, path, (200, 308) if host in tls_hosts else (200,))


def discovered_targets(kubectl: Kubectl) -> list[Target] | None:
    """Every Ingress, and every LoadBalancer Service with a TCP port 80; None while the API cannot answer."""
    ingresses, services = kubectl.get("ingress", "--all-namespaces"), kubectl.get("services", "--all-namespaces")
    if ingresses is None or services is None:
        return None
    targets = [ingress_target(i) for i in ingresses.get("items") or []]
    for service in services.get("items") or []:
        spec = service.get("spec") or {}
        if spec.get("type") == "LoadBalancer" and any(
                p.get("port") == 80 and p.get("protocol", "TCP") == "TCP" for p in spec.get("ports") or []):
            targets.append(Target("service", service["metadata"]["namespace"], service["metadata"]["name"], "", "/",
                                  None))
    return targets


def target_problem(kubectl: Kubectl, netns: str, target: Target, served: dict[str, str]) -> str | None:
    address = load_balancer_ip(kubectl.get(target.kind, target.name, "-n", target.namespace))
    if not address:
        return f"{target.label()}: no address in its status yet"
    url = f"http://{target.host or address}{target.path}"
    answer = http_get(netns, address, target.path, target.host)
    if isinstance(answer, str):
        return f"{target.label()}: GET {url} via {address}: {answer}"
    status, body = answer
    if target.answers is not None and status not in target.answers:
        return f"{target.label()}: GET {url} via {address}: HTTP {status}"
    served[target.label()] = f"{url} via {address} -> {body[:60]}"
    return None


def wait(lab: str, kubeconfig: str, targets: list[Target] | None, timeout: float) -> int:
    """Poll until everything serves; ``targets`` None: find them (``--all``) each round."""
    kubectl = Kubectl(kubeconfig)
    netns = f"{mark(lab)}internet"  # the lab's internet: where the SLBs' internet clients are
    start = time.monotonic()
    deadline = start + timeout
    reported: list[str] = []
    while True:
        served: dict[str, str] = {}
        problems = node_problems(kubectl) or workload_problems(kubectl) or pod_problems(kubectl)
        round_targets = targets if targets is not None else discovered_targets(kubectl)
        if not problems and round_targets is None:
            problems = ["the API server does not answer"]
        if not problems:
            problems = [p for t in round_targets or () if (p := target_problem(kubectl, netns, t, served))]
        elapsed = time.monotonic() - start
        if not problems:
            print(f"lab {lab} serves after {elapsed:.1f} s:")
            for label, what in served.items():
                print(f"  {label}: {what}")
            return 0
        if problems != reported:  # progress: print what is missing when it changes, not every round
            print(f"{elapsed:5.1f} s  waiting: " + "; ".join(problems), flush=True)
            reported = problems
        if time.monotonic() >= deadline:
            print(f"lab {lab} not serving after {elapsed:.1f} s (timeout {timeout:g} s):", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            print(f"  see `kubectl --kubeconfig {kubeconfig} get pods,svc,ingress -A`, `acklab status --lab {lab}`"
                  f" and `acklab logs --lab {lab}`", file=sys.stderr)
            return 1
        time.sleep(POLL_INTERVAL)


def parse_target(kind: str, spec: str) -> Target:
    """``namespace/name,host,path`` (host empty: the address), e.g. ``default/web,web.acklab.test,/app/x``."""
    ref, host, path = [*spec.split(","), "", ""][:3]
    namespace, _, name = ref.rpartition("/")
    return Target(kind, namespace or "default", name, host, path or "/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", required=True, help="lab (Pulumi stack) name")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--ingress", action="append", default=[], metavar="NS/NAME,HOST,PATH",
                        help="an Ingress to request through its address (repeatable)")
    parser.add_argument("--service", action="append", default=[], metavar="NS/NAME,[HOST],PATH",
                        help="a LoadBalancer Service to request through its external IP (repeatable)")
    parser.add_argument("--all", action="store_true",
                        help="also every Ingress and every LoadBalancer Service with a TCP port 80 (found each round)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S")
    args = parser.parse_args(argv)
    targets = [parse_target("ingress", s) for s in args.ingress] + [parse_target("service", s) for s in args.service]
    return wait(args.lab, args.kubeconfig, None if args.all and not targets else targets, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
