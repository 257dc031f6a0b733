"""The matrix's Service and Ingress rows: pod → Service, node ECS → Service, internet client → SLB → NodePort → pod,
internet client → SLB → Ingress → pod (host and path rules, TLS). Written against `acklab status --json`'s
``services`` (namespace, name, cluster_ip, ports [{name, port, protocol, node_port}], load_balancer address).

From labs/default/k8s: Service ``demo/web`` selecting the web pods, ports ``http`` (TCP 80 → 8080) and ``udp``
(UDP 81 → 8081); ``demo/web-public``, type LoadBalancer (an internet SLB) on TCP 80; the ingress-nginx controller
Service ``kube-system/nginx-ingress-lb`` (LoadBalancer) and the Ingress ``demo/web`` (host ``web.acklab.test``).
The harness adds the Ingress ``demo/secure``: TLS for ``secure.acklab.test`` with a certificate from a CA minted
for the session, one rule (Exact ``/hostname``).
"""

from __future__ import annotations

import pytest

from tests.acceptance import probes
from tests.acceptance.harness import TLS_HOST, LabUnderTest

pytestmark = [pytest.mark.e2e, pytest.mark.acceptance]

PROTOCOLS = ["tcp", "udp"]
TRIES = 12  # enough requests that iptables' random spread hits more than one of 3 endpoints (p(miss) ≈ 3·(1/3)^11)
INGRESS_HOST = "web.acklab.test"  # labs/default/k8s/ingress.yaml


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


def test_each_slb_answers_right_after_make_up(lab_up):
    """`make up` returns when the lab serves: the harness brought the lab up as `make up` does (its last step,
    `acklab wait`) and at once, before any test and without retrying, sent one request through every listener of
    every SLB from the lab's internet (harness ``request_each_slb``)."""
    if lab_up.stack is None:
        pytest.skip("the lab was not brought up by this harness: nothing was measured right after its bring-up")
    listeners = sum(len(lb["listeners"]) for lb in lab_up.status["slbs"])
    assert listeners >= 3 and len(lab_up.first_requests) == listeners, lab_up.first_requests  # 2 SLBs, 3 listeners
    failed = {name: status for name, status in lab_up.first_requests.items() if status != "200"}
    assert not failed, f"requests right after `acklab wait` ({lab_up.wait_output}) failed: {failed}"


def test_internet_to_slb_nodeport_to_pod(lab_up, host_of):
    svc = service(lab_up, "demo", "web-public")
    address, port = svc["load_balancer"], port_of(svc, "tcp")["port"]
    client = host_of(f"acklab-{lab_up.name}-internet")
    answers = {probes.http(client, address, port, "/hostname") for _ in range(TRIES)}
    assert answers <= web_names(lab_up) and len(answers) >= 2
    assert not client.addr(lab_up.ecs("ecs-1")["private_ip"]).is_reachable  # nodes only through the SLB


def ingress_get(lab: LabUnderTest, client, url: str, *curl: str) -> tuple[str, str]:
    """(HTTP status, body) of a request to the ingress SLB for ``url``'s host (resolved to the SLB's address);
    ``curl`` are extra curl arguments. Status ``000``: no HTTP answer (e.g. the certificate was refused)."""
    lb = ingress_controller(lab)["load_balancer"]
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    resolve = f"{host}:{443 if scheme == 'https' else 80}:{lb}"
    extra = " %s" * len(curl)
    answer = client.run("curl -s --max-time 3 -w '\\n%%{http_code}' --resolve %s" + extra + " %s", resolve, *curl, url)
    body, _, status = answer.stdout.rpartition("\n")
    return status, body


def test_internet_to_slb_ingress_host_rule(lab_up, host_of):
    client = host_of(f"acklab-{lab_up.name}-internet")
    assert ingress_get(lab_up, client, f"http://{INGRESS_HOST}/hostname")[1] in web_names(lab_up)
    # a TLS host answers plain HTTP with a permanent redirect to HTTPS
    status, _ = ingress_get(lab_up, client, f"http://{TLS_HOST}/hostname")
    assert status == "308"


def test_internet_to_slb_ingress_path_rule(lab_up, host_of):
    client = host_of(f"acklab-{lab_up.name}-internet")
    ca = ("--cacert", str(lab_up.ca_file))
    status, body = ingress_get(lab_up, client, f"https://{TLS_HOST}/hostname", *ca)
    assert status == "200" and body in web_names(lab_up)  # Exact /hostname → web
    assert ingress_get(lab_up, client, f"https://{TLS_HOST}/clientip", *ca)[0] == "404"  # no rule for that path


def test_internet_to_slb_ingress_tls(lab_up, host_of):
    client = host_of(f"acklab-{lab_up.name}-internet")
    if lab_up.ca_file is None:
        pytest.skip("the lab was not brought up by this harness: its TLS Ingress and CA are unknown")
    status, body = ingress_get(lab_up, client, f"https://{TLS_HOST}/hostname", "--cacert", str(lab_up.ca_file))
    assert status == "200" and body in web_names(lab_up)  # the client verified the Ingress's certificate
    assert ingress_get(lab_up, client, f"https://{TLS_HOST}/hostname")[0] == "000"  # not without the lab's CA
