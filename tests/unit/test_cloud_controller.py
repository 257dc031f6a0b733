"""The cloud controller's pure share: Nodes → ECS ids, the steps from what exists to what is wanted, the queue."""

import threading
import time

from acklab.k8s.informer import WorkQueue
from acklab.k8s.model import load_balancer as ccm  # the cloud controller manager's share


def service(uid="u-1", annotations=None, ports=((80, 30000),), **spec):
    meta = {"name": "web", "namespace": "demo", "uid": uid, "annotations": annotations or {}}
    body = {"type": "LoadBalancer", "ports": [{"port": p, "nodePort": n, "protocol": "TCP"} for p, n in ports],
            **spec}
    return {"metadata": meta, "spec": body}


def node(name, provider=None, ip=None, labels=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"providerID": provider} if provider else {},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}] if ip else []}}


def actual(lb, servers, lb_id="lb-0000abcd", **changes):
    listeners = {(x.protocol, x.port): ccm.listener_args(lb, x, ccm.acl_of(lb_id) if lb.source_ranges else None)
                 for x in lb.listeners}
    base = {"lb_id": lb_id, "name": lb.lb_name, "address": "203.0.113.10", "address_type": lb.address_type,
            "vswitch_id": None, "listeners": listeners, "backends": servers,
            "acl_entries": tuple(sorted(lb.source_ranges)) or None}
    return ccm.ActualLb(**{**base, **changes})


# --- Node → ECS instance id -----------------------------------------------------------------------------------

def test_provider_id_names_the_instance_else_the_internal_ip():
    ecs = {"192.168.1.11": "i-00000002"}
    assert ccm.node_instance_id(node("a", provider="cn-hangzhou.i-00000001"), ecs) == "i-00000001"
    assert ccm.node_instance_id(node("b", ip="192.168.1.11"), ecs) == "i-00000002"
    assert ccm.node_instance_id(node("c", ip="192.168.1.99"), ecs) is None
    assert ccm.node_instance_id(node("d", provider="kind://docker/x"), ecs) is None


def test_backends_leave_out_excluded_nodes_and_follow_the_backend_label():
    lb = ccm.load_balancer_spec(service())
    nodes = [node("a", "cn-hangzhou.i-00000002"), node("b", "cn-hangzhou.i-00000001", labels={"pool": "x"}),
             node("c", "cn-hangzhou.i-00000003", labels={ccm.EXCLUDE_LABELS[0]: ""}), node("d")]
    assert ccm.backend_servers(lb, nodes, {}) == ("i-00000001", "i-00000002")
    labelled = ccm.load_balancer_spec(service(annotations={ccm.BACKEND_LABEL: "pool=x"}))
    assert ccm.backend_servers(labelled, nodes, {}) == ("i-00000001",)


# --- decide: what exists → what is wanted ---------------------------------------------------------------------

def test_a_new_service_gets_create_backends_then_a_listener_per_port():
    lb = ccm.load_balancer_spec(service(ports=((80, 30000), (443, 30001))))
    steps = ccm.decide(lb, ("i-1", "i-2"), None)
    assert [s.op for s in steps] == ["create", "backends", "put_listener", "put_listener"]
    assert steps[1].value == ("i-1", "i-2")
    assert [s.value["frontend_port"] for s in steps[2:]] == [80, 443]


def test_nothing_to_do_when_in_step():
    lb = ccm.load_balancer_spec(service())
    assert ccm.decide(lb, ("i-1",), actual(lb, ("i-1",))) == []


def test_a_second_port_is_a_second_listener_and_a_removed_one_goes():
    one = ccm.load_balancer_spec(service())
    two = ccm.load_balancer_spec(service(ports=((80, 30000), (8080, 30001))))
    assert [(s.op, s.value["frontend_port"]) for s in ccm.decide(two, ("i-1",), actual(one, ("i-1",)))] == \
        [("put_listener", 8080)]
    assert [(s.op, s.value) for s in ccm.decide(one, ("i-1",), actual(two, ("i-1",)))] == \
        [("delete_listener", ("tcp", 8080))]


def test_a_scheduler_change_updates_the_listeners_and_a_name_change_renames():
    rr = ccm.load_balancer_spec(service())
    wrr = ccm.load_balancer_spec(service(annotations={ccm.SCHEDULER: "wrr", ccm.NAME: "shop"}))
    steps = ccm.decide(wrr, ("i-1",), actual(rr, ("i-1",)))
    assert [s.op for s in steps] == ["rename", "put_listener"]
    assert steps[1].value["scheduler"] == "wrr"


def test_a_protocol_change_on_a_port_deletes_the_old_listener_first():
    tcp = ccm.load_balancer_spec(service())
    http = ccm.load_balancer_spec(service(annotations={ccm.PROTOCOL_PORT: "http:80"}))
    assert [s.op for s in ccm.decide(http, ("i-1",), actual(tcp, ("i-1",)))] == ["delete_listener", "put_listener"]


def test_nodes_changing_change_only_the_backends():
    lb = ccm.load_balancer_spec(service())
    steps = ccm.decide(lb, ("i-1", "i-3"), actual(lb, ("i-1",)))
    assert [(s.op, s.value) for s in steps] == [("backends", ("i-1", "i-3"))]


def test_an_address_type_change_makes_the_slb_anew():
    internet = ccm.load_balancer_spec(service())
    intranet = ccm.load_balancer_spec(service(annotations={ccm.ADDRESS_TYPE: "intranet"}))
    steps = ccm.decide(intranet, ("i-1",), actual(internet, ("i-1",)), "vsw-1")
    assert [s.op for s in steps] == ["delete", "create", "backends", "put_listener"]


def test_source_ranges_make_an_acl_before_the_listeners_and_drop_it_after():
    plain = ccm.load_balancer_spec(service())
    ranged = ccm.load_balancer_spec(service(loadBalancerSourceRanges=["10.0.0.0/8"]))
    steps = ccm.decide(ranged, ("i-1",), actual(plain, ("i-1",)))
    assert [s.op for s in steps] == ["acl", "put_listener"]
    assert steps[0].value == ("10.0.0.0/8",) and steps[1].value["acl_id"] == "acl-0000abcd"
    assert [s.op for s in ccm.decide(plain, ("i-1",), actual(ranged, ("i-1",)))] == ["put_listener", "drop_acl"]


def test_no_slb_wanted_deletes_what_exists():
    lb = ccm.load_balancer_spec(service())
    assert [s.op for s in ccm.decide(None, (), actual(lb, ("i-1",)))] == ["delete"]
    assert ccm.decide(None, (), None) == []


# --- the work queue -------------------------------------------------------------------------------------------

def test_queue_hands_a_key_out_once_and_again_after_done_if_added_meanwhile():
    queue = WorkQueue()
    queue.add("demo/web")
    queue.add("demo/web")
    assert queue.get(0.1) == "demo/web"
    queue.add("demo/web")  # while busy: waits for done
    assert queue.get(0.05) is None
    queue.done("demo/web")
    assert queue.get(0.1) == "demo/web"


def test_queue_delays_and_wakes_a_waiting_worker():
    queue = WorkQueue()
    queue.add("a", delay=1.0)
    assert queue.get(0.05) is None
    threading.Timer(0.05, lambda: queue.add("b")).start()
    begin = time.monotonic()
    assert queue.get(2.0) == "b" and time.monotonic() - begin < 0.9  # woken by add, not by "a" coming due
    assert queue.get(2.0) == "a"


# --- ENI backends (service.beta.kubernetes.io/backend-type: eni) --------------------------------------------------

def eni_service(target="http", node_port=None, **notes):
    svc = service(annotations={ccm.BACKEND_TYPE: "eni", **notes})
    svc["spec"]["ports"] = [{"name": "web", "port": 80, "targetPort": target, "protocol": "TCP",
                             **({"nodePort": node_port} if node_port else {})}]
    return svc


def endpoint_slice(*endpoints, port=8080, name="web"):
    return {"endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in endpoints],
            "ports": [{"name": name, "port": port, "protocol": "TCP"}]}


def test_eni_backends_are_the_ready_pods_on_their_enis_at_the_target_port():
    lb = ccm.load_balancer_spec(eni_service())  # no NodePort needed (allocateLoadBalancerNodePorts: false)
    assert lb.backend_type == "eni" and lb.listeners[0].node_port == 0
    held = {"10.0.0.5": "eni-00000001", "10.0.0.6": "eni-00000001", "10.0.0.9": "eni-00000002"}
    slices = [endpoint_slice(("10.0.0.5", True), ("10.0.0.6", False)),
              endpoint_slice(("10.0.0.9", True), ("172.20.0.7", True))]  # a bridge pod: on no ENI
    servers, ports = ccm.eni_backends(lb, slices, held)
    assert servers == ("eni-00000001/10.0.0.5", "eni-00000002/10.0.0.9") and ports == {80: 8080}
    steps = ccm.decide(lb, servers, None, None, ports)
    assert [s.op for s in steps] == ["create", "backends", "put_listener"]
    assert steps[2].value["backend_port"] == 8080 and "health_check_connect_port" not in steps[2].value
    assert ccm.parse_server(servers[0]) == ("eni-00000001", "10.0.0.5") and ccm.parse_server("i-1") == ("i-1", None)


def test_a_named_target_port_without_endpoints_makes_no_listener_yet_and_keeps_one_made():
    lb = ccm.load_balancer_spec(eni_service())
    servers, ports = ccm.eni_backends(lb, [], {})
    assert (servers, ports) == ((), {})
    assert [s.op for s in ccm.decide(lb, servers, None, None, ports)] == ["create", "backends"]
    made = actual(lb, ("eni-00000001/10.0.0.5",), listeners={("tcp", 80): ccm.listener_args(lb, lb.listeners[0],
                                                                                           backend_port=8080)})
    assert [s.op for s in ccm.decide(lb, servers, made, None, ports)] == ["backends"]  # the listener stays
    numeric = ccm.load_balancer_spec(eni_service(target=8081))
    assert ccm.eni_backends(numeric, [], {}) == ((), {80: 8081})


def test_a_bad_backend_type_and_a_missing_node_port_name_the_annotation():
    import pytest

    from netns.model.errors import ValidationError

    with pytest.raises(ValidationError, match=r"backend-type\]: 'pods' is not ecs or eni"):
        ccm.load_balancer_spec(eni_service(**{ccm.BACKEND_TYPE: "pods"}))
    plain = service()
    plain["spec"]["ports"][0].pop("nodePort")
    with pytest.raises(ValidationError, match=r"nodePort: is not allocated .*/backend-type: eni"):
        ccm.load_balancer_spec(plain)
