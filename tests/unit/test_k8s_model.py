"""Manifests → pods: parsing, validation errors that name object and field, Deployments, the scheduler, IPAM."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest
import yaml

from acklab.k8s.model import ipam
from acklab.k8s.model.objects import ContainerPort, Pod, load_manifests, parse_documents, schedule
from netns.model.errors import ValidationError

MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: [netexec]
        ports:
        - {name: http, containerPort: 8080}
        - {name: dns, containerPort: 5353, protocol: UDP}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: node-b
  containers: [{name: c, image: agnhost}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: http}]}
"""


def docs(text: str) -> list[tuple[object, str]]:
    return [(d, "test.yaml") for d in yaml.safe_load_all(textwrap.dedent(text))]


def test_parse_namespaces_pods_deployments_and_keeps_services():
    cluster = parse_documents(docs(MANIFESTS))
    # the API server's own namespaces are there without a manifest, as on any cluster
    assert cluster.namespaces == ("default", "kube-node-lease", "kube-public", "kube-system", "shop")
    pods = cluster.all_pods()
    assert pods[0].key == "default/client"
    web = [p for p in pods if p.owner == "Deployment/web"]
    assert len(web) == 3 and len({p.name for p in web}) == 3
    assert all(p.name.startswith("web-") and len(p.name) <= 63 for p in web)
    assert web[0].labels == {"app": "web", "tier": "front"}
    assert web[0].ports == (ContainerPort(8080, "TCP", "http"), ContainerPort(5353, "UDP", "dns"))
    assert pods[0].node_name == "node-b"
    assert [s["metadata"]["name"] for s in cluster.services] == ["web"]


def test_deployment_pod_names_are_stable_and_follow_the_template():
    first = [p.name for p in parse_documents(docs(MANIFESTS)).all_pods()]
    assert first == [p.name for p in parse_documents(docs(MANIFESTS)).all_pods()]
    scaled = [p.name for p in parse_documents(docs(MANIFESTS.replace("replicas: 3", "replicas: 4"))).all_pods()]
    assert set(first) < set(scaled)  # scaling keeps the pods that stay
    changed = [p.name for p in parse_documents(docs(MANIFESTS.replace("8080", "8081"))).all_pods()]
    assert not {n for n in first if n.startswith("web-")} & set(changed)  # a new template renames (rollout)


@pytest.mark.parametrize(("change", "resource", "field", "reason"), [
    ("replicas: 3", "Deployment 'shop/web' (test.yaml)", "spec.replicas", "must be an integer >= 0"),
    ("containerPort: 8080", "Deployment 'shop/web' (test.yaml)",
     "spec.template.spec.containers[0].ports[0].containerPort", "must be an integer 1-65535"),
    ("protocol: UDP", "Deployment 'shop/web' (test.yaml)",
     "spec.template.spec.containers[0].ports[1].protocol", "must be one of TCP, UDP, SCTP"),
    ("name: http", "Deployment 'shop/web' (test.yaml)", "spec.template.spec.containers[0].ports[0].name",
     "IANA service name"),
    ("{app: web, tier: front}", "Deployment 'shop/web' (test.yaml)", "spec.template.metadata.labels",
     "must carry the selector's labels"),
    ("name: client", "Pod 'default/Client' (test.yaml)", "metadata.name", "lower-case RFC 1123"),
    ("kind: Service", "Servize 'shop/web' (test.yaml)", "apiVersion/kind", "v1/Servize is not supported"),
])
def test_validation_errors_name_object_field_and_reason(change, resource, field, reason):
    bad = {"replicas: 3": "replicas: -1", "containerPort: 8080": "containerPort: 70000",
           "protocol: UDP": "protocol: ICMP", "name: http": "name: Http_Port",
           "{app: web, tier: front}": "{app: shop}", "name: client": "name: Client",
           "kind: Service": "kind: Servize"}[change]
    with pytest.raises(ValidationError) as err:
        parse_documents(docs(MANIFESTS.replace(change, bad, 1)))
    assert err.value.resource == resource
    assert err.value.field == field
    assert reason in err.value.reason


def test_unknown_namespace_duplicate_ports_and_missing_containers_are_refused():
    with pytest.raises(ValidationError, match=r"Deployment 'shop/web'.*namespace 'shop' is not defined"):
        parse_documents(docs(MANIFESTS.split("---", 1)[1]))
    dup = MANIFESTS.replace("{name: dns, containerPort: 5353, protocol: UDP}", "{containerPort: 8080}")
    with pytest.raises(ValidationError, match=r"ports\[1\]\.containerPort: 8080/TCP is declared twice"):
        parse_documents(docs(dup))
    with pytest.raises(ValidationError, match=r"Pod 'default/client' \(test.yaml\): spec.containers: at least one"):
        parse_documents(docs(MANIFESTS.replace("containers: [{name: c, image: agnhost}]", "containers: []")))


def test_load_manifests_reads_a_folder_and_reports_yaml_errors(tmp_path):
    (tmp_path / "a.yaml").write_text(MANIFESTS)
    assert len(load_manifests(tmp_path).all_pods()) == 4
    (tmp_path / "b.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(ValidationError, match=r"manifest b.yaml: yaml:"):
        load_manifests(tmp_path)


def pod(name: str, node: str | None = None) -> Pod:
    return Pod("default", name, node_name=node)


def test_scheduler_spreads_keeps_running_pods_and_honours_node_name():
    pods = [pod(f"p{i}") for i in range(5)] + [pod("pinned", "n1")]
    placed = schedule(pods, ["n2", "n1", "n3"])
    assert placed == schedule(list(reversed(pods)), ["n3", "n2", "n1"])  # deterministic
    counts = sorted(list(placed.values()).count(n) for n in ("n1", "n2", "n3"))
    assert counts == [2, 2, 2]
    assert placed["default/pinned"] == "n1"
    # a new node does not move running pods; new pods fill it first
    again = schedule([*pods, pod("p9")], ["n1", "n2", "n3", "n4"], current=placed)
    assert {k: v for k, v in again.items() if k in placed} == placed
    assert again["default/p9"] == "n4"
    # a pod whose node went away is placed again
    moved = schedule(pods, ["n1", "n2"], current=placed)
    assert set(moved.values()) <= {"n1", "n2"}
    with pytest.raises(ValidationError, match=r"Pod 'default/x': spec.nodeName: node 'n9' is not a node"):
        schedule([pod("x", "n9")], ["n1"])


def test_ipam_node_cidrs_host_local_and_stable_assignment():
    cidrs = ipam.node_pod_cidrs("10.244.0.0/16", ["b", "a"])
    assert cidrs == {"a": ipaddress.IPv4Network("10.244.0.0/24"), "b": ipaddress.IPv4Network("10.244.1.0/24")}
    pool = ipam.host_local_pool(cidrs["a"])
    assert ipam.bridge_gateway(cidrs["a"]) == ipaddress.IPv4Address("10.244.0.1")
    assert str(pool[0]) == "10.244.0.2" and str(pool[-1]) == "10.244.0.254"
    first = ipam.assign(["ns/b", "ns/a"], pool, {}, "node a")
    assert {k: str(v) for k, v in first.items()} == {"ns/a": "10.244.0.2", "ns/b": "10.244.0.3"}
    later = ipam.assign(["ns/b", "ns/0"], pool, {k: str(v) for k, v in first.items()}, "node a")
    assert str(later["ns/b"]) == "10.244.0.3" and str(later["ns/0"]) == "10.244.0.2"
    with pytest.raises(ValidationError, match="no free pod address left for ns/c"):
        ipam.assign(["ns/a", "ns/b", "ns/c"], pool[:2], {}, "node a")
    with pytest.raises(ValidationError, match="room for fewer than 3"):
        ipam.node_pod_cidrs("10.244.0.0/23", ["a", "b", "c"])
    assert ipam.overlay_mtu(1500) == 1450
    assert ipam.vtep_mac("192.168.1.10") == "0e:fe:c0:a8:01:0a"


def test_pod_namespaces_carry_the_lab_mark_and_fit_limits():
    from netns.model import names

    name = names.pod_netns_name("abcdefghijklmnop", "kube-system", "x" * 63)
    assert name.startswith("acklab-abcdefghijklmnop-pod-") and len(name) == 38
    assert names.lab_of(name) == "abcdefghijklmnop"
    assert names.pod_netns_name("a", "ns", "p") == names.pod_netns_name("a", "ns", "p")
    assert names.pod_netns_name("a", "ns", "p") != names.pod_netns_name("a", "ns", "q")
    assert names.lab_of("acklab-a-pod-xyz") is None


def test_plan_per_datapath_and_network_errors():
    from acklab.k8s.model.pod_network import Network, Node, plan

    cluster = parse_documents(docs(MANIFESTS))
    nodes = (Node("node-a", "ns-a", "192.168.1.10", "10.244.0.0/24"), Node("node-b", "ns-b", "192.168.1.11",
                                                                             "10.244.1.0/24"))
    with pytest.raises(ValidationError, match=r"Pod 'default/client': spec.nodeName: node 'node-b'"):
        plan(Network("l", "vxlan", nodes[:1], "10.244.0.0/16"), cluster, {})
    placed = plan(Network("l", "vxlan", nodes, "10.244.0.0/16"), cluster, {})
    client = placed["default/client"]
    assert (client.node, client.ip, client.gateway, client.prefixlen, client.mtu) == \
        ("node-b", "10.244.1.2", "10.244.1.1", 24, 1450)
    assert plan(Network("l", "vpc-route", nodes, "10.244.0.0/16"), cluster, {})["default/client"].mtu == 1500
    eni = tuple(Node(n.name, n.netns, n.ip, None, "eth1", "192.168.3.253", (f"192.168.3.{i}0", f"192.168.3.{i}1"))
                for i, n in enumerate(nodes, start=1))
    terway = plan(Network("l", "terway-eniip", eni), cluster, {})
    assert {p.ip for p in terway.values()} <= {"192.168.3.10", "192.168.3.11", "192.168.3.20", "192.168.3.21"}
    assert all(p.prefixlen == 32 and p.gateway == "169.254.1.1" for p in terway.values())
    with pytest.raises(ValidationError, match=r"cluster of lab l: datapath: 'calico' must be one of"):
        plan(Network("l", "calico", nodes, "10.244.0.0/16"), cluster, {})
    with pytest.raises(ValidationError, match=r"node node-a: pod_cidr: '10.9.0.0/24' must be a block inside"):
        plan(Network("l", "vpc-route", (Node("node-a", "ns", "1.1.1.1", "10.9.0.0/24"),), "10.244.0.0/16"),
             cluster, {})
    with pytest.raises(ValidationError, match=r"node node-a: secondary ENI: terway-eniip needs"):
        plan(Network("l", "terway-eniip", nodes), cluster, {})
    with pytest.raises(ValidationError, match=r"cluster of lab l: datapath: terway-eni makes an ENI per pod through "
                                              r"the API's node agent"):
        plan(Network("l", "terway-eni", eni), cluster, {})
    with pytest.raises(ValidationError, match=r"node node-a: pods: no free pod address left for shop/web-"):
        small = tuple(Node(n.name, n.netns, n.ip, None, "eth1", "192.168.3.253", (f"192.168.3.{i}0",))
                      for i, n in enumerate(nodes, start=1))
        plan(Network("l", "terway-eniip", small), cluster, {})


def test_a_pod_record_keeps_its_exclusive_eni_and_older_records_read_back():
    from acklab.k8s.model.objects import Pod
    from acklab.k8s.realize.pod_network import PodRecord

    pod = Pod("default", "web", {"app": "web"}, ())
    record = PodRecord(pod, "node-1", "192.168.3.7", "acklab-x-pod", "cali0123", "terway-eni", "acklab-x-n1", "eth2")
    assert PodRecord.from_dict(record.to_dict()) == record
    shared = PodRecord(pod, "node-1", "192.168.3.7", "acklab-x-pod", "cali0123", "terway-eniip", "acklab-x-n1")
    assert "eni" not in shared.to_dict() and PodRecord.from_dict(shared.to_dict()) == shared
