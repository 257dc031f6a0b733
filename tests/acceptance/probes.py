"""Probes run through a testinfra host (so in its namespace), answering like agnhost netexec's clients do.

HTTP with curl; UDP and plain TCP greetings with a Python one-liner (the host's interpreter: the backend enters
the network namespace only). Each returns the answer, or None when nothing answered in time.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import testinfra

from tests.acceptance.harness import LabUnderTest

PYTHON = sys.executable
UDP_CLIENT = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(float(sys.argv[4]));"
              " s.sendto(sys.argv[3].encode(),(sys.argv[1],int(sys.argv[2]))); print(s.recvfrom(2048)[0].decode())")
TCP_CLIENT = ("import socket,sys; c=socket.create_connection((sys.argv[1],int(sys.argv[2])),"
              "timeout=float(sys.argv[3])); print(c.recv(100).decode().strip())")

# What the demo pods serve (labs/default/k8s/demo.yaml): web pods HTTP on 8080 and UDP on 8081, clients HTTP only.
HTTP_PORT, UDP_PORT = 8080, 8081
# What the tests serve on ECS (tests' own responders; the default lab's group on ecs-3 admits pods to these).
ECS_TCP_PORT, ECS_UDP_PORT = 80, 53


def http(host: testinfra.host.Host, address: str, port: int, path: str, timeout: float = 3.0) -> str | None:
    result = host.run("curl -sf --connect-timeout %s --max-time %s http://%s:%s%s", str(min(timeout, 2.0)),
                      str(timeout), address, str(port), path)
    return result.stdout if result.rc == 0 else None


def udp(host: testinfra.host.Host, address: str, port: int, message: str = "hostname",
        timeout: float = 2.0) -> str | None:
    result = host.run("%s -c %s %s %s %s %s", PYTHON, UDP_CLIENT, address, str(port), message, str(timeout))
    return result.stdout.strip() if result.rc == 0 else None


def tcp_greeting(host: testinfra.host.Host, address: str, port: int, timeout: float = 2.0) -> str | None:
    """The first line a TCP server sends (the tests' responders send ``hello <client ip>``)."""
    result = host.run("%s -c %s %s %s %s", PYTHON, TCP_CLIENT, address, str(port), str(timeout))
    return result.stdout.strip() if result.rc == 0 else None


def ask(host: testinfra.host.Host, protocol: str, address: str, what: str = "hostname",
        timeout: float = 2.0) -> str | None:
    """netexec's answer over HTTP (TCP, ``/what``) or UDP (``what``) from a pod's declared ports. Positive probes
    keep the generous default (the machine is shared); negative ones pass a short timeout."""
    if protocol == "tcp":
        return http(host, address, HTTP_PORT, f"/{what}", timeout=timeout)
    return udp(host, address, UDP_PORT, what, timeout=timeout)


def greet(host: testinfra.host.Host, protocol: str, address: str, timeout: float = 2.0) -> str | None:
    """The tests' responder's greeting on an ECS (``hello <client ip>``), over TCP or UDP."""
    if protocol == "tcp":
        return tcp_greeting(host, address, ECS_TCP_PORT, timeout)
    return udp(host, address, ECS_UDP_PORT, "hello", timeout)


@contextmanager
def rule_absent(lab: LabUnderTest, sg_id: str, protocol: str, port: int, cidr: str):
    """The security-group rule admitting ``protocol``/``port`` from ``cidr`` taken away, and given back after.

    A rule that is already gone (the harness self-test removes one) is simply absent."""
    try:
        rule = lab.rule(sg_id, protocol, port, cidr)
    except LookupError:
        yield
        return
    lab.revoke(sg_id, rule)
    try:
        yield
    finally:
        lab.restore(sg_id, rule)
