"""Helpers for pod tests: a small cluster on the kernel (no Pulumi) and netexec probes from any namespace."""

from __future__ import annotations

import ipaddress
import socket
import textwrap

import yaml

from acklab.k8s.model.objects import parse_documents
from acklab.k8s.model.pod_network import Network, Node, plan
from acklab.k8s.realize.pod_network import converge_node, current_placements, k8s_lock
from netns.kernel.namespace import Namespace
from netns.model.security_group import Group, parse_rule
from netns.realize import security_group as sg
from netns.realize.instance import EcsInstance
from netns.realize.vpc import VpcRouter, VSwitch

N = ipaddress.IPv4Network

MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: [netexec, --http-port=8080, --udp-port=8081]
        ports:
        - {name: http, containerPort: 8080}
        - {name: udp, containerPort: 8081, protocol: UDP}
"""


def web_deployment(replicas: int, namespace: str = "default", port: int = 80, name: str = "web",
                   grace: int = 1, args: tuple[str, ...] = ()) -> str:
    """A Deployment ``name`` of agnhost netexec pods (label app=name) serving HTTP on ``port``; ``args``: more of
    netexec's flags, ``grace``: the pods' terminationGracePeriodSeconds."""
    flags = ", ".join((f"--http-port={port}", *args))
    return textwrap.dedent(f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: {grace}
              containers:
              - name: netexec
                image: registry.k8s.io/e2e-test-images/agnhost:2.47
                args: [netexec, {flags}]
                ports: [{{containerPort: {port}}}]
        """)


def pinned_pod(name: str, node: str, namespace: str = "demo", http_port: int = 8080) -> str:
    """An agnhost netexec Pod ``name`` (label app=name) on ``node``: HTTP on ``http_port``, UDP on 8081."""
    return textwrap.dedent(f"""
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {namespace}, labels: {{app: {name}}}}}
        spec:
          nodeName: {node}
          terminationGracePeriodSeconds: 1
          containers:
          - name: netexec
            image: registry.k8s.io/e2e-test-images/agnhost:2.47
            args: [netexec, --http-port={http_port}, --udp-port=8081]
            ports: [{{containerPort: {http_port}}}, {{containerPort: 8081, protocol: UDP}}]
        """)


NODE_SG, ECS_SG = "sg-0000000a", "sg-0000000b"


def build_vpc(lab: str):
    """One VPC, one node vSwitch with node-1, node-2 (group NODE_SG) and a plain ECS, ecs-3, on another vSwitch
    (group ECS_SG). Both groups are basic with intra-group access: other traffic needs a rule."""
    router = VpcRouter(lab, "vpc-00000001")
    router.create(N("192.168.0.0/16"))
    for sg_id in (NODE_SG, ECS_SG):
        sg.create_group(lab, Group(sg_id, router.vpc_id, "normal", "Accept"))
    sw_h = VSwitch(router, "vsw-0000000a")
    sw_h.create(N("192.168.1.0/24"), "cn-hangzhou-h", "vsw-h")
    sw_i = VSwitch(router, "vsw-0000000b")
    sw_i.create(N("192.168.2.0/24"), "cn-hangzhou-i", "vsw-i")
    nodes = [EcsInstance(lab, f"i-0000000{n}", f"eni-0000000{n}") for n in (1, 2)]
    ecs3 = EcsInstance(lab, "i-00000003", "eni-00000003")
    nodes[0].create(sw_h, "192.168.1.10", "node-1", "node-1", (NODE_SG,))
    nodes[1].create(sw_h, "192.168.1.11", "node-2", "node-2", (NODE_SG,))
    ecs3.create(sw_i, "192.168.2.10", "ecs-3", "ecs-3", (ECS_SG,))
    return router, nodes, ecs3


def terway_vpc(lab: str, vpc_id: str, node_vswitch_id: str, pod_vswitch_id: str, group_id: str) -> tuple:
    """A VPC 10.0.0.0/16 with a node vSwitch 10.0.16.0/24, a pod vSwitch 10.0.0.0/22 (zone cn-hangzhou-h) and a
    basic group with intra-group access: what a Terway cluster needs. Returns (router, node vSwitch)."""
    router = VpcRouter(lab, vpc_id)
    router.create(N("10.0.0.0/16"))
    sg.create_group(lab, Group(group_id, vpc_id, "normal", "Accept"))
    nodes = VSwitch(router, node_vswitch_id)
    nodes.create(N("10.0.16.0/24"), "cn-hangzhou-h", "nodes")
    VSwitch(router, pod_vswitch_id).create(N("10.0.0.0/22"), "cn-hangzhou-h", "pods")
    return router, nodes


POD_VSWITCH_CIDR = "192.168.3.0/24"


def build_cluster(lab: str, datapath: str):
    """The VPC of ``build_vpc`` and what the datapath needs from the cloud: route entries (vpc-route) or a pod
    vSwitch with a secondary ENI per node carrying secondary IPs (terway-eniip). Returns (network, nodes, ecs3).
    """
    from acklab.k8s.model import ipam
    from netns.realize.network_interface import NetworkInterface
    from netns.realize.route_entry import RouteEntry

    router, nodes, ecs3 = build_vpc(lab)
    names = ["node-1", "node-2"]
    if datapath == "terway-eniip":
        pods = VSwitch(router, "vsw-0000000c")
        pods.create(N(POD_VSWITCH_CIDR), "cn-hangzhou-h", "vsw-pods")
        result = []
        for i, (name, instance) in enumerate(zip(names, nodes, strict=True), start=1):
            eni = NetworkInterface(lab, f"eni-0000e00{i}")
            state = eni.create(pods, "test", None, (), 8, (NODE_SG,), f"{name}-pods")
            ifname = eni.attach(instance.namespace, instance.instance_id, "test")
            result.append(Node(name, instance.namespace.name, f"192.168.1.{9 + i}", None, ifname,
                               str(N(POD_VSWITCH_CIDR)[-3]), state.secondary_ips))
        return Network(lab, datapath, tuple(result)), nodes, ecs3
    cidrs = {name: str(c) for name, c in ipam.node_pod_cidrs("10.244.0.0/16", names).items()}
    if datapath == "vpc-route":
        for name, instance in zip(names, nodes, strict=True):
            RouteEntry(router, N(cidrs[name]), instance.instance_id).create(f"vpc.RouteEntry '{name}'")
    return Network(lab, datapath, node_list(nodes, cidrs), "10.244.0.0/16"), nodes, ecs3


def converge(network: Network, manifests: str) -> list[str]:
    """Pods from manifests without an API server: the pod plan, then each node's share realized."""
    cluster = parse_documents([(d, "test.yaml") for d in yaml.safe_load_all(manifests)])
    changes = []
    for node in network.nodes:
        with k8s_lock(network.lab):
            placements = plan(network, cluster, current_placements(network.lab))
            changes += converge_node(network, node.name, placements)
    return changes


def http_get(netns: str, address: str, port: int, path: str, timeout: float = 2.0, host: str | None = None
             ) -> str | None:
    """The body of an HTTP GET from ``netns`` (``Host: host``, default the address), or None if the connection
    failed or the answer was not 200."""
    s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((address, port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or address}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return body.decode() if head.startswith(b"HTTP/1.1 200") else None
    except OSError:
        return None
    finally:
        s.close()


def udp_ask(netns: str, address: str, port: int, message: str = "hostname", timeout: float = 1.0) -> str | None:
    s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(message.encode(), (address, port))
        return s.recvfrom(2048)[0].decode()
    except OSError:
        return None
    finally:
        s.close()


def node_list(nodes, pod_cidrs: dict[str, str] | None = None) -> tuple[Node, ...]:
    result = []
    for i, instance in enumerate(nodes, start=1):
        name = f"node-{i}"
        result.append(Node(name, instance.namespace.name, f"192.168.1.{9 + i}",
                           (pod_cidrs or {}).get(name)))
    return tuple(result)


def allow(lab: str, sg_id: str, rule_id: str, protocol: str, port: int, cidr: str) -> None:
    """An ingress accept rule (the SG-present case of a probe)."""
    sg.add_rule(lab, sg_id, parse_rule("test", rule_id, type="ingress", ip_protocol=protocol,
                                       port_range=f"{port}/{port}", cidr_ip=cidr))


def revoke(lab: str, sg_id: str, rule_id: str) -> None:
    sg.remove_rule(lab, sg_id, rule_id)
