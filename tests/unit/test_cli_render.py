"""The user's side without root: the graph model and its dot/Mermaid text, the status tables, log discovery,
the CLI's exit codes and help."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from acklab import cli, graph, logs, render

VIEW = {
    "lab": "demo",
    "vpcs": [{"id": "vpc-00000001", "cidr_block": "192.168.0.0/16", "netns": "acklab-demo-vpc-00000001",
              "vswitches": [
                  {"id": "vsw-0000000b", "cidr_block": "192.168.2.0/24", "zone_id": "z-i",
                   "gateway_ip": "192.168.2.253"},
                  {"id": "vsw-0000000a", "cidr_block": "192.168.1.0/24", "zone_id": "z-h",
                   "gateway_ip": "192.168.1.253"},
              ]}],
    "ecs": [
        {"id": "i-00000001", "name": "ecs-1", "private_ip": "192.168.1.10", "vswitch_id": "vsw-0000000a",
         "eni_id": "eni-00000001", "netns": "acklab-demo-i-00000001", "security_groups": []},
        {"id": "i-00000002", "name": "web-1", "private_ip": "192.168.2.21", "vswitch_id": "vsw-0000000b",
         "eni_id": "eni-00000002", "netns": "acklab-demo-i-00000002", "security_groups": ["sg-00000001"]},
    ],
    "security_groups": [{"id": "sg-00000001", "vpc_id": "vpc-00000001", "type": "normal",
                         "inner_access_policy": "Accept",
                         "rules": [{"priority": 1, "direction": "ingress", "policy": "accept", "protocol": "tcp",
                                    "ports": [8080, 8080], "cidr": "192.168.1.0/24", "peer_group": None}]}],
    "pods": [{"namespace": "demo", "name": "client-1", "labels": {"app": "client"}, "ip": "10.244.0.2",
              "netns": "acklab-demo-pod-0000000001", "node": "ecs-1", "ports": ["8080/TCP"]}],
    "slbs": [{"id": "lb-00000001", "name": "web", "address": "192.168.2.100", "address_type": "intranet",
              "vswitch_id": "vsw-0000000b", "vpc_id": "vpc-00000001", "netns": "acklab-demo-lb-00000001",
              "listeners": [{"id": "lb-00000001:tcp:80", "frontend_port": 80, "protocol": "tcp", "backend_port": 8080,
                             "scheduler": "rr",
                             "backends": [{"server_id": "i-00000002", "address": "192.168.2.21", "port": 8080,
                                           "weight": 100, "status": "normal"}]}]}],
}


def test_graph_places_each_object_in_its_vswitch_and_vpc():
    g = graph.build(VIEW)
    parents = {c.id: c.parent for c in g.clusters}
    where = {n.id: n.cluster for n in g.nodes}
    assert where["ecs_i_00000001"] == "vsw_vsw_0000000a" and where["ecs_i_00000002"] == "vsw_vsw_0000000b"
    assert where["slb_lb_00000001"] == "vsw_vsw_0000000b"
    # a pod outside every vSwitch (VPC-route, VXLAN) is drawn in its node's pod CIDR box inside the VPC
    assert where["pod_demo_client_1"] == "podcidr_ecs_1" and parents["podcidr_ecs_1"] == "vpc_vpc_00000001"
    assert parents["vsw_vsw_0000000a"] == "vpc_vpc_00000001"
    edges = {(e.src, e.dst, e.label, e.dashed) for e in g.edges}
    assert ("slb_lb_00000001", "ecs_i_00000002", "80→8080", False) in edges
    assert ("ecs_i_00000001", "pod_demo_client_1", "", True) in edges


def test_graph_draws_services_and_ingress_routes_when_present_and_tolerates_their_absence():
    view = copy.deepcopy(VIEW)
    assert not [n for n in graph.build(view).nodes if n.kind in ("service", "ingress")]
    view["services"] = [{"namespace": "demo", "name": "web", "type": "NodePort", "cluster_ip": "172.21.0.10",
                         "ports": [{"port": 80, "protocol": "TCP", "node_port": 30080}],
                         "endpoints": [{"ip": "10.244.0.2"}, "10.9.9.9:8080"]}]
    view["ingresses"] = [{"namespace": "demo", "name": "site", "address": "192.168.1.200",
                          "rules": [{"host": "web.example", "path": "/api", "service": "web", "port": 80},
                                    {"host": "", "path": "", "service": "missing"}]}]
    g = graph.build(view)
    labels = {n.id: n.label for n in g.nodes}
    assert labels["svc_demo_web"] == "svc demo/web\nNodePort 172.21.0.10\n80/TCP:30080"
    edges = {(e.src, e.dst, e.label) for e in g.edges}
    assert ("svc_demo_web", "pod_demo_client_1", "") in edges  # the endpoint that is a pod; 10.9.9.9 is none
    assert ("ing_demo_site", "svc_demo_web", "web.example/api") in edges
    assert not [e for e in g.edges if e.src == "ing_demo_site" and e.dst != "svc_demo_web"]


def test_internet_slb_hangs_off_the_internet():
    view = copy.deepcopy(VIEW)
    view["slbs"][0].update(address_type="internet", vswitch_id=None, address="203.0.113.10")
    g = graph.build(view)
    assert ("internet", "slb_lb_00000001") in {(e.src, e.dst) for e in g.edges}
    assert next(n for n in g.nodes if n.id == "slb_lb_00000001").cluster is None


def test_dot_text_nests_clusters_and_escapes_labels():
    text = graph.to_dot(graph.build(VIEW))
    assert text.startswith("digraph acklab {") and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    vpc, vsw = text.index("subgraph cluster_vpc_vpc_00000001"), text.index("subgraph cluster_vsw_vsw_0000000a")
    assert vpc < vsw
    assert 'ecs_i_00000002 [label="web-1\\n192.168.2.21\\ni-00000002\\nsg-00000001"' in text
    assert 'slb_lb_00000001 -> ecs_i_00000002 [label="80→8080"];' in text
    tricky = graph.Graph('a "quoted" title', nodes=[graph.Node("n", 'x"y\\z', "ecs")])
    assert 'label="x\\"y\\\\z"' in graph.to_dot(tricky)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_graphviz_accepts_the_dot_text():
    svg = graph.render_image(graph.to_dot(graph.build(VIEW)), "svg")
    assert b"<svg" in svg and b"192.168.2.21" in svg


def test_mermaid_text_is_a_flowchart_with_subgraphs_and_safe_ids():
    text = graph.to_mermaid(graph.build(VIEW))
    lines = text.splitlines()
    assert lines[0] == "flowchart TB"
    assert text.count("subgraph ") == text.count("\n    end") + text.count("\n  end")
    assert '      ecs_i_00000001["ecs-1<br/>192.168.1.10<br/>i-00000001"]:::ecs' in lines
    assert '  slb_lb_00000001 -->|"80→8080"| ecs_i_00000002' in lines
    assert '  ecs_i_00000001 -.-> pod_demo_client_1' in lines
    ids = re.findall(r"^\s*(\w+)\[", text, re.M)
    assert ids and all(re.fullmatch(r"[A-Za-z0-9_]+", i) for i in ids)
    assert "#quot;" in graph.to_mermaid(graph.Graph("t", nodes=[graph.Node("n", 'say "hi"', "pod")]))


def test_status_tables_are_aligned_and_in_a_stable_order():
    text = render.status_text(VIEW)
    lines = text.splitlines()
    assert lines[0] == "lab demo"
    vsw = [line.split()[1] for line in lines if line.startswith("vsw-")]
    assert vsw == ["192.168.1.0/24", "192.168.2.0/24"]  # by CIDR, not by (random) id
    header = next(line for line in lines if line.startswith("ECS "))
    row = next(line for line in lines if line.startswith("web-1"))
    assert row.index("sg-00000001") == header.index("SECURITY GROUPS")
    assert "  1         ingress    accept  tcp       8080/8080  192.168.1.0/24" in lines
    assert "web tcp:80  rr         web-1:8080  i-00000002  normal" in lines


def test_status_prints_unknown_lists_generically_and_says_when_a_lab_is_empty():
    view = {**VIEW, "gateways": [{"name": "gw", "address": "172.21.0.10", "routes": [80]}],
            "services": [{"namespace": "demo", "name": "web", "type": "LoadBalancer", "cluster_ip": "172.21.0.10",
                          "load_balancer": "203.0.113.1",
                          "ports": [{"name": "http", "port": 80, "protocol": "TCP", "target_port": "http",
                                     "node_port": 30080}]}]}
    lines = render.status_text(view).splitlines()
    assert lines[lines.index("NAME  ADDRESS") + 1] == "gw    172.21.0.10"
    assert "demo/web  LoadBalancer  172.21.0.10  203.0.113.1  80:30080/TCP" in lines
    assert "security group sg-00000001 (normal, inner Accept, VPC vpc-00000001, ECS web-1)" in lines
    assert render.status_text({"lab": "x", "vpcs": []}) == "lab x: nothing on this machine\n"


def test_logs_are_classified_by_where_they_are(tmp_path):
    for rel in ("slb/lb-00000001/haproxy.log", "i-00000002.user-data.log", "k8s/ecs-1.agent.log",
                "ingress/nginx/error.log", "misc/other.log"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("one\ntwo\nthree\n")
    found = {logs.classify(tmp_path, p).describe() for p in tmp_path.rglob("*.log")}
    assert found == {"haproxy lb-00000001", "user-data i-00000002", "pod-agent ecs-1", "nginx ingress/nginx",
                     "other misc"}
    every = [logs.classify(tmp_path, p) for p in tmp_path.rglob("*.log")]
    assert [f.kind for f in logs.select(every, {"i-00000002", "ecs-1"}, None)] in (
        ["user-data", "pod-agent"], ["pod-agent", "user-data"])
    assert [f.owner for f in logs.select(every, set(), "haproxy")] == ["lb-00000001"]
    assert [f.kind for f in logs.select(every, {"nginx"}, None)] == ["nginx"]  # a folder on the path
    assert logs.select(every, {"ecs-"}, None) == []  # names match whole, not as prefixes
    assert logs.tail(tmp_path / "misc/other.log", 2) == ["two\n", "three\n"]
    assert len(logs.tail(tmp_path / "misc/other.log", 0)) == 3


def test_logs_of_an_api_driven_cluster_are_classified_by_daemon(tmp_path):
    """The control plane's components, and per node its agent, kube-proxy and NetworkPolicy agent: found by the
    names users know (``acklab logs kube-apiserver``, ``acklab logs ecs-1 --kind kube-proxy``)."""
    for rel in ("cp/c00000001/kube-apiserver.log", "cp/c00000001/etcd.log", "cp/c00000001/coredns/coredns.log",
                "k8s/ecs-1.node-agent.log",
                "k8s/kube-proxy/ecs-1/kube-proxy.log", "k8s/network-policy-agent/ecs-1/agent.log", "k8s/ccm/ccm.log"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("line\n")
    every = [logs.classify(tmp_path, p) for p in tmp_path.rglob("*.log")]
    assert {f.describe() for f in every} == {"control-plane kube-apiserver", "control-plane etcd",
                                            "control-plane coredns", "node-agent ecs-1",
                                            "kube-proxy ecs-1", "policy-agent ecs-1", "cloud-controller ccm"}
    assert {f.kind for f in logs.select(every, {"ecs-1"}, None)} == {"node-agent", "kube-proxy", "policy-agent"}
    assert [f.owner for f in logs.select(every, {"kube-apiserver"}, None)] == ["kube-apiserver"]
    assert len(logs.select(every, {"c00000001"}, "control-plane")) == 3  # the cluster id: a folder on the path
    assert set(logs.KINDS) >= {f.kind for f in every}


def test_cli_exit_codes_and_help(capsys):
    with pytest.raises(SystemExit) as usage:
        cli.main(["graph", "--format", "gif"])
    assert usage.value.code == cli.EXIT_USAGE
    assert cli.main(["status", "--lab", "Bad-Name"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "lab 'Bad-Name': stack name: must be 1-16 lower-case letters" in err and "what to do: pick another" in err
    with pytest.raises(SystemExit) as helped:
        cli.main(["--help"])
    assert helped.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out and "acklab graph --format svg" in out
    for command in ("graph", "logs", "bench"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_cli_bench_refuses_unknown_benchmarks(capsys):
    assert "ecs_scale" in cli.bench_modules()
    assert cli.main(["bench", "no_such_bench"]) == cli.EXIT_USAGE
    assert "expected one of" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([str(Path(sys.executable).parent / "acklab"), "--help"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and "usage: acklab" in result.stdout


def test_doc_check_parses_console_blocks_and_normalizes_volatile_parts(tmp_path):
    from tests.e2e.test_tutorials import matches, normalize, parse

    doc = tmp_path / "t.md"
    doc.write_text("text\n```sh\n$ not checked\n```\n```console\n$ echo a \\\n  b\na b\n$ true\n```\n"
                   "```console lab=tutvxlan\n$ make x\n...\n```\n")
    steps = parse(doc)
    assert [(s.lab, s.command, s.expected) for s in steps] == [
        ("tutorial", "echo a    b", ["a b"]), ("tutorial", "true", []), ("tutvxlan", "make x", ["..."])]
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"]) and matches(["..."], [])
    assert not matches(["a", "...", "d"], ["a", "b"]) and not matches(["a"], ["a", "b"])
    assert normalize("ecs-1  i-0a1b2c3d  acklab-x-pod-0123456789  eth0@if12  192.168.3.14  time 0ms\n\n") == [
        "ecs-1 i-… acklab-x-pod-… eth0@if… 192.168.3.… time … s"]
    assert normalize('  ecs_i_77d45733["ecs-1"]') == ['ecs_i_…["ecs-1"]']


def test_cli_kubectl_runs_kubectl_with_the_labs_kubeconfig(tmp_path, monkeypatch, capsys):
    from netns.realize import control_plane

    kubeconfig = tmp_path / "kubeconfig"
    monkeypatch.setattr(control_plane, "kubeconfig_path", lambda lab: kubeconfig)
    assert cli.main(["kubectl", "--lab", "nocluster", "get", "nodes"]) == cli.EXIT_FAILURE
    assert "lab nocluster has no Kubernetes control plane" in capsys.readouterr().err
    kubeconfig.write_text("apiVersion: v1\n")
    calls = []
    monkeypatch.setattr(control_plane, "binary", lambda name: f"/bin/{name}")
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: calls.append((path, argv)))
    cli.main(["kubectl", "--lab", "lab1", "--", "-n", "demo", "get", "pods"])
    cli.main(["kubectl", "--lab", "lab1", "get", "pods", "-A"])
    assert calls == [("/bin/kubectl", ["/bin/kubectl", "--kubeconfig", str(kubeconfig), "-n", "demo", "get", "pods"]),
                     ("/bin/kubectl", ["/bin/kubectl", "--kubeconfig", str(kubeconfig), "get", "pods", "-A"])]
