"""SLB through the real Pulumi engine and the SDK: up, traffic, status, idempotence, refresh, destroy; bad input
stops early."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark, netns_name
from tests.e2e.test_pulumi_up import Stack, temp_project
from tests.labtools import ProbeServer, env_with_venv, wait_for
from tests.slbtools import HttpBackend, backend_of, http_get, mint_certificate

pytestmark = pytest.mark.e2e

VIP = "192.168.1.100"

PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud
from pulumi_alicloud import ecs, slb, vpc

IMAGE = "ubuntu_22_04_x64_20G_alibase_20240130.vhd"
network = vpc.Network("vpc", cidr_block="192.168.0.0/16")
vsw = vpc.Switch("vsw", vpc_id=network.id, cidr_block="192.168.1.0/24", zone_id="cn-hangzhou-h")
web = {n: ecs.Instance(n, vswitch_id=vsw.id, private_ip=ip, instance_type="ecs.g7.large", image_id=IMAGE)
       for n, ip in (("web-1", "192.168.1.11"), ("web-2", "192.168.1.12"))}
client = ecs.Instance("client", vswitch_id=vsw.id, private_ip="192.168.1.21", instance_type="ecs.g7.large",
                      image_id=IMAGE)
other = ecs.Instance("other", vswitch_id=vsw.id, private_ip="192.168.1.22", instance_type="ecs.g7.large",
                     image_id=IMAGE)

lb = slb.ApplicationLoadBalancer("lb", load_balancer_name="web", address_type="intranet", vswitch_id=vsw.id,
                                 address="192.168.1.100", load_balancer_spec="slb.s2.small")
slb.BackendServer("lb-backends", load_balancer_id=lb.id,
                  backend_servers=[{"server_id": web["web-1"].id, "weight": 100},
                                   {"server_id": web["web-2"].id, "weight": 100}])
slb.Listener("tcp-80", load_balancer_id=lb.id, frontend_port=80, protocol="tcp", backend_port=80,
             health_check_interval=1, healthy_threshold=2, unhealthy_threshold=2)

clients = slb.Acl("clients", name="clients")
slb.AclEntryAttachment("client-only", acl_id=clients.id, entry="192.168.1.21/32", comment="the client ECS")
group = slb.ServerGroup("http", load_balancer_id=lb.id, name="http")
slb.ServerGroupServerAttachment("http-web-1", server_group_id=group.id, server_id=web["web-1"].id, port=8080,
                                weight=100)
cert = slb.ServerCertificate("cert", name="web", server_certificate=open("cert.pem").read(),
                             private_key=open("key.pem").read())
slb.Listener("https-443", load_balancer_id=lb.id, frontend_port=443, protocol="https", server_group_id=group.id,
             server_certificate_id=cert.id, acl_status="on", acl_type="white", acl_id=clients.id,
             health_check_interval=1, healthy_threshold=2)

public = slb.ApplicationLoadBalancer("public", load_balancer_name="public", address_type="internet")
slb.BackendServer("public-backends", load_balancer_id=public.id,
                  backend_servers=[{"server_id": web["web-2"].id, "weight": 100}])
slb.Listener("public-80", load_balancer_id=public.id, frontend_port=80, protocol="tcp", backend_port=80)

pulumi.export("lb", {"id": lb.id, "address": lb.address})
pulumi.export("public", {"id": public.id, "address": public.address})
pulumi.export("instances", {n: i.id for n, i in {**web, "client": client, "other": other}.items()})
"""


def status(lab: str) -> dict:
    out = subprocess.run([str(Path(sys.executable).parent / "acklab"), "status", "--lab", lab, "--json"],
                         env=env_with_venv(), capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def backend_states(lab: str, listener_id: str) -> dict[str, str]:
    for lb in status(lab)["slbs"]:
        for listener in lb["listeners"]:
            if listener["id"] == listener_id:
                return {b["server_id"]: b["status"] for b in listener["backends"]}
    return {}


@pytest.fixture
def slb_stack(lab, tmp_path):
    project = temp_project(tmp_path, PROGRAM)
    ca, cert, key = mint_certificate(VIP)
    (project / "cert.pem").write_text(cert)
    (project / "key.pem").write_text(key)
    (tmp_path / "ca.pem").write_text(ca)
    stack = Stack(project, lab, tmp_path)
    stack.init()
    yield stack
    stack.run("destroy", "--yes", check=False)


def test_slb_up_serves_reports_health_is_idempotent_and_destroys(slb_stack, lab, tmp_path, root_unchanged):
    slb_stack.run("up", "--yes")
    out = slb_stack.outputs()
    assert out["lb"]["address"] == VIP and Namespace(netns_name(lab, out["lb"]["id"])).exists()
    ns = {name: netns_name(lab, instance_id) for name, instance_id in out["instances"].items()}
    with ProbeServer(ns["web-1"], tcp=(80,), udp=()), ProbeServer(ns["web-2"], tcp=(80,), udp=()), \
            HttpBackend(ns["web-1"], "web-1"):
        lb_id, public_id = out["lb"]["id"], out["public"]["id"]
        wait_for(lambda: set(backend_states(lab, f"{lb_id}:tcp:80").values()) == {"normal"}
                 and len(backend_states(lab, f"{lb_id}:tcp:80")) == 2, "both backends normal in acklab status")
        greetings = {_greeting(ns["client"], VIP, 80) for _ in range(4)}
        # a tcp listener forwards in the kernel: the backend sees the client itself
        assert greetings == {"hello 192.168.1.21"}
        trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        wait_for(lambda: backend_of(http_get(ns["client"], VIP, 443, tls=trusted)) == "web-1", "https via the SLB")
        assert http_get(ns["other"], VIP, 443, tls=trusted) is None  # not on the whitelist
        public = out["public"]["address"]
        internet = f"{mark(lab)}internet"
        # default health checks (2 s, healthy after 3): the backend started after `up` is back within ~6 s
        wait_for(lambda: _greeting(internet, public, 80) == "hello 203.0.113.1",
                 "the internet SLB to forward the internet client's own address", timeout=20)
        assert {lb["id"]: lb["address"] for lb in status(lab)["slbs"]} == {lb_id: VIP, public_id: public}

    slb_stack.run("up", "--yes", "--expect-no-changes")
    slb_stack.run("refresh", "--yes", "--expect-no-changes")

    pids = [pid for n in list_namespaces(mark(lab) + "lb-") for pid in n.pids()]
    assert len(pids) >= 4  # HAProxy's master and worker (https), a health checker per SLB (tcp)
    slb_stack.run("destroy", "--yes")
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), "HAProxy and the checkers to end")
    assert list_namespaces(mark(lab)) == []


def _greeting(netns: str, address: str, port: int) -> str | None:
    s = Namespace(netns).socket()
    s.settimeout(2)
    try:
        s.connect((address, port))
        return s.recv(100).decode().strip()
    except OSError:
        return None
    finally:
        s.close()


BAD_BASE = """
from pulumi_alicloud import ecs, slb, vpc
network = vpc.Network("vpc", cidr_block="192.168.0.0/16")
vsw = vpc.Switch("vsw", vpc_id=network.id, cidr_block="192.168.1.0/24", zone_id="cn-hangzhou-h")
web = ecs.Instance("web", vswitch_id=vsw.id, private_ip="192.168.1.11", instance_type="ecs.g7.large",
                   image_id="ubuntu_22_04_x64_20G_alibase_20240130.vhd")
lb = slb.ApplicationLoadBalancer("lb", address_type="intranet", vswitch_id=vsw.id)
"""
MADE = {"vpc", "i", "lb"}  # a check that needs another resource's value fails at create: what came before is made


@pytest.mark.parametrize(("program", "message", "made"), [
    ('a = slb.Listener("a", load_balancer_id=lb.id, frontend_port=80, protocol="tcp", backend_port=80)\n'
     'slb.Listener("b", load_balancer_id=lb.id, frontend_port=80, protocol="http", backend_port=80, '
     'opts=pulumi.ResourceOptions(depends_on=[a]))',
     "slb.Listener 'b': frontend_port: 80 is already used by", MADE),
    ('slb.Listener("s", load_balancer_id=lb.id, frontend_port=443, protocol="https", backend_port=80)',
     "server_certificate_id: an https listener needs a server certificate", set()),
    ('slb.Listener("p", load_balancer_id=lb.id, frontend_port=70000, protocol="tcp", backend_port=80)',
     "frontend_port: 70000 is not an integer from 1 to 65535", set()),
    ('slb.BackendServer("b", load_balancer_id=lb.id, backend_servers=[{"server_id": "i-0000dead"}])',
     "server_id: i-0000dead is not an ECS instance or ENI", MADE),
    ('slb.BackendServer("w", load_balancer_id=lb.id, backend_servers=[{"server_id": web.id, "weight": 101}])',
     "weight: 101 is not an integer from 0 to 100", set()),
], ids=["port-clash", "https-without-certificate", "port-out-of-range", "unknown-server", "weight"])
def test_bad_slb_input_is_one_clear_error_and_nothing_is_half_made(lab, tmp_path, program, message, made):
    stack = Stack(temp_project(tmp_path, "import pulumi\n" + BAD_BASE + program), lab, tmp_path)
    stack.init()
    try:
        result = stack.run("up", "--yes", check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert message in output, output[-2000:]
        kinds = {ns.name.removeprefix(mark(lab)).split("-")[0] for ns in list_namespaces(mark(lab))}
        assert kinds <= made, kinds  # own inputs: refused at preview, nothing made
    finally:
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
