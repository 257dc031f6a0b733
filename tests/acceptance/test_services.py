"""The matrix's Service and Ingress rows: pod → Service, node ECS → Service, internet client → SLB → NodePort → pod,
internet client → SLB → Ingress → pod (host and path rules, TLS). Written against `acklab status --json`'s
``services`` (namespace, name, cluster_ip, ports [{name, port, protocol, node_port}], load_balancer address);
the Ingress rows are skipped until Ingress (issue 7) is in the default lab.

From labs/default/k8s: Service ``demo/web`` selecting the web pods, ports ``http`` (TCP 80 → 8080) and ``udp``
(UDP 81 → 8081); ``demo/web-public``, type LoadBalancer (an internet SLB) on TCP 80. Assumed: an ingress-nginx
controller Service of type LoadBalancer, and an Ingress routing ``web.demo.test`` (path ``/``) and ``demo.test`` path
``/web`` to it, with TLS for ``web.demo.test``.
"""

from __future__ import annotations

import pytest

from tests.acceptance import probes
from tests.acceptance.harness import LabUnderTest

pytestmark = [pytest.mark.e2e, pytest.mark.acceptance]
needs_ingress = pytest.mark.skip(reason="needs Ingress (issue 7)")

PROTOCOLS = ["tcp", "udp"]
TRIES = 12  # enough requests that iptables' random spread hits more than one of 3 endpoints (p(miss) ≈ 3·(1/3)^11)
INGRESS_HOST, INGRESS_PATH_HOST, INGRESS_PATH = "web.demo.test", "demo.test", "/web"


def service(lab: LabUnderTest, namespace: str, name: str) -> dict:
    found = [s for s in lab.services() if (s["namespace"], s["name"]) == (namespace, name)]
    assert found, f"no Service {namespace}/{name} in `acklab status --json`"
    return found[0]


def port_of(svc: dict, protocol: str) -> dict:
    return next(p for p in svc["ports"] if p["protocol"].lower() == protocol)


def ask_service(host, protocol: str, address: str, port: int, what: str = "hostname") -> str | None:
    if protocol == "tcp":
        return probes.http(host, address, port, f"/{what}")
    return probes.udp(host, address, port, what)


def web_names(lab: LabUnderTest) -> set[str]:
    return {p["name"] for p in lab.pods(app="web")}


def ingress_controller(lab: LabUnderTest) -> dict:
    found = [s for s in lab.services() if "ingress" in s["name"] and s.get("load_balancer")]
    assert found, "no ingress controller Service of type LoadBalancer"
    return found[0]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pod_to_service(lab_up, host_of, protocol):
    svc = service(lab_up, "demo", "web")
    port = port_of(svc, protocol)["port"]
    answers = {ask_service(host_of("demo/client-1"), protocol, svc["cluster_ip"], port) for _ in range(TRIES)}
    assert answers <= web_names(lab_up) and len(answers) >= 2  # spread over the endpoints
    assert ask_service(host_of("demo/client-1"), protocol, svc["cluster_ip"], 9) is None  # no such Service port


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_node_to_service(lab_up, host_of, protocol):
    svc = service(lab_up, "demo", "web")
    port = port_of(svc, protocol)["port"]
    answers = {ask_service(host_of("ecs-1"), protocol, svc["cluster_ip"], port) for _ in range(TRIES)}
    assert answers <= web_names(lab_up) and len(answers) >= 2


def test_internet_to_slb_nodeport_to_pod(lab_up, host_of):
    svc = service(lab_up, "demo", "web-public")
    address, port = svc["load_balancer"], port_of(svc, "tcp")["port"]
    client = host_of(f"acklab-{lab_up.name}-internet")
    answers = {probes.http(client, address, port, "/hostname") for _ in range(TRIES)}
    assert answers <= web_names(lab_up) and len(answers) >= 2
    assert not client.addr(lab_up.ecs("ecs-1")["private_ip"]).is_reachable  # nodes only through the SLB


@needs_ingress
def test_internet_to_slb_ingress_host_rule(lab_up, host_of):
    lb = ingress_controller(lab_up)["load_balancer"]
    client = host_of(f"acklab-{lab_up.name}-internet")
    answer = client.run("curl -sf --max-time 2 --resolve %s:80:%s http://%s/hostname", INGRESS_HOST, lb,
                        INGRESS_HOST)
    assert answer.rc == 0 and answer.stdout in web_names(lab_up)
    unknown = client.run("curl -s -o /dev/null -w %%{http_code} --max-time 2 --resolve nope.test:80:%s "
                         "http://nope.test/hostname", lb)
    assert unknown.stdout == "404"  # no rule for that host: nginx's default backend


@needs_ingress
def test_internet_to_slb_ingress_path_rule(lab_up, host_of):
    lb = ingress_controller(lab_up)["load_balancer"]
    client = host_of(f"acklab-{lab_up.name}-internet")
    answer = client.run("curl -sf --max-time 2 --resolve %s:80:%s http://%s%s/hostname", INGRESS_PATH_HOST, lb,
                        INGRESS_PATH_HOST, INGRESS_PATH)
    assert answer.rc == 0 and answer.stdout in web_names(lab_up)
    other = client.run("curl -s -o /dev/null -w %%{http_code} --max-time 2 --resolve %s:80:%s http://%s/other",
                       INGRESS_PATH_HOST, lb, INGRESS_PATH_HOST)
    assert other.stdout == "404"


@needs_ingress
def test_internet_to_slb_ingress_tls(lab_up, host_of):
    lb = ingress_controller(lab_up)["load_balancer"]
    client = host_of(f"acklab-{lab_up.name}-internet")
    answer = client.run("curl -skf --max-time 2 --resolve %s:443:%s https://%s/hostname", INGRESS_HOST, lb,
                        INGRESS_HOST)
    assert answer.rc == 0 and answer.stdout in web_names(lab_up)
    subject = client.run("echo | openssl s_client -connect %s:443 -servername %s 2>/dev/null | openssl x509 "
                         "-noout -subject", lb, INGRESS_HOST)
    assert INGRESS_HOST in subject.stdout  # the Ingress's certificate, not nginx's fake default one
