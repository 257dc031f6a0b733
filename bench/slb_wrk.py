"""Benchmark: wrk through an SLB http listener to two nginx backends vs wrk straight to one backend, same run.

Topology (one lab of this run, removed in ``finally``): a VPC with one vSwitch, two ECS running nginx
(``return 200``), one client ECS running wrk, and an intranet SLB (HAProxy in its namespace) with an http
listener (wrr, equal weights, health check every 1 s, thresholds 2/2, timeout 1 s) in front of both nginx.

Measured, alternating SLB-first and direct-first over ``--repeats`` rounds, medians reported:
- requests/s of wrk (``-t2 -c<connections> -d<seconds>``) to the SLB's address and straight to one nginx;
  the ratio SLB / direct (an extra proxy hop on a 2-core machine shared by wrk, HAProxy and nginx);
- failover: one nginx is killed (SIGKILL, every process of it); the time until HAProxy marks it abnormal
  (bound: interval x unhealthy_threshold + timeout), whether any request failed once it was marked, and the
  time until it is normal again after nginx restarts (bound: interval x (healthy_threshold + 1)).

Writes ``reports/bench/slb.json`` and ``reports/bench/slb.md``.

    python -m bench.slb_wrk [--repeats 3] [--seconds 5] [--connections 50]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netns.kernel.namespace import Namespace
from netns.model import slb as model
from netns.realize import slb as realize
from netns.realize.cleanup import clean_lab
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch

PROJECT = Path(__file__).resolve().parents[1]
REPORT_DIR = PROJECT / "reports" / "bench"
LB = "lb-0000be01"
VIP = "192.168.1.100"
BACKENDS = {"web-1": "192.168.1.11", "web-2": "192.168.1.12"}
INTERVAL, TIMEOUT, HEALTHY, UNHEALTHY = 1, 1, 2, 2

NGINX_CONF = """
worker_processes 1;
daemon on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000;
    server {{
        listen 8080;
        location / {{ return 200 "{name}\\n"; }}
    }}
}}
"""


class Nginx:
    def __init__(self, netns: str, name: str, folder: Path) -> None:
        self.netns, self.name, self.prefix = netns, name, folder / name
        self.prefix.mkdir(parents=True, exist_ok=True)
        (self.prefix / "nginx.conf").write_text(NGINX_CONF.format(prefix=self.prefix, name=name))

    def start(self) -> None:
        subprocess.run(["ip", "netns", "exec", self.netns, "nginx", "-c", str(self.prefix / "nginx.conf"),
                        "-p", str(self.prefix)], check=True, capture_output=True, timeout=30)

    def kill(self) -> None:
        """A crash: SIGKILL every process of this nginx (all of the namespace's processes are nginx)."""
        for pid in Namespace(self.netns).pids():
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while Namespace(self.netns).pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        (self.prefix / "nginx.pid").unlink(missing_ok=True)


def build(lab: str, folder: Path) -> tuple[realize.SlbInstance, dict[str, Nginx], str]:
    router = VpcRouter(lab, "vpc-0000be01")
    router.create(ipaddress.IPv4Network("192.168.0.0/16"))
    vswitch = VSwitch(router, "vsw-0000be01")
    vswitch.create(ipaddress.IPv4Network("192.168.1.0/24"), "cn-hangzhou-h", "bench vsw")
    servers = {}
    refs = []
    for n, (name, ip) in enumerate(BACKENDS.items(), 1):
        instance = EcsInstance(lab, f"i-0000be0{n}", f"eni-0000be0{n}")
        instance.create(vswitch, ip, f"bench {name}", name)
        servers[name] = Nginx(instance.namespace.name, name, folder)
        servers[name].start()
        refs.append(model.BackendRef(instance.instance_id, 100))
    client = EcsInstance(lab, "i-0000be09", "eni-0000be09")
    client.create(vswitch, "192.168.1.21", "bench client", "client")
    lb = realize.SlbInstance(lab, LB)
    lb.create("intranet", vswitch, VIP, "bench slb", "bench")
    realize.put_backend_servers(lab, LB, tuple(refs), "bench backends")
    args = {"frontend_port": 80, "protocol": "http", "backend_port": 8080, "health_check_interval": INTERVAL,
            "health_check_timeout": TIMEOUT, "healthy_threshold": HEALTHY, "unhealthy_threshold": UNHEALTHY,
            "x_forwarded_for": "off"}
    realize.put_listener(lab, model.parse_listener("bench listener", LB, args), args, "bench listener")
    return lb, servers, client.namespace.name


def wrk(client: str, url: str, seconds: int, connections: int) -> float:
    out = subprocess.run(["ip", "netns", "exec", client, "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url],
                         check=True, capture_output=True, text=True, timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    return float(match[1])


def status_of(lb: realize.SlbInstance, server_id: str) -> str | None:
    for row in lb.backend_health().get(f"{LB}:http:80", []):
        if row["server_id"] == server_id:
            return row["status"]
    return None


def http_ok(client: str) -> bool:
    result = Namespace(client).run(["python3", "-c", "import urllib.request,sys;"
                                    f"urllib.request.urlopen('http://{VIP}/', timeout=2).read()"], check=False)
    return result.returncode == 0


def failover(lb: realize.SlbInstance, victim: Nginx, client: str) -> dict[str, object]:
    wait(lambda: status_of(lb, "i-0000be01") == "normal", 10)
    killed = time.monotonic()
    victim.kill()
    wait(lambda: status_of(lb, "i-0000be01") == "abnormal", 3 * (INTERVAL * UNHEALTHY + TIMEOUT))
    detected = time.monotonic() - killed
    failures = sum(not http_ok(client) for _ in range(20))  # every one of these arrives after the mark
    restarted = time.monotonic()
    victim.start()
    wait(lambda: status_of(lb, "i-0000be01") == "normal", 3 * INTERVAL * (HEALTHY + 1))
    return {"detect_s": round(detected, 3), "recover_s": round(time.monotonic() - restarted, 3),
            "failed_requests_after_mark": failures}


def wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise RuntimeError(f"timed out after {timeout}s")


def markdown(report: dict) -> str:
    r = report["results"]
    f = report["failover"]
    return "\n".join([
        "# SLB benchmark (wrk through HAProxy vs straight to nginx)", "",
        f"{report['date']}, commit {report['commit']}, {report['cpus']} CPUs, kernel {report['kernel']}; "
        f"wrk -t2 -c{report['connections']} -d{report['seconds']}s, {report['repeats']} rounds, medians.", "",
        "| path | requests/s (median) | rounds |", "|---|---|---|",
        f"| client → SLB (http listener, wrr) → 2 nginx | {r['slb_rps']:.0f} | "
        f"{', '.join(f'{x:.0f}' for x in r['slb_rounds'])} |",
        f"| client → 1 nginx directly | {r['direct_rps']:.0f} | "
        f"{', '.join(f'{x:.0f}' for x in r['direct_rounds'])} |", "",
        f"Ratio SLB / direct: **{r['ratio']:.2f}**.", "",
        f"Failover (health check every {INTERVAL} s, timeout {TIMEOUT} s, unhealthy after {UNHEALTHY}, healthy "
        f"after {HEALTHY}; bound to mark down {f['bound_detect_s']} s):", "",
        "| round | killed → marked abnormal (s) | requests failed after the mark | restarted → normal (s) |",
        "|---|---|---|---|",
        *[f"| {n} | {x['detect_s']} | {x['failed_requests_after_mark']} / 20 | {x['recover_s']} |"
          for n, x in enumerate(f["rounds"], 1)],
        "", f"Median detection {f['detect_s']} s, median recovery {f['recover_s']} s.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args(argv)
    lab = "b" + secrets.token_hex(5)
    slb_rounds: list[float] = []
    direct_rounds: list[float] = []
    rounds = []
    with tempfile.TemporaryDirectory(prefix="acklab-bench-slb-") as folder:
        try:
            lb, servers, client = build(lab, Path(folder))
            wait(lambda: {status_of(lb, f"i-0000be0{n}") for n in (1, 2)} == {"normal"}, 10)
            for n in range(args.repeats):
                order = ("slb", "direct") if n % 2 == 0 else ("direct", "slb")
                for path in order:
                    url = f"http://{VIP}/" if path == "slb" else f"http://{BACKENDS['web-1']}:8080/"
                    (slb_rounds if path == "slb" else direct_rounds).append(
                        wrk(client, url, args.seconds, args.connections))
                    print(f"  round {n + 1}/{args.repeats} {path}: "
                          f"{(slb_rounds if path == 'slb' else direct_rounds)[-1]:.0f} req/s", flush=True)
            for _ in range(args.repeats):
                rounds.append(failover(lb, servers["web-1"], client))
        finally:
            clean_lab(lab)
    slb_rps, direct_rps = statistics.median(slb_rounds), statistics.median(direct_rounds)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True,
                                 text=True).stdout.strip(),
        "cpus": os.cpu_count(), "kernel": os.uname().release, "repeats": args.repeats, "seconds": args.seconds,
        "connections": args.connections,
        "results": {"slb_rps": slb_rps, "direct_rps": direct_rps, "ratio": round(slb_rps / direct_rps, 3),
                    "slb_rounds": slb_rounds, "direct_rounds": direct_rounds},
        "failover": {"rounds": rounds, "bound_detect_s": INTERVAL * UNHEALTHY + TIMEOUT,
                     "detect_s": statistics.median(r["detect_s"] for r in rounds),
                     "recover_s": statistics.median(r["recover_s"] for r in rounds)},
    }
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "slb.json").write_text(json.dumps(report, indent=2) + "\n")
    (REPORT_DIR / "slb.md").write_text(markdown(report))
    print(markdown(report))
    failed = any(r["failed_requests_after_mark"] for r in rounds) or \
        any(r["detect_s"] > INTERVAL * UNHEALTHY + TIMEOUT + 0.5 for r in rounds)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
