"""LoadBalancer Services → the SLB ACK's CCM would make (pure), and Services as the API server returns them."""

import pytest

from acklab.k8s import apiserver, ccm
from acklab.k8s.services import allocate
from netns.model.errors import ValidationError


def lb_service(name="web", annotations=None, ports=None, **spec):
    body = {"type": "LoadBalancer", "selector": {"app": name},
            "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080}], **spec}
    meta = {"name": name, "namespace": "demo", "annotations": annotations or {}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": body}


def with_allocations(*services):
    return apiserver.with_status(services, allocate(services), {"demo/web": "203.0.113.10"})


def test_with_status_fills_cluster_ip_node_ports_and_the_slb_address():
    svc = with_allocations(lb_service())[0]
    assert svc["spec"]["clusterIP"] == "172.21.0.2"
    assert svc["spec"]["ports"][0]["nodePort"] == 30000
    assert svc["status"] == {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}


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
        (lb_service(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]), "spec.ports[0].protocol",
         "TCP listeners only"),
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
