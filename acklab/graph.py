"""The picture of a lab: a graph model built from ``acklab status --json`` data, rendered as Graphviz dot or Mermaid.

Pure: ``build(view)`` takes the status dictionary (``LabView.to_dict()``), ``to_dot`` and ``to_mermaid`` return text.
Only ``render_image`` runs a program (Graphviz ``dot``). Keys that a lab does not have yet are simply absent:
``services`` and ``ingresses`` (lists of dictionaries, see ``_add_services`` and ``_add_ingresses`` for the fields
read) are drawn when present.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from netns.model.errors import LabError

# fill colours by kind (Alibaba-ish orange for the cloud, Kubernetes blue for the cluster)
COLOURS = {"ecs": "#ffe0b2", "pod": "#bbdefb", "slb": "#c8e6c9", "service": "#e1bee7", "ingress": "#b2dfdb",
           "internet": "#eeeeee"}


@dataclass
class Node:
    id: str
    label: str  # lines separated by "\n"
    kind: str
    cluster: str | None = None  # id of the Cluster it is drawn in


@dataclass
class Cluster:
    id: str
    label: str
    kind: str
    parent: str | None = None


@dataclass
class Edge:
    src: str
    dst: str
    label: str = ""
    dashed: bool = False


@dataclass
class Graph:
    title: str
    clusters: list[Cluster] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def node_ids(self) -> set[str]:
        return {node.id for node in self.nodes}

    def children(self, parent: str | None) -> tuple[list[Cluster], list[Node]]:
        return ([c for c in self.clusters if c.parent == parent], [n for n in self.nodes if n.cluster == parent])


def ident(kind: str, key: str) -> str:
    """A node id both dot and Mermaid accept: letters, digits and underscores."""
    return f"{kind}_{re.sub(r'[^A-Za-z0-9]', '_', key)}"


def build(view: dict) -> Graph:
    """The graph of one lab from its status dictionary."""
    graph = Graph(f"lab {view.get('lab', '?')}")
    vswitch_nets: list[tuple[ipaddress.IPv4Network, str]] = []
    for vpc in view.get("vpcs", []):
        vpc_cluster = ident("vpc", vpc["id"])
        graph.clusters.append(Cluster(vpc_cluster, f"VPC {vpc['id']}  {vpc['cidr_block']}", "vpc"))
        for vsw in sorted(vpc.get("vswitches", []), key=lambda v: _net_key(v.get("cidr_block", ""))):
            cid = ident("vsw", vsw["id"])
            graph.clusters.append(Cluster(cid, f"vSwitch {vsw['id']}  {vsw['cidr_block']}  {vsw['zone_id']}",
                                          "vswitch", vpc_cluster))
            if vsw.get("cidr_block"):
                vswitch_nets.append((ipaddress.ip_network(vsw["cidr_block"]), cid))
    ecs_by_key: dict[str, str] = {}
    for ecs in view.get("ecs", []):
        nid = ident("ecs", ecs["id"])
        groups = " ".join(ecs.get("security_groups", []))
        lines = [ecs["name"] or ecs["id"], ecs["private_ip"], ecs["id"]] + ([groups] if groups else [])
        graph.nodes.append(Node(nid, "\n".join(lines), "ecs", ident("vsw", ecs["vswitch_id"])))
        ecs_by_key.update({ecs["id"]: nid, ecs["name"]: nid})
    pods_by_ip: dict[str, str] = {}
    for pod in view.get("pods", []):
        nid = ident("pod", f"{pod['namespace']}_{pod['name']}")
        cluster = _containing(vswitch_nets, pod["ip"]) or _node_pod_cluster(graph, pod.get("node", ""), ecs_by_key)
        graph.nodes.append(Node(nid, f"pod {pod['namespace']}/{pod['name']}\n{pod['ip']}", "pod", cluster))
        if pod["ip"] != "-":  # a Pending pod has no address yet: nothing routes to it
            pods_by_ip[pod["ip"]] = nid
        if pod.get("node") in ecs_by_key:
            graph.edges.append(Edge(ecs_by_key[pod["node"]], nid, dashed=True))
    _add_slbs(graph, view.get("slbs", []), ecs_by_key, pods_by_ip)
    services = _add_services(graph, view.get("services", []), pods_by_ip)
    _add_ingresses(graph, view.get("ingresses", []), services)
    return graph


def _node_pod_cluster(graph: Graph, node: str, ecs_by_key: dict[str, str]) -> str | None:
    """Pods whose addresses are in no vSwitch (VPC-route, VXLAN: the node's pod CIDR): a box per node, in the
    node's VPC."""
    if node not in ecs_by_key:
        return None
    cid = ident("podcidr", node)
    if all(c.id != cid for c in graph.clusters):
        vswitch = next(n.cluster for n in graph.nodes if n.id == ecs_by_key[node])
        vpc = next((c.parent for c in graph.clusters if c.id == vswitch), None)
        graph.clusters.append(Cluster(cid, f"pod CIDR of {node}", "podcidr", vpc))
    return cid


def _net_key(cidr: str) -> tuple[int, int]:
    try:
        net = ipaddress.ip_network(cidr)
    except ValueError:
        return (1 << 33, 0)
    return (int(net.network_address), net.prefixlen)


def _containing(nets: Iterable[tuple[ipaddress.IPv4Network, str]], address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return next((cid for net, cid in nets if ip in net), None)


def _add_slbs(graph: Graph, slbs: list[dict], ecs_by_key: dict[str, str], pods_by_ip: dict[str, str]) -> None:
    for lb in slbs:
        nid = ident("slb", lb["id"])
        ports = [f"{lsn['protocol']}:{lsn['frontend_port']}" for lsn in lb.get("listeners", [])]
        label = "\n".join([f"SLB {lb.get('name') or lb['id']}", f"{lb['address']} ({lb['address_type']})",
                           *([" ".join(ports)] if ports else [])])
        cluster = ident("vsw", lb["vswitch_id"]) if lb.get("vswitch_id") else None
        graph.nodes.append(Node(nid, label, "slb", cluster))
        if lb.get("address_type") == "internet":
            if "internet" not in graph.node_ids():
                graph.nodes.append(Node("internet", "internet", "internet"))
            graph.edges.append(Edge("internet", nid))
        for lsn in lb.get("listeners", []):
            for backend in lsn.get("backends", []):
                target = ecs_by_key.get(backend.get("server_id", "")) or pods_by_ip.get(backend.get("address", ""))
                if target:
                    graph.edges.append(Edge(nid, target, f"{lsn['frontend_port']}→{backend.get('port', '')}",
                                            dashed=backend.get("status") not in (None, "normal")))


def _add_services(graph: Graph, services: list[dict], pods_by_ip: dict[str, str]) -> dict[str, str]:
    """Services: ``namespace``, ``name``, ``type``, ``cluster_ip``, ``ports`` (strings or dicts with ``port``,
    ``protocol``, ``node_port``), ``load_balancer`` (the SLB's address: an edge from that SLB), ``endpoints``
    (IPs, or dicts with ``ip``: edges to those pods). Returns ``namespace/name`` → node id."""
    found: dict[str, str] = {}
    for svc in services:
        key = f"{svc.get('namespace', 'default')}/{svc['name']}"
        nid = ident("svc", key)
        ports = " ".join(_port_text(p) for p in svc.get("ports", []))
        lines = [f"svc {key}", f"{svc.get('type', 'ClusterIP')} {svc.get('cluster_ip', '')}".strip(), ports]
        graph.nodes.append(Node(nid, "\n".join(line for line in lines if line), "service"))
        found[key] = nid
        balancer = next((n.id for n in graph.nodes if n.kind == "slb" and svc.get("load_balancer")
                         and f"\n{svc['load_balancer']} (" in n.label), None)
        if balancer:  # type LoadBalancer: the Service's SLB
            graph.edges.append(Edge(balancer, nid, "LoadBalancer", dashed=True))
        for endpoint in svc.get("endpoints", []):
            address = endpoint.get("ip", "") if isinstance(endpoint, dict) else str(endpoint).split(":")[0]
            if address in pods_by_ip:
                graph.edges.append(Edge(nid, pods_by_ip[address]))
    return found


def _port_text(port: object) -> str:
    if isinstance(port, dict):
        text = f"{port.get('port', '')}/{port.get('protocol', 'TCP')}"
        return f"{text}:{port['node_port']}" if port.get("node_port") else text
    return str(port)


def _add_ingresses(graph: Graph, ingresses: list[dict], services: dict[str, str]) -> None:
    """Ingresses: ``namespace``, ``name``, ``address``, ``rules`` (dicts with ``host``, ``path``, ``service``
    (a name in the Ingress's namespace), ``port``)."""
    for ing in ingresses:
        namespace = ing.get("namespace", "default")
        nid = ident("ing", f"{namespace}/{ing['name']}")
        lines = [f"ingress {namespace}/{ing['name']}", ing.get("address", "")]
        graph.nodes.append(Node(nid, "\n".join(line for line in lines if line), "ingress"))
        for rule in ing.get("rules", []):
            target = services.get(f"{namespace}/{rule.get('service', '')}")
            if target:
                route = f"{rule.get('host') or '*'}{rule.get('path') or '/'}"
                graph.edges.append(Edge(nid, target, route))


# -- renderers --

def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph) -> str:
    lines = ["digraph acklab {", f"  label={_dot_quote(graph.title)};", "  labelloc=t;", "  rankdir=TB;",
             "  compound=true;", '  fontname="Helvetica";',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']

    def emit(parent: str | None, indent: str) -> None:
        clusters, nodes = graph.children(parent)
        for cluster in clusters:
            lines.append(f"{indent}subgraph cluster_{cluster.id} {{")
            lines.append(f"{indent}  label={_dot_quote(cluster.label)};")
            lines.append(f"{indent}  style={'rounded' if cluster.kind == 'vswitch' else 'bold'};")
            emit(cluster.id, indent + "  ")
            lines.append(f"{indent}}}")
        for node in nodes:
            colour = COLOURS.get(node.kind, "#ffffff")
            lines.append(f'{indent}{node.id} [label={_dot_quote(node.label)}, fillcolor="{colour}"];')

    emit(None, "  ")
    for edge in graph.edges:
        attrs = [f"label={_dot_quote(edge.label)}"] if edge.label else []
        if edge.dashed:
            attrs.append("style=dashed")
        lines.append(f"  {edge.src} -> {edge.dst}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("\n", "<br/>") + '"'


def to_mermaid(graph: Graph) -> str:
    lines = ["flowchart TB"]

    def emit(parent: str | None, indent: str) -> None:
        clusters, nodes = graph.children(parent)
        for cluster in clusters:
            lines.append(f"{indent}subgraph {cluster.id}[{_mermaid_text(cluster.label)}]")
            emit(cluster.id, indent + "  ")
            lines.append(f"{indent}end")
        for node in nodes:
            lines.append(f"{indent}{node.id}[{_mermaid_text(node.label)}]:::{node.kind}")

    emit(None, "  ")
    for edge in graph.edges:
        arrow = "-.->" if edge.dashed else "-->"
        label = f"|{_mermaid_text(edge.label)}|" if edge.label else ""
        lines.append(f"  {edge.src} {arrow}{label} {edge.dst}")
    kinds = sorted({node.kind for node in graph.nodes})
    lines.extend(f"  classDef {kind} fill:{COLOURS.get(kind, '#ffffff')}" for kind in kinds)
    return "\n".join(lines) + "\n"


def render_image(dot_text: str, fmt: str) -> bytes:
    """SVG or PNG bytes from dot text, by Graphviz's ``dot``."""
    dot = shutil.which("dot")
    if dot is None:
        raise LabError("acklab graph: Graphviz's `dot` is not installed; expected it for --format svg/png. "
                       "Install the Debian package graphviz (scripts/setup.sh does), or use --format dot/mermaid")
    result = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=60, check=False)
    if result.returncode != 0:
        raise LabError(f"acklab graph: dot -T{fmt} failed: {result.stderr.decode().strip()}")
    return result.stdout
