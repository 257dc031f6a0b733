"""LoadBalancer Services (as the API server returns them: ClusterIP, NodePorts filled in) → the SLB ACK's CCM
would make (pure)."""

import copy

import pytest

from acklab.k8s.model import load_balancer as ccm  # the cloud controller manager's share
from acklab.k8s.model.services import allocate, health_check_key, node_port_key, service_key
from netns.model.errors import ValidationError


def lb_service(name="web", annotations=None, ports=None, **spec):
    body = {"type": "LoadBalancer", "selector": {"app": name},
            "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080}], **spec}
    meta = {"name": name, "namespace": "demo", "annotations": annotations or {}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": body}


def with_allocations(*services):
    """The Services as the API server returns them: ClusterIP, NodePorts and the health-check NodePort filled in
    by kube-apiserver's allocation rules (acklab.k8s.model.services.allocate)."""
    allocations, out = allocate(services), []
    for manifest in services:
        svc = copy.deepcopy(manifest)
        namespace, name, spec = svc["metadata"]["namespace"], svc["metadata"]["name"], svc["spec"]
        spec["clusterIP"] = allocations.cluster_ips[service_key(namespace, name)]
        for port in spec.get("ports") or []:
            key = node_port_key(namespace, name, str(port.get("name") or ""), port.get("protocol", "TCP"))
            if key in allocations.node_ports:
                port["nodePort"] = allocations.node_ports[key]
        if health_check_key(namespace, name) in allocations.node_ports:
            spec["healthCheckNodePort"] = allocations.node_ports[health_check_key(namespace, name)]
        out.append(svc)
    return out


def test_allocations_as_the_api_server_fills_them():
    svc = with_allocations(lb_service())[0]
    assert svc["spec"]["clusterIP"] == "172.21.0.2"
    assert svc["spec"]["ports"][0]["nodePort"] == 30000


def test_defaults_are_acks_internet_rr_one_tcp_listener_per_port_to_its_node_port():
    services = with_allocations(lb_service(ports=[{"name": "http", "port": 80}, {"name": "alt", "port": 8080}]))
    (lb,) = ccm.load_balancers(services)
    assert (lb.address_type, lb.scheduler, lb.spec, lb.lb_name) == ("internet", "rr", "slb.s1.small", "demo-web")
    assert [(x.port, x.protocol, x.node_port) for x in lb.listeners] == [(80, "tcp", 30000), (8080, "tcp", 30001)]
    assert lb.resource_name == "svc-demo-web" and lb.key == "demo/web"


def test_annotations_and_source_ranges():
    notes = {ccm.ADDRESS_TYPE: "intranet", ccm.SCHEDULER: "wrr", ccm.PROTOCOL_PORT: "http:80",
             ccm.SPEC: "slb.s2.small", ccm.NAME: "shop"}
    (lb,) = ccm.load_balancers(with_allocations(lb_service(annotations=notes,
                                                           loadBalancerSourceRanges=["192.168.2.0/24"])))
    assert (lb.address_type, lb.scheduler, lb.spec, lb.lb_name) == ("intranet", "wrr", "slb.s2.small", "shop")
    assert lb.listeners[0].protocol == "http"
    assert lb.source_ranges == ("192.168.2.0/24",)


def test_other_service_types_get_no_slb():
    node_port = lb_service()
    node_port["spec"]["type"] = "NodePort"
    assert ccm.load_balancers(with_allocations(node_port)) == []


@pytest.mark.parametrize(
    ("service", "field", "reason"),
    [
        (lb_service(annotations={ccm.ADDRESS_TYPE: "public"}), f"metadata.annotations[{ccm.ADDRESS_TYPE}]",
         "'public' is not internet or intranet"),
        (lb_service(annotations={ccm.SCHEDULER: "fastest"}), f"metadata.annotations[{ccm.SCHEDULER}]",
         "'fastest' is not one of rr, wrr, wlc"),
        (lb_service(annotations={ccm.PROTOCOL_PORT: "https:80"}), f"metadata.annotations[{ccm.PROTOCOL_PORT}]",
         "'https:80' is not protocol:port"),
        (lb_service(annotations={ccm.PROTOCOL_PORT: "http:81"}), f"metadata.annotations[{ccm.PROTOCOL_PORT}]",
         "port 81 is not a port of the Service"),
        (lb_service(ports=[{"name": "sig", "port": 3868, "protocol": "SCTP"}]), "spec.ports[0].protocol",
         "SCTP: acklab's SLB has tcp, udp and http listeners (no SCTP)"),
        (lb_service(annotations={ccm.PROTOCOL_PORT: "udp:80"}), f"metadata.annotations[{ccm.PROTOCOL_PORT}]",
         "udp:80 needs a UDP port 80; the Service's is not UDP"),
        (lb_service(annotations={ccm.PROTOCOL_PORT: "tcp:80,http:80"}), f"metadata.annotations[{ccm.PROTOCOL_PORT}]",
         "port 80 is named twice for TCP"),
        (lb_service(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}], annotations={ccm.PROXY_PROTOCOL: "on"}),
         f"metadata.annotations[{ccm.PROXY_PROTOCOL}]", "a PROXY header is not built for udp listeners"),
        (lb_service(annotations={ccm.PERSISTENCE: "60", ccm.PROTOCOL_PORT: "http:80"}),
         f"metadata.annotations[{ccm.PERSISTENCE}]", "is for tcp and udp listeners only"),
        (lb_service(allocateLoadBalancerNodePorts=False), "spec.ports[0].nodePort", "is not allocated"),
        (lb_service(annotations={ccm.PERSISTENCE: "5000"}), f"metadata.annotations[{ccm.PERSISTENCE}]",
         "is not 0-3600"),
    ],
)
def test_bad_services_are_refused_naming_service_field_and_reason(service, field, reason):
    with pytest.raises(ValidationError) as err:
        ccm.load_balancers(with_allocations(service))
    assert err.value.resource == "Service demo/web"
    assert err.value.field == field
    assert reason in err.value.reason


# --- the annotations the controller on the API reads -------------------------------------------------------------

def test_health_check_annotations_become_listener_arguments():
    notes = {ccm.HEALTH_FLAG: "on", ccm.HEALTH_TYPE: "http", ccm.HEALTH_URI: "/ready", ccm.HEALTH_PORT: "8081",
             ccm.HEALTH_INTERVAL: "3", ccm.HEALTH_TIMEOUT: "4", ccm.HEALTHY: "2", ccm.UNHEALTHY: "5",
             ccm.HEALTH_CODE: "http_2xx,http_3xx", ccm.HEALTH_DOMAIN: "web.example"}
    (lb,) = ccm.load_balancers(with_allocations(lb_service(annotations=notes)))
    args = ccm.listener_args(lb, lb.listeners[0])
    assert args == {"frontend_port": 80, "protocol": "tcp", "backend_port": 30000, "scheduler": "rr",
                    "health_check": "on", "health_check_type": "http", "health_check_uri": "/ready",
                    "health_check_connect_port": 8081, "health_check_interval": 3, "health_check_timeout": 4,
                    "healthy_threshold": 2, "unhealthy_threshold": 5, "health_check_http_code": "http_2xx,http_3xx",
                    "health_check_domain": "web.example"}


def test_tcp_health_check_takes_the_connect_timeout():
    notes = {ccm.HEALTH_TYPE: "tcp", ccm.HEALTH_CONNECT_TIMEOUT: "7", ccm.HEALTH_TIMEOUT: "9"}
    (lb,) = ccm.load_balancers(with_allocations(lb_service(annotations=notes)))
    assert dict(lb.health)["health_check_timeout"] == 7


def test_external_traffic_policy_local_checks_kube_proxys_health_node_port():
    svc = with_allocations(lb_service(externalTrafficPolicy="Local"))[0]
    svc["spec"]["healthCheckNodePort"] = 32123
    lb = ccm.load_balancer_spec(svc)
    args = ccm.listener_args(lb, lb.listeners[0])
    assert (args["health_check_type"], args["health_check_uri"], args["health_check_connect_port"]) == \
        ("http", "/healthz", 32123)


def test_source_ranges_use_the_slbs_own_acl_and_an_acl_annotation_an_existing_one():
    (lb,) = ccm.load_balancers(with_allocations(lb_service(loadBalancerSourceRanges=["10.0.0.0/8"])))
    assert ccm.listener_args(lb, lb.listeners[0], "acl-1234abcd")["acl_id"] == "acl-1234abcd"
    assert ccm.acl_of("lb-1234abcd") == "acl-1234abcd"
    notes = {ccm.ACL_STATUS: "on", ccm.ACL_ID: "acl-00000042", ccm.ACL_TYPE: "black"}
    (lb,) = ccm.load_balancers(with_allocations(lb_service(annotations=notes)))
    args = ccm.listener_args(lb, lb.listeners[0])
    assert (args["acl_status"], args["acl_type"], args["acl_id"]) == ("on", "black", "acl-00000042")


def test_udp_ports_get_udp_listeners_and_a_port_number_both_tcp_and_udp_gets_both():
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
             {"name": "game", "port": 7000, "protocol": "UDP"}]
    notes = {ccm.PROTOCOL_PORT: "udp:53", ccm.PERSISTENCE: "30"}
    (lb,) = ccm.load_balancers(with_allocations(lb_service(ports=ports, annotations=notes)))
    assert [(x.port, x.protocol) for x in lb.listeners] == [(53, "udp"), (53, "tcp"), (7000, "udp")]
    args = ccm.listener_args(lb, lb.listeners[0])
    assert (args["protocol"], args["backend_port"], args["persistence_timeout"]) == ("udp", lb.listeners[0].node_port,
                                                                                    30)


def test_a_udp_listener_keeps_its_udp_check_under_etp_local_and_http_annotations():
    svc = with_allocations(lb_service(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}],
                                      annotations={ccm.HEALTH_TYPE: "http", ccm.HEALTH_URI: "/ready"},
                                      externalTrafficPolicy="Local"))[0]
    svc["spec"]["healthCheckNodePort"] = 32123
    lb = ccm.load_balancer_spec(svc)
    args = ccm.listener_args(lb, lb.listeners[0])
    assert not {"health_check_type", "health_check_uri", "health_check_connect_port"} & set(args)


def test_drain_and_proxy_protocol_become_the_layer_4_listeners_arguments():
    notes = {ccm.DRAIN: "on", ccm.DRAIN_TIMEOUT: "30", ccm.PROXY_PROTOCOL: "on", ccm.PROTOCOL_PORT: "http:81"}
    ports = [{"name": "a", "port": 80}, {"name": "b", "port": 81}]
    (lb,) = ccm.load_balancers(with_allocations(lb_service(ports=ports, annotations=notes)))
    tcp, http = (ccm.listener_args(lb, x) for x in lb.listeners)
    assert (tcp["connection_drain"], tcp["connection_drain_timeout"], tcp["proxy_protocol_v2_enabled"]) == \
        ("on", 30, True)
    assert not {"connection_drain", "proxy_protocol_v2_enabled"} & set(http)


def test_drain_vswitch_and_backend_label_are_kept():
    notes = {ccm.DRAIN: "on", ccm.DRAIN_TIMEOUT: "30", ccm.VSWITCH: "vsw-0000000a", ccm.BACKEND_LABEL: "pool=a, x=y",
             ccm.ADDRESS_TYPE: "intranet"}
    (lb,) = ccm.load_balancers(with_allocations(lb_service(annotations=notes)))
    assert (lb.drain_timeout, lb.vswitch_id, lb.backend_label) == (30, "vsw-0000000a", (("pool", "a"), ("x", "y")))


@pytest.mark.parametrize(
    ("notes", "spec", "field", "reason"),
    [
        ({ccm.HEALTH_FLAG: "yes"}, {}, ccm.HEALTH_FLAG, "'yes' is not on or off"),
        ({ccm.HEALTH_TYPE: "udp"}, {}, ccm.HEALTH_TYPE, "'udp' is not tcp or http"),
        ({ccm.HEALTHY: "1"}, {}, ccm.HEALTHY, "'1' is not a whole number 2-10"),
        ({ccm.HEALTH_PORT: "x"}, {}, ccm.HEALTH_PORT, "'x' is not a whole number 1-65535"),
        ({ccm.ACL_STATUS: "on"}, {}, ccm.ACL_ID, "is required when acl-status is on"),
        ({ccm.ACL_STATUS: "on", ccm.ACL_ID: "acl-1"}, {"loadBalancerSourceRanges": ["10.0.0.0/8"]}, ccm.ACL_ID,
         "and spec.loadBalancerSourceRanges both set the listeners' ACL: use one"),
        ({ccm.DRAIN: "on"}, {}, ccm.DRAIN_TIMEOUT, "is required when connection-drain is on"),
        ({ccm.BACKEND_LABEL: "pool"}, {}, ccm.BACKEND_LABEL, "'pool' is not key=value"),
    ],
)
def test_bad_controller_annotations_are_refused(notes, spec, field, reason):
    with pytest.raises(ValidationError) as err:
        ccm.load_balancers(with_allocations(lb_service(annotations=notes, **spec)))
    assert err.value.field == f"metadata.annotations[{field}]"
    assert err.value.reason == reason


def test_the_slbs_own_validation_runs_before_anything_is_made():
    # an http listener checks over http: the SLB's model refuses a tcp check, before any SLB exists
    notes = {ccm.PROTOCOL_PORT: "http:80", ccm.HEALTH_TYPE: "tcp"}
    with pytest.raises(ValidationError) as err:
        ccm.load_balancers(with_allocations(lb_service(annotations=notes)))
    assert err.value.field == "health_check_type"
