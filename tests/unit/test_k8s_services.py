"""Service manifests + pods → kube-proxy's input: endpoints, targetPort by name, NodePort allocation."""

import pytest

from acklab.k8s.model import kube_proxy_rules as kp
from acklab.k8s.model.services import PodEndpoint, allocate_node_ports, health_check_key, node_port_key, resolve
from netns.model.errors import ValidationError


def service(name="web", ns="default", type_="ClusterIP", cluster_ip="172.21.0.10", ports=None, **spec):
    body = {"type": type_, "selector": {"app": name}}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    body["ports"] = ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080}]
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": body}


def pod(name, ip, node="node1", app="web", ready=True, ports=(("http", 8080),), ns="default", **kw):
    return {
        "name": name,
        "namespace": ns,
        "labels": {"app": app},
        "ip": ip,
        "node": node,
        "ready": ready,
        "ports": [{"name": n, "port": p} for n, p in ports],
        **kw,
    }


def test_cluster_ip_endpoints_from_matching_pods():
    pods = [
        pod("a", "10.0.1.2"),
        pod("b", "10.0.2.2", node="node2", ready=False),
        pod("other", "10.0.1.3", app="db"),
        pod("elsewhere", "10.0.1.4", ns="prod"),
        pod("pending", None),
    ]
    [sp] = resolve([service()], pods, node="node1").service_ports
    assert (sp.namespace, sp.name, sp.port_name, sp.protocol, sp.cluster_ip, sp.port, sp.node_port) == (
        "default",
        "web",
        "http",
        "TCP",
        "172.21.0.10",
        80,
        0,
    )
    assert sp.endpoints == (
        kp.Endpoint("10.0.1.2", 8080, ready=True, serving=True, terminating=False, is_local=True),
        kp.Endpoint("10.0.2.2", 8080, ready=False, serving=False, terminating=False, is_local=False),
    )


def test_locality_is_per_node():
    pods = [pod("a", "10.0.1.2", node="node1"), pod("b", "10.0.2.2", node="node2")]
    on2 = resolve([service()], pods, node="node2").service_ports[0]
    assert [ep.is_local for ep in on2.endpoints] == [False, True]


def test_target_port_by_name_is_resolved_per_pod_and_protocol():
    svc = service(ports=[{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"}])
    pods = [
        pod("a", "10.0.1.2", ports=()) | {"ports": [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}]},
        pod("b", "10.0.1.3", ports=()) | {"ports": [{"name": "dns", "port": 1053, "protocol": "UDP"}]},
        pod("tcp-only", "10.0.1.4", ports=()) | {"ports": [{"name": "dns", "port": 53, "protocol": "TCP"}]},
        pod("unnamed", "10.0.1.5", ports=(("metrics", 9090),)),
    ]
    [sp] = resolve([svc], pods, node="node1").service_ports
    assert [(ep.ip, ep.port) for ep in sp.endpoints] == [("10.0.1.2", 5353), ("10.0.1.3", 1053)]
    text = kp.compile_rules([sp])
    assert "-m udp -p udp -j DNAT --to-destination 10.0.1.2:5353" in text
    assert "--to-destination 10.0.1.3:1053" in text


def test_target_port_defaults_to_port():
    [sp] = resolve([service(ports=[{"port": 80}])], [pod("a", "10.0.1.2")], node="node1").service_ports
    assert sp.port_name == "" and sp.endpoints[0].port == 80


@pytest.mark.parametrize("svc", [service(cluster_ip="None"), service(type_="ExternalName", externalName="db.example")])
def test_headless_and_external_name_get_no_rules(svc):
    result = resolve([svc], [pod("a", "10.0.1.2")], node="node1")
    assert result.service_ports == () and result.node_ports == {}


def test_publish_not_ready_addresses_and_terminating_pods():
    svc = service(publishNotReadyAddresses=True)
    pods = [pod("a", "10.0.1.2", ready=False), pod("b", "10.0.1.3", terminating=True)]
    [sp] = resolve([svc], pods, node="node1").service_ports
    assert [(ep.ready, ep.serving, ep.terminating) for ep in sp.endpoints] == [(True, True, False), (False, True, True)]


def test_node_ports_are_allocated_lowest_free_and_kept_stable():
    a = service("a", type_="NodePort")
    b = service("b", type_="NodePort", cluster_ip="172.21.0.11")
    first = allocate_node_ports([a, b])
    assert first == {
        node_port_key("default", "a", "http", "TCP"): 30000,
        node_port_key("default", "b", "http", "TCP"): 30001,
    }
    # A new Service sorted first does not shift what was allocated before.
    aa = service("aa", type_="NodePort", cluster_ip="172.21.0.12")
    second = allocate_node_ports([a, b, aa], previous=first)
    assert {k: second[k] for k in first} == first
    assert second[node_port_key("default", "aa", "http", "TCP")] == 30002
    # A deleted Service frees its port; the others keep theirs.
    third = allocate_node_ports([b, aa], previous=second)
    assert third == {k: v for k, v in second.items() if "/a:" not in k}


def test_explicit_node_port_is_honoured_and_wins_over_a_previous_allocation():
    a = service("a", type_="NodePort")
    prev = allocate_node_ports([a])
    b = service(
        "b", type_="NodePort", cluster_ip="172.21.0.11", ports=[{"name": "http", "port": 80, "nodePort": 30000}]
    )
    got = allocate_node_ports([a, b], previous=prev)
    assert got[node_port_key("default", "b", "http", "TCP")] == 30000
    assert got[node_port_key("default", "a", "http", "TCP")] == 30001


def test_node_port_clash_names_the_service_and_field():
    a = service("a", type_="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}])
    b = service("b", type_="NodePort", cluster_ip="172.21.0.11", ports=[{"name": "x", "port": 81, "nodePort": 30080}])
    with pytest.raises(ValidationError) as err:
        allocate_node_ports([a, b])
    assert err.value.resource == "Service default/b"
    assert err.value.field == "spec.ports[0].nodePort"
    assert "Service default/a" in err.value.reason


def test_one_service_may_share_a_node_port_between_tcp_and_udp_only():
    ports = [
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053},
        {"name": "dns-udp", "port": 53, "protocol": "UDP", "nodePort": 30053},
    ]
    assert set(allocate_node_ports([service(type_="NodePort", ports=ports)]).values()) == {30053}
    ports[1]["protocol"] = "TCP"
    with pytest.raises(ValidationError, match=r"spec.ports\[1\].nodePort"):
        allocate_node_ports([service(type_="NodePort", ports=ports)])


@pytest.mark.parametrize(
    ("svc", "field"),
    [
        (service(type_="NodePort", ports=[{"name": "h", "port": 80, "nodePort": 80}]), "spec.ports[0].nodePort"),
        (service(ports=[{"name": "h", "port": 80, "nodePort": 30080}]), "spec.ports[0].nodePort"),
        (service(ports=[{"port": 80}, {"port": 81, "name": "b"}]), "spec.ports[0].name"),
        (service(ports=[{"name": "h", "port": 80}, {"name": "h", "port": 81}]), "spec.ports[1].name"),
        (service(ports=[{"name": "h", "port": 0}]), "spec.ports[0].port"),
        (service(ports=[{"name": "h", "port": 80, "protocol": "ICMP"}]), "spec.ports[0].protocol"),
        (service(ports=[]), "spec.ports"),
        (service(cluster_ip="172.21.0"), "spec.clusterIP"),
        (service(cluster_ip="10.96.0.10"), "spec.clusterIP"),  # outside the service CIDR
        (service(cluster_ip="172.21.0.1"), "spec.clusterIP"),  # the `kubernetes` Service's
        (service(type_="Ingress"), "spec.type"),
        (service(sessionAffinity="Cookie"), "spec.sessionAffinity"),
        (service(externalTrafficPolicy="Nearest"), "spec.externalTrafficPolicy"),
    ],
)
def test_bad_manifests_are_refused_naming_service_and_field(svc, field):
    with pytest.raises(ValidationError) as err:
        resolve([svc], [], node="node1")
    assert err.value.resource == "Service default/web"
    assert err.value.field == field


def test_load_balancer_with_local_policy_source_ranges_and_affinity():
    svc = service(
        type_="LoadBalancer",
        externalTrafficPolicy="Local",
        internalTrafficPolicy="Local",
        loadBalancerSourceRanges=[" 203.0.113.0/24 ", "198.51.100.7/32"],
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
    )
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "47.1.2.3"}, {"hostname": "lb.example"}]}}
    result = resolve([svc], [pod("a", "10.0.1.2")], node="node1")
    [sp] = result.service_ports
    assert sp.load_balancer_ips == ("47.1.2.3",)
    assert sp.load_balancer_source_ranges == ("203.0.113.0/24", "198.51.100.7/32")
    assert sp.external_policy_local and sp.internal_policy_local
    assert (sp.session_affinity, sp.sticky_max_age_seconds) == ("ClientIP", 60)
    assert sp.node_port == 30000
    assert sp.health_check_node_port == result.node_ports[health_check_key("default", "web")] == 30001
    assert "--rcheck --seconds 60 --reap" in kp.compile_rules(result.service_ports)


def test_load_balancer_without_node_ports_and_cluster_policy_defaults():
    svc = service(type_="LoadBalancer", allocateLoadBalancerNodePorts=False, externalTrafficPolicy="Local")
    [sp] = resolve([svc], [pod("a", "10.0.1.2")], node="node1").service_ports
    assert sp.node_port == 0 and sp.health_check_node_port == 30000
    [plain] = resolve([service()], [], node="node1").service_ports
    assert not plain.external_policy_local and not plain.internal_policy_local
    assert (plain.session_affinity, plain.sticky_max_age_seconds) == ("None", 10800)
    # externalTrafficPolicy only means something for externally reachable Services.
    [cip] = resolve([service(externalTrafficPolicy="Local")], [], node="node1").service_ports
    assert not cip.external_policy_local


def test_service_without_selector_has_no_endpoints():
    svc = service()
    del svc["spec"]["selector"]
    [sp] = resolve([svc], [pod("a", "10.0.1.2")], node="node1").service_ports
    assert sp.endpoints == ()
    assert "has no endpoints" in kp.compile_rules([sp])


def test_same_inputs_give_the_same_rules():
    svcs = [service("a", type_="NodePort"), service("b", cluster_ip="172.21.0.11")]
    pods = [pod("p1", "10.0.1.2", app="a"), pod("p2", "10.0.1.3", app="b"), pod("p3", "10.0.2.3", node="n2", app="b")]
    first = resolve(svcs, pods, node="node1")
    again = resolve(list(reversed(svcs)), [PodEndpoint.from_dict(p) for p in reversed(pods)], "node1", first.node_ports)
    assert kp.compile_rules(again.service_ports) == kp.compile_rules(first.service_ports)
    assert again.node_ports == first.node_ports


def test_cluster_ips_are_allocated_lowest_free_kept_stable_and_explicit_ones_win():
    from acklab.k8s.model.services import allocate_cluster_ips

    a, b = service("a", cluster_ip=None), service("b", cluster_ip=None)
    first = allocate_cluster_ips([a, b])
    assert first == {"default/a": "172.21.0.2", "default/b": "172.21.0.3"}
    c = service("c", cluster_ip="172.21.0.3")  # takes b's address explicitly: b moves, a stays
    again = allocate_cluster_ips([a, b, c], previous=first)
    assert again == {"default/a": "172.21.0.2", "default/b": "172.21.0.4", "default/c": "172.21.0.3"}
    # a later run with b gone keeps everyone else where they were
    assert allocate_cluster_ips([a, c], previous=again) == {"default/a": "172.21.0.2", "default/c": "172.21.0.3"}
    headless = service("h", cluster_ip="None")
    assert "default/h" not in allocate_cluster_ips([a, headless])


def test_cluster_ip_clash_and_full_range_name_the_service_and_field():
    from acklab.k8s.model.services import allocate_cluster_ips

    with pytest.raises(ValidationError) as err:
        allocate_cluster_ips([service("a", cluster_ip="172.21.0.9"), service("b", cluster_ip="172.21.0.9")])
    assert (err.value.resource, err.value.field) == ("Service default/b", "spec.clusterIP")
    assert "already allocated to Service default/a" in str(err.value)
    with pytest.raises(ValidationError) as err:
        allocate_cluster_ips([service(n, cluster_ip=None) for n in ("a", "b")], service_cidr="172.21.0.0/30")
    assert "no free address" in str(err.value)


def test_resolve_fills_allocated_cluster_ips():
    r = resolve([service("web", cluster_ip=None)], [pod("p1", "10.0.0.1")], node="node1")
    assert r.cluster_ips == {"default/web": "172.21.0.2"}
    assert r.service_ports[0].cluster_ip == "172.21.0.2"
