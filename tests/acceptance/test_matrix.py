"""The connectivity matrix of the default lab (Terway ENI multi-IP), as ACK documents its interconnects:
pod ↔ pod on the same and on another node, node ↔ node and node → pod, pod → ECS and ECS → pod with the
security-group rule present and absent, TCP and UDP each; the sealed lab. Services and Ingress: test_services.py.

Addresses (labs/default): nodes ecs-1 192.168.1.10, ecs-2 192.168.1.11 (vsw-h); ecs-3 192.168.2.10 (vsw-i, group
sg-ecs); pods on the pod vSwitch 192.168.3.0/24 (their ENIs in group sg-pods).
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from tests.acceptance import probes
from tests.acceptance.harness import LabUnderTest
from tests.acceptance.probes import ask, greet, rule_absent
from tests.labtools import ProbeServer

pytestmark = [pytest.mark.e2e, pytest.mark.acceptance]

PROTOCOLS = ["tcp", "udp"]
ECS3_IP, NODE_VSWITCH, POD_VSWITCH, ECS_VSWITCH = "192.168.2.10", "192.168.1.0/24", "192.168.3.0/24", "192.168.2.0/24"
# the ports each direction's rule admits: ecs-3's group lets pods reach 80/tcp and 53/udp; the pods' group lets
# ECS on vsw-i reach the web pods' 8080/tcp and 8081/udp
POD_TO_ECS_PORT = {"tcp": probes.ECS_TCP_PORT, "udp": probes.ECS_UDP_PORT}
ECS_TO_POD_PORT = {"tcp": probes.HTTP_PORT, "udp": probes.UDP_PORT}


def web_on(lab: LabUnderTest, node: str) -> dict:
    pods = [p for p in lab.pods(app="web") if p["node"] == node]
    assert pods, f"no web pod on {node}: {[(p['name'], p['node']) for p in lab.pods(app='web')]}"
    return pods[0]


@pytest.fixture(scope="module")
def ecs3_responder(lab_up):
    with ProbeServer(lab_up.ecs("ecs-3")["netns"], tcp=(probes.ECS_TCP_PORT,), udp=(probes.ECS_UDP_PORT,)):
        yield ECS3_IP


@pytest.fixture(scope="module")
def ecs2_responder(lab_up):
    with ProbeServer(lab_up.ecs("ecs-2")["netns"], tcp=(probes.ECS_TCP_PORT,), udp=(probes.ECS_UDP_PORT,)):
        yield lab_up.ecs("ecs-2")["private_ip"]


# ---- nodes and ECS ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_node_to_node(host_of, ecs2_responder, protocol):
    ecs1 = host_of("ecs-1")
    assert ecs1.addr(ecs2_responder).is_reachable  # ping
    assert greet(ecs1, protocol, ecs2_responder) == "hello 192.168.1.10"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_node_to_ecs_other_vswitch(host_of, ecs3_responder, protocol):
    assert greet(host_of("ecs-1"), protocol, ecs3_responder) == "hello 192.168.1.10"  # sg-ecs admits vsw-h


def test_ecs_interfaces(host_of, lab_up):
    ecs1 = host_of("ecs-1")
    assert "192.168.1.10" in [str(a) for a in ecs1.interface("eth0").addresses]
    assert ecs1.interface("eth1").exists  # the node's pod ENI (Terway)
    assert not host_of("ecs-3").interface("eth1").exists


# ---- pods -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pod_to_pod_same_node(lab_up, host_of, protocol):
    client, web = lab_up.pod("demo/client-1"), web_on(lab_up, "ecs-1")
    assert ask(host_of("demo/client-1"), protocol, web["ip"]) == web["name"]
    assert ask(host_of("demo/client-1"), protocol, web["ip"], "clientip").startswith(f"{client['ip']}:")  # no NAT


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pod_to_pod_other_node(lab_up, host_of, protocol):
    client, web = lab_up.pod("demo/client-1"), web_on(lab_up, "ecs-2")
    assert ask(host_of("demo/client-1"), protocol, web["ip"]) == web["name"]
    assert ask(host_of("demo/client-1"), protocol, web["ip"], "clientip").startswith(f"{client['ip']}:")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_node_to_pod_other_node(lab_up, host_of, protocol):
    web = web_on(lab_up, "ecs-1")
    assert ask(host_of("ecs-2"), protocol, web["ip"]) == web["name"]


def test_pod_serves_declared_ports_only(lab_up, host_of):
    client, web = host_of("demo/client-1"), web_on(lab_up, "ecs-2")
    assert web["ports"] == ["8080/TCP", "8081/UDP"]
    assert client.addr(web["ip"]).port(8080).is_reachable
    assert not client.addr(web["ip"]).port(9090).is_reachable
    assert probes.udp(client, web["ip"], 8080, timeout=0.5) is None


def test_pod_network_setup(lab_up, host_of):
    """Terway ENI multi-IP inside a pod: its /32 on eth0, the default route via 169.254.1.1."""
    pod = lab_up.pod("demo/client-1")
    host = host_of("demo/client-1")
    assert ipaddress.ip_address(pod["ip"]) in ipaddress.ip_network(POD_VSWITCH)
    assert pod["ip"] in [str(a) for a in host.interface("eth0").addresses]
    routes = json.loads(host.check_output("ip -j route show default"))
    assert [(r["gateway"], r["dev"]) for r in routes] == [("169.254.1.1", "eth0")]
    assert host.socket(f"tcp://0.0.0.0:{probes.HTTP_PORT}").is_listening


# ---- pods and ECS in the same VPC: the security-group rule present and absent ------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pod_to_ecs_rule_present(lab_up, host_of, ecs3_responder, protocol):
    client = lab_up.pod("demo/client-1")
    assert greet(host_of("demo/client-1"), protocol, ecs3_responder) == f"hello {client['ip']}"  # the pod's own IP


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pod_to_ecs_rule_absent(lab_up, host_of, ecs3_responder, protocol):
    with rule_absent(lab_up, lab_up.group_of("ecs-3"), protocol, POD_TO_ECS_PORT[protocol], POD_VSWITCH):
        assert greet(host_of("demo/client-1"), protocol, ecs3_responder, timeout=0.7) is None
        assert greet(host_of("ecs-1"), protocol, ecs3_responder) == "hello 192.168.1.10"  # only the pods lost it


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ecs_to_pod_rule_present(lab_up, host_of, protocol):
    web = web_on(lab_up, "ecs-1")
    assert ask(host_of("ecs-3"), protocol, web["ip"]) == web["name"]
    assert ask(host_of("ecs-3"), protocol, web["ip"], "clientip").startswith(f"{ECS3_IP}:")  # routed, no NAT


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ecs_to_pod_rule_absent(lab_up, host_of, protocol):
    web = web_on(lab_up, "ecs-2")
    with rule_absent(lab_up, lab_up.pod_group(), protocol, ECS_TO_POD_PORT[protocol], ECS_VSWITCH):
        assert ask(host_of("ecs-3"), protocol, web["ip"], timeout=0.7) is None
        assert ask(host_of("ecs-1"), protocol, web["ip"]) == web["name"]  # nodes are still admitted


# ---- the sealed lab: no link and no route lead out (route lookups only: no packet is sent anywhere) --------------

def test_sealed_no_link_leaves_the_lab(lab_up):
    for netns in lab_up.namespaces():
        host = lab_up.host(netns)
        peers = {entry["nsid"]: entry.get("name") for entry in json.loads(host.check_output("ip -j netns list-id"))}
        for link in json.loads(host.check_output("ip -j -d link show")):
            kind = link.get("linkinfo", {}).get("info_kind")
            assert kind in (None, "veth", "bridge", "vxlan"), f"{netns}: {link['ifname']} is a {kind}"
            assert kind is not None or link["ifname"] == "lo", f"{netns}: {link['ifname']} is a device of its own"
            if kind == "veth":
                assert "link_netnsid" in link, f"{netns}: {link['ifname']}'s peer is in the same namespace"
                peer = peers.get(link["link_netnsid"]) or ""
                assert peer.startswith(f"acklab-{lab_up.name}-"), f"{netns}: {link['ifname']} leads to {peer!r}"


def test_sealed_no_route_out(lab_up):
    """Every route that would carry a packet to the internet (8.8.8.8) points at a next hop inside the lab, and
    the lab's routers, where those next hops live, have no route for it."""
    outside = ipaddress.ip_address("8.8.8.8")
    lab_addresses: dict[str, str] = {}
    for netns in lab_up.namespaces():
        for link in json.loads(lab_up.host(netns).check_output("ip -j -4 addr show")):
            for a in link["addr_info"]:
                lab_addresses[a["local"]] = netns
    gateways = set()
    for netns in lab_up.namespaces():
        host = lab_up.host(netns)
        for route in json.loads(host.check_output("ip -j -4 route show table all")):
            dst = "0.0.0.0/0" if route["dst"] == "default" else route["dst"]
            if route.get("type") in ("local", "broadcast", "unreachable", "blackhole", "prohibit") or \
                    outside not in ipaddress.ip_network(dst, strict=False):
                continue
            gateway = route.get("gateway")
            assert gateway, f"{netns}: {route} sends the internet out of {route.get('dev')} with no next hop"
            if gateway == "169.254.1.1":  # a pod's Terway gateway: the host end of its veth, the node
                assert route["dev"] == "eth0" and "-pod-" in netns
                continue
            assert gateway in lab_addresses, f"{netns}: next hop {gateway} is no address of the lab"
            gateways.add(lab_addresses[gateway])
    assert gateways, "no namespace routes towards the internet at all (nothing was checked)"
    for router in gateways:
        lookup = lab_up.host(router).run("ip route get %s", str(outside))
        assert lookup.rc != 0 and "unreachable" in lookup.stderr, f"{router} routes {outside}: {lookup.stdout}"
