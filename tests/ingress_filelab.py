"""The file-driven Ingress lab (moved here from tests/kernel/test_ingress.py, which now goes through the API):
manifests parsed with ``model.parse_documents``, ClusterIPs from ``acklab.k8s.apiserver``, kube-proxy's rules from
``kube_proxy_sync``, nginx configured by ``acklab.k8s.ingress_controller.sync`` and an internet SLB realized
directly. tests/kernel/test_ingress_annotations.py builds on it.

Two Terway nodes with two ingress-nginx controller pods (kube-system), backend pods a-d answering every path with
their name (HttpBackend on port 9000, undeclared: Services target it by number; their declared port "agent"
(8080) is the pod agent's netexec: /hostname, /header?key=), a Deployment web, an ECS in another vSwitch.
"""

from __future__ import annotations

import yaml

from acklab.k8s import apiserver
from acklab.k8s import ingress_controller as ctl
from acklab.k8s.certs import mint_ca, mint_certificate, tls_secret
from acklab.k8s.kube_proxy_sync import cluster_pods, sync_node
from acklab.k8s.model import parse_documents
from acklab.k8s.pods import load_records
from netns.model import slb as slb_model
from netns.model.security_group import parse_rule
from netns.realize import security_group as sg
from netns.realize import slb as slb_realize
from tests import k8stools as k
from tests.ingresstools import backend, docs_table_ingresses, ingress, ns, rule, service
from tests.labtools import wait_for
from tests.slbtools import HttpBackend

BACKENDS = ("a", "b", "c", "d")


def controller_deployment(replicas: int = 2) -> dict:
    labels = {"app": "ingress-nginx"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx-ingress-controller", "namespace": "kube-system"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                         "name": "nginx-ingress-controller",
                         "image": "registry.k8s.io/ingress-nginx/controller:v1.11.2",
                         "ports": [{"name": "http", "containerPort": 80},
                                   {"name": "https", "containerPort": 443}]}]}}}}


def web_deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                         "name": "netexec", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
                         "ports": [{"name": "http", "containerPort": 8080}]}]}}}}


def backend_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "demo",
                                                             "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "echo", "image": "echo",
                                                       "ports": [{"name": "agent", "containerPort": 8080}]}]}}


CONTROLLER_LB = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingress-lb", "namespace": "kube-system"},
                 "spec": {"type": "LoadBalancer", "selector": {"app": "ingress-nginx"},
                          "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                    {"name": "https", "port": 443, "targetPort": "https"}]}}
SLB_ID = "lb-0000e001"


def manifests(web_replicas: int, secret: dict, extra: tuple[dict, ...] = ()) -> list[dict]:
    docs = [ns("demo"), ns("kube-system"),
            {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
             "spec": {"controller": "k8s.io/ingress-nginx"}},
            controller_deployment(), web_deployment(web_replicas), secret, CONTROLLER_LB,
            service("web", [{"name": "http", "port": 80, "targetPort": "http"}], "172.21.0.10")]
    for i, (name, node) in enumerate(zip(BACKENDS, ("node-1", "node-2", "node-1", "node-2"), strict=True)):
        docs.append(backend_pod(name, node))
        docs.append(service(name, [{"name": "plain", "port": 80, "targetPort": 9000},
                                   {"name": "named", "port": 8000, "targetPort": "agent"}], f"172.21.0.{20 + i}"))
    docs += docs_table_ingresses()
    docs += [
        ingress("mixed", [rule("mixed.test", ("/foo", "Prefix", "a"), ("/foo", "Exact", "b"))]),
        ingress("hosts", [rule("*.wild.test", ("/", "Prefix", "a")), rule("x.wild.test", ("/", "Prefix", "b")),
                          rule("named.test", ("/", "Prefix", "a", "named")),
                          rule("spread.test", ("/", "Prefix", "web"))]),
        ingress("catch-all", default=backend("c")),
        ingress("other-class", [rule("other.test", ("/", "Prefix", "b"))], cls="alb"),
        ingress("secure", [rule("secure.test", ("/", "Prefix", "a"))],
                tls=[{"hosts": ["secure.test"], "secretName": "secure-tls"}]),
        *extra,
    ]
    return docs


def apply(network, docs: list[dict]) -> list[str]:
    """What the playbook does: drain (sync), converge the pods, kube-proxy's rules, sync again."""
    cluster = parse_documents([(d, "test.yaml") for d in docs])
    changes = ctl.sync(network.lab, cluster)
    changes += k.converge(network, yaml.safe_dump_all(docs))
    services = apiserver.with_status(cluster.services, apiserver.allocate(network.lab, cluster.services))
    pods = cluster_pods(network.lab)
    for node in network.nodes:
        sync_node(network.lab, node.name, node.netns, services, pods, node.ip, k.POD_VSWITCH_CIDR)
    changes += ctl.sync(network.lab, cluster)
    return changes


class Lab:
    def __init__(self, name: str, extra: tuple[dict, ...] = ()) -> None:
        self.name = name
        self.extra = extra  # more manifests (tests/kernel/test_ingress_annotations.py)
        self.backends: list[HttpBackend] = []
        self.network, self.nodes, self.ecs3 = k.build_cluster(self.name, "terway-eniip")
        for rule_id, port in (("sgr-00000080", 80), ("sgr-00000443", 443)):  # the ECS's vSwitch may reach pods
            k.allow(self.name, k.NODE_SG, rule_id, "tcp", port, "192.168.2.0/24")
        self.ca = mint_ca()
        cert, key = mint_certificate(self.ca, ["secure.test"])
        self.secret = tls_secret("demo", "secure-tls", cert, key)
        self.changes = apply(self.network, manifests(3, self.secret, extra))
        for name in BACKENDS:
            record = self.pod(name)
            self.backends.append(HttpBackend(record.netns, name, 9000))
        self.slb_address = self._slb()

    def _slb(self) -> str:
        """An internet SLB in front of the controllers' LoadBalancer Service: a tcp listener per port to its
        NodePort on both nodes, which admit on node ports the SLB's health checks from 100.64.0.0/10 and the
        clients themselves (a tcp listener forwards in the kernel: the node sees the client's own address)."""
        for rule_id, cidr in (("sgr-0000e001", "100.64.0.0/10"), ("sgr-0000e002", str(slb_model.INTERNET))):
            sg.add_rule(self.name, k.NODE_SG, parse_rule("test", rule_id, type="ingress", ip_protocol="tcp",
                                                         port_range="30000/32767", cidr_ip=cidr))
        allocations = apiserver.allocate(self.name, [CONTROLLER_LB])
        lb = slb_realize.SlbInstance(self.name, SLB_ID)
        address = lb.create("internet", None, None, "test slb", "ingress")
        refs = tuple(slb_model.BackendRef(i.instance_id, 100) for i in self.nodes)
        slb_realize.put_backend_servers(self.name, SLB_ID, refs, "test backends")
        for port in (80, 443):
            node_port = allocations.node_ports[f"kube-system/ingress-lb:{'http' if port == 80 else 'https'}/TCP"]
            args = {"frontend_port": port, "protocol": "tcp", "backend_port": node_port, "health_check_interval": 1,
                    "health_check_timeout": 1, "healthy_threshold": 2, "unhealthy_threshold": 2}
            slb_realize.put_listener(self.name, slb_model.parse_listener("test listener", SLB_ID, args), args,
                                     "test listener")

        def healthy() -> bool:
            rows = [r for listener in lb.backend_health().values() for r in listener]
            return len(rows) == 4 and all(r["status"] == "normal" for r in rows)

        wait_for(healthy, "both nodes healthy behind the SLB on 80 and 443", timeout=30)
        return address

    def pod(self, name: str):
        return next(r for r in load_records(self.name).values() if r.pod.name == name)

    def controllers(self):
        return ctl.controller_pods(self.name)
