"""What `acklab status` shows of a cluster's API objects (as kubectl -o json prints them): acklab/inventory.py's
views and their table, no root."""

from __future__ import annotations

import copy
from dataclasses import asdict

from acklab import render
from acklab.inventory import ServicePortView, node_view, pod_view, service_view

NODE = {"metadata": {"name": "ecs-1", "labels": {"topology.kubernetes.io/zone": "cn-hangzhou-h",
                                                  "node.kubernetes.io/instance-type": "ecs.g7.large"}},
        "spec": {"providerID": "cn-hangzhou.i-0a1b2c3d"},
        "status": {"addresses": [{"type": "Hostname", "address": "ecs-1"},
                                 {"type": "InternalIP", "address": "192.168.1.10"}],
                   "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]}}
POD = {"metadata": {"namespace": "demo", "name": "web-5d9c-abcde", "labels": {"app": "web"}},
       "spec": {"nodeName": "ecs-1",
                "containers": [{"name": "web", "ports": [{"containerPort": 8080},
                                                         {"containerPort": 8081, "protocol": "UDP"}]}]},
       "status": {"phase": "Running", "podIP": "192.168.3.5"}}
SERVICE = {"metadata": {"namespace": "demo", "name": "web"},
           "spec": {"type": "LoadBalancer", "clusterIP": "172.21.0.10",
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}}


def test_a_node_as_kubectl_and_ack_describe_it():
    row = node_view(NODE)
    assert (row.name, row.status, row.internal_ip, row.instance_id, row.zone, row.instance_type) == (
        "ecs-1", "Ready", "192.168.1.10", "i-0a1b2c3d", "cn-hangzhou-h", "ecs.g7.large")
    cordoned = copy.deepcopy(NODE)
    cordoned["spec"]["unschedulable"] = True
    cordoned["status"]["conditions"][1]["status"] = "False"
    assert node_view(cordoned).status == "NotReady,SchedulingDisabled"
    assert node_view({"metadata": {"name": "new"}}).status == "Unknown"  # no Ready condition yet


def test_a_pod_its_phase_address_and_ports():
    row = pod_view(POD)
    assert (row.namespace, row.name, row.ip, row.node, row.ports, row.status) == (
        "demo", "web-5d9c-abcde", "192.168.3.5", "ecs-1", ["8080/TCP", "8081/UDP"], "Running")
    pending = {"metadata": {"namespace": "demo", "name": "big"}, "spec": {"containers": [{"name": "c"}]},
               "status": {"phase": "Pending"}}
    assert (pod_view(pending).ip, pod_view(pending).node, pod_view(pending).status) == ("-", "-", "Pending")
    leaving = copy.deepcopy(POD)
    leaving["metadata"]["deletionTimestamp"] = "2026-12-03T14:00:00Z"
    assert pod_view(leaving).status == "Terminating"  # as kubectl prints a pod being deleted


def test_a_service_with_its_node_port_and_slb_address():
    row = service_view(SERVICE)
    assert (row.type, row.cluster_ip, row.load_balancer) == ("LoadBalancer", "172.21.0.10", "203.0.113.10")
    assert row.ports == [ServicePortView("http", 80, "TCP", 8080, 30080)]
    headless = {"metadata": {"namespace": "demo", "name": "db"}, "spec": {"clusterIP": "None", "ports": []}}
    assert (service_view(headless).type, service_view(headless).load_balancer) == ("ClusterIP", None)


def test_status_shows_the_api_server_nodes_and_the_pods_status():
    view = {"lab": "demo", "vpcs": [{"id": "vpc-00000001", "cidr_block": "192.168.0.0/16", "netns": "n",
                                     "vswitches": []}],
            "api": "https://127.0.0.1:40123",
            "nodes": [asdict(node_view(NODE))],
            "pods": [{"namespace": "demo", "name": "big", "labels": {}, "ip": "-", "netns": "-", "node": "-",
                      "ports": [], "status": "Pending"},
                     {"namespace": "demo", "name": "web", "labels": {}, "ip": "192.168.3.5", "netns": "acklab-demo-p",
                      "node": "ecs-1", "ports": ["8080/TCP"], "status": "Running"}]}
    text = render.status_text(view)
    assert "kubernetes API https://127.0.0.1:40123" in text
    assert "NODE   STATUS  INTERNAL-IP   INSTANCE    ZONE           INSTANCE-TYPE" in text
    assert "ecs-1  Ready   192.168.1.10  i-0a1b2c3d  cn-hangzhou-h  ecs.g7.large" in text
    assert "demo/big  Pending  -" in text and "demo/web  Running  192.168.3.5  ecs-1  8080/TCP  acklab-demo-p" in text
    without_api = {**view, "api": "", "nodes": [], "pods": [{**view["pods"][1], "status": ""}]}
    plain = render.status_text(without_api)
    assert "STATUS" not in plain and "kubernetes API" not in plain
    assert "POD       IP           NODE   PORTS     NETNS" in plain
