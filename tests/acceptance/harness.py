"""The acceptance harness: a lab brought up like `make up` does it, testinfra hosts in its namespaces, probes.

- ``LabUnderTest.up`` runs `make up`'s script (scripts/up.sh) on the default lab's program (`__main__.py`) under a
  stack of its own (a unique lab name, a private file backend, so it runs beside `make up`'s default lab and other
  tests' labs), with the default lab's manifests: `pulumi up`, `cluster.yml`, `kubectl apply`, the waits; right
  after it returns it sends one request through each SLB listener (``first_requests``). ``down`` runs `make down`'s
  script (scripts/down.sh), removes the stack and whatever is left of the lab.
- ``NetnsBackend`` is a testinfra backend that runs each command under ``nsenter --net=/run/netns/NAME``
  (the network namespace only: the host's files and tools stay visible), so tests use testinfra's modules
  (``host.run``, ``host.addr``, ``host.socket``, ``host.interface``) in an ECS, a node or a pod.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import testinfra
import yaml
from testinfra.backend import base

from netns.kernel.namespace import list_namespaces
from netns.model.names import mark
from netns.model.security_group import Rule
from netns.realize import security_group as sg
from tests.e2e.test_pulumi_up import PROJECT, Stack, temp_project
from tests.labtools import clean_lab

# Set to the name of a lab that is already up (e.g. by an enclosing test run) to test it instead of making one.
LAB_ENV = "ACKLAB_ACCEPTANCE_LAB"
ACKLAB = str(Path(sys.executable).parent / "acklab")


class NetnsBackend(base.BaseBackend):
    """testinfra backend: commands run as root in a network namespace of the host (``netns://NAME``)."""

    NAME = "netns"

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.name = name
        super().__init__(name, *args, **kwargs)

    def get_pytest_id(self) -> str:
        return f"netns://{self.name}"

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        cmd = self.get_command(command, *args)
        out = self.run_local("nsenter --net=/run/netns/%s /bin/sh -c %s", self.name, cmd)
        out.command = self.encode(cmd)
        return out


def netns_host(netns: str) -> testinfra.host.Host:
    if not os.path.exists(f"/run/netns/{netns}"):
        raise LookupError(f"no network namespace {netns}")
    backend = NetnsBackend(netns)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


TLS_HOST = "secure.acklab.test"  # the acceptance Ingress's TLS host (only path: Exact /hostname)


@dataclass
class LabUnderTest:
    """A lab that is up: its `acklab status --json` view and testinfra hosts by ECS name or ``ns/pod``."""

    name: str
    stack: Stack | None = None  # None: the lab was brought up by someone else, who also takes it down
    status: dict = field(default_factory=dict)
    ca_file: Path | None = None  # the CA that signed the acceptance Ingress's certificate (labs this harness made)
    wait_output: str = ""  # what `acklab wait` said (how long the wait took)
    # one request through each SLB listener, right after `acklab wait` returned: "name proto:port" → HTTP status
    first_requests: dict[str, str] = field(default_factory=dict)

    @classmethod
    def up(cls, lab: str, workdir: Path) -> LabUnderTest:
        stack = Stack(temp_project(workdir, (PROJECT / "__main__.py").read_text()), lab, workdir)
        made = cls(lab, stack)
        try:
            stack.init()
            made.make_up(made.manifests(workdir))  # ends with make up's waits
            made.refresh()  # the SLBs and their listeners
            made.first_requests = made.request_each_slb()  # right after make up, before any test: no retry, no wait
            made.refresh()  # what the tests read: the lab as it serves
        except BaseException:
            made.down()
            raise
        return made

    def manifests(self, workdir: Path) -> Path:
        """The default lab's manifests plus an Ingress with TLS for ``TLS_HOST``: its Secret holds a certificate
        from a CA minted for this session (the clients trust ``ca_file``)."""
        from acklab.k8s import certs

        folder = workdir / "k8s"
        shutil.copytree(PROJECT / "labs" / "default" / "k8s", folder)
        ca = certs.mint_ca("acklab acceptance CA")
        cert, key = certs.mint_certificate(ca, [TLS_HOST])
        self.ca_file = workdir / "ca.pem"
        self.ca_file.write_text(ca.cert_pem)
        ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                   "metadata": {"name": "secure", "namespace": "demo"},
                   "spec": {"ingressClassName": "nginx", "tls": [{"hosts": [TLS_HOST], "secretName": "secure-tls"}],
                            "rules": [{"host": TLS_HOST, "http": {"paths": [
                                {"path": "/hostname", "pathType": "Exact",
                                 "backend": {"service": {"name": "web-ingress", "port": {"name": "http"}}}}]}}]}}
        docs = [certs.tls_secret("demo", "secure-tls", cert, key), ingress]
        # named to sort after demo.yaml: `kubectl apply -f <folder>` goes file by file, and demo.yaml makes "demo"
        (folder / "secure-ingress.yaml").write_text(yaml.safe_dump_all(docs))
        return folder

    @classmethod
    def existing(cls, lab: str) -> LabUnderTest:
        made = cls(lab)
        made.refresh()
        return made

    def down(self) -> None:
        if self.stack is None:
            return
        try:
            self.script("down.sh")
            self.stack.run("stack", "rm", "--yes", "--force", check=False)
        finally:
            clean_lab(self.name)
            shutil.rmtree(self.stack.project, ignore_errors=True)

    def refresh(self) -> None:
        result = subprocess.run([ACKLAB, "status", "--lab", self.name, "--json"], capture_output=True, text=True,
                                check=True, timeout=60)
        self.status = json.loads(result.stdout)

    def script(self, name: str, **env: str) -> subprocess.CompletedProcess[str]:
        """scripts/``name`` (up.sh, down.sh) on this lab, in the stack's project, as `make up`/`make down` run it."""
        assert self.stack is not None
        return subprocess.run([str(PROJECT / "scripts" / name), self.name], cwd=self.stack.project,
                              env={**self.stack.env, **env}, capture_output=True, text=True, check=False, timeout=900)

    def make_up(self, manifests: Path) -> None:
        """`make up` with the given manifests: it returns once the cluster serves (Nodes and pods Ready, every
        Ingress and LoadBalancer Service answering from the lab's internet) and `acklab wait` saw every SLB listener
        with a healthy backend and every pod answering (a backend counts as up after the listener's rise count of
        successful health checks)."""
        result = self.script("up.sh", ACKLAB_MANIFESTS=str(manifests))
        assert result.returncode == 0, f"make up failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n" \
                                       f"{result.stderr[-3000:]}"
        self.wait_output = next(line for line in reversed(result.stdout.splitlines())
                                if line.startswith(f"lab {self.name} ready after"))

    def request_each_slb(self) -> dict[str, str]:
        """One request through every listener of every SLB (HTTP status, ``000``: no answer), from the lab's
        internet for internet SLBs and from an ECS of the SLB's VPC for intranet ones. Port 443 asks the
        harness's TLS host with its CA (the Ingress's catch-all server refuses TLS without a known name).
        Uses the status as last read (``refresh``)."""
        statuses = {}
        for lb in self.status["slbs"]:
            client = self.host(self.slb_client(lb))
            for listener in lb["listeners"]:
                port = listener["frontend_port"]
                if port == 443 and self.ca_file is not None:
                    url = f"https://{TLS_HOST}/hostname"
                    args = f"--resolve {TLS_HOST}:443:{lb['address']} --cacert {self.ca_file}"
                else:
                    url, args = f"http://{lb['address']}:{port}/hostname", ""
                answer = client.run(f"curl -s -o /dev/null --max-time 3 -w '%{{http_code}}' {args} {url}")
                statuses[f"{lb['name']} {listener['protocol']}:{port}"] = answer.stdout.strip() or "000"
        return statuses

    def slb_client(self, lb: dict) -> str:
        """Where a client of the SLB is: the lab's internet, or (intranet) the first ECS in the SLB's VPC."""
        if lb["address_type"] == "internet":
            return f"acklab-{self.name}-internet"
        vswitches = {vsw["id"] for vpc in self.status["vpcs"] if vpc["id"] == lb["vpc_id"] for vsw in vpc["vswitches"]}
        return next(e["netns"] for e in self.status["ecs"] if e["vswitch_id"] in vswitches)

    # what the lab holds
    def ecs(self, name: str) -> dict:
        return next(e for e in self.status["ecs"] if name in (e["name"], e["id"]))

    def pod(self, key: str) -> dict:
        return next(p for p in self.status["pods"] if f"{p['namespace']}/{p['name']}" == key)

    def pods(self, **labels: str) -> list[dict]:
        return [p for p in self.status["pods"] if all(p["labels"].get(k) == v for k, v in labels.items())]

    def services(self) -> list[dict]:
        return self.status.get("services", [])

    def host(self, target: str) -> testinfra.host.Host:
        """A testinfra host: an ECS (name or id), a pod (``namespace/name``) or a namespace name of the lab."""
        if target.startswith(mark(self.name)):
            return netns_host(target)
        return netns_host(self.pod(target)["netns"] if "/" in target else self.ecs(target)["netns"])

    def namespaces(self) -> list[str]:
        return sorted(ns.name for ns in list_namespaces(mark(self.name)))

    # security-group rules, looked up as the program declares them (the ids are the provider's)
    def group_of(self, ecs: str) -> str:
        return self.ecs(ecs)["security_groups"][0]

    def pod_group(self) -> str:
        """The pods' ENIs' group: the one admitting SLBs (100.64.0.0/10), as the default program declares it."""
        return next(g["id"] for g in self.status["security_groups"]
                    if any(r["cidr"] == "100.64.0.0/10" for r in g["rules"]))

    def rule(self, sg_id: str, protocol: str, port: int, cidr: str) -> Rule:
        group = sg.load_group(self.name, sg_id)
        assert group is not None, f"no security group {sg_id} in lab {self.name}"
        for rule in group.rules:
            if (rule.direction, rule.protocol, rule.cidr) == ("ingress", protocol, cidr) and rule.ports and \
                    rule.ports[0] <= port <= rule.ports[1]:
                return rule
        raise LookupError(f"{sg_id}: no ingress rule for {protocol} {port} from {cidr}")

    def revoke(self, sg_id: str, rule: Rule) -> None:
        """Take a rule away on the kernel (as if deleted in the console), behind the stack's back."""
        sg.remove_rule(self.name, sg_id, rule.rule_id)

    def restore(self, sg_id: str, rule: Rule) -> None:
        sg.add_rule(self.name, sg_id, rule)
