# ruff: noqa: E501 - the golden text keeps iptables-restore lines whole, as upstream's test does
"""kube-proxy's iptables layout, checked against upstream's own expectations (proxier_test.go).

The golden text below is upstream's TestOverallIPTablesRules expectation (same Services, endpoints and
options) without the nfacct counters a later release added; chain-name hashes come from the same file.
"""

import random
import shutil
import subprocess

import pytest

from acklab.k8s.model import kube_proxy_rules as kp
from acklab.k8s.model.kube_proxy_rules import Endpoint, ProxierConfig, ServicePortInfo, compile_rules
from netns.model.errors import ValidationError

CFG = ProxierConfig(cluster_cidr="10.0.0.0/8", random_fully=False, node_ip="192.168.0.2")


def svc(ns="ns1", name="svc1", **kw) -> ServicePortInfo:
    base = {"port_name": "p80", "protocol": "TCP", "cluster_ip": "172.30.0.41", "port": 80}
    base.update(kw)
    return ServicePortInfo(ns, name, **base)


def eps(*ips, port=80, **kw) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(ip, port, **kw) for ip in ips)


def chain_rules(text: str, chain: str, table: str = "nat") -> list[str]:
    """Rules of one chain of one table, without the '-A CHAIN ' prefix."""
    section = text.split(f"*{table}\n", 1)[1].split("COMMIT", 1)[0]
    prefix = f"-A {chain} "
    return [line[len(prefix) :] for line in section.splitlines() if line.startswith(prefix)]


def declared(text: str, table: str = "nat") -> list[str]:
    section = text.split(f"*{table}\n", 1)[1].split("COMMIT", 1)[0]
    return [line[1:].split()[0] for line in section.splitlines() if line.startswith(":")]


UPSTREAM_PORTS = [
    svc(endpoints=eps("10.180.0.1")),
    svc(
        "ns2",
        "svc2",
        cluster_ip="172.30.0.42",
        node_port=3001,
        external_policy_local=True,
        load_balancer_ips=("1.2.3.4",),
        external_ips=("192.168.99.22",),
        health_check_node_port=30000,
        endpoints=eps("10.180.0.2"),
    ),
    svc("ns3", "svc3", cluster_ip="172.30.0.43", node_port=3003, endpoints=eps("10.180.0.3")),
    svc(
        "ns4",
        "svc4",
        cluster_ip="172.30.0.44",
        external_ips=("192.168.99.33",),
        endpoints=(Endpoint("10.180.0.4", 80), Endpoint("10.180.0.5", 80, is_local=True)),
    ),
    svc(
        "ns5",
        "svc5",
        cluster_ip="172.30.0.45",
        node_port=3002,
        load_balancer_ips=("5.6.7.8",),
        load_balancer_source_ranges=(" 203.0.113.0/25",),
        session_affinity="ClientIP",
        endpoints=eps("10.180.0.3"),
    ),
    svc("ns6", "svc6", cluster_ip="172.30.0.46"),
]

UPSTREAM_EXPECTED = """\
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
:KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-EXT-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
:KUBE-FW-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
:KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
:KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
:KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
:KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp --dport 3002 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
COMMIT
"""


def test_matches_upstream_overall_rules():
    assert compile_rules(UPSTREAM_PORTS, CFG) == UPSTREAM_EXPECTED


def test_output_is_independent_of_input_order():
    shuffled = list(UPSTREAM_PORTS)
    random.Random(7).shuffle(shuffled)
    reordered = [ServicePortInfo(**{**sp.__dict__, "endpoints": tuple(reversed(sp.endpoints))}) for sp in shuffled]
    assert compile_rules(reordered, CFG) == compile_rules(UPSTREAM_PORTS, CFG)


@pytest.mark.parametrize(
    ("ns", "name", "chain"),
    [
        ("ns1", "svc1", "XPGD46QRK7WJZT7O"),
        ("ns2", "svc2", "GNZBNJ2PO5MGZ6GT"),
        ("ns3", "svc3", "X27LE4BHSL4DOUIK"),
        ("ns4", "svc4", "4SW47YFZTEDKD3PK"),
        ("ns5", "svc5", "NUKIZ6OKUXPJNT4C"),
    ],
)
def test_service_chain_names_hash_like_upstream(ns, name, chain):
    sp = svc(ns, name)
    assert kp.svc_chain(sp) == f"KUBE-SVC-{chain}"
    assert kp.svl_chain(sp) == f"KUBE-SVL-{chain}"
    assert kp.ext_chain(sp) == f"KUBE-EXT-{chain}"
    assert kp.fw_chain(sp) == f"KUBE-FW-{chain}"


@pytest.mark.parametrize(
    ("ns", "name", "ip", "chain"),
    [
        ("ns1", "svc1", "10.180.0.1", "SXIVWICOYRO3J4NJ"),
        ("ns2", "svc2", "10.180.0.2", "RS4RBKLTHTF2IUXJ"),
        ("ns3", "svc3", "10.180.0.3", "OYPFS5VJICHGATKP"),
        ("ns4", "svc4", "10.180.0.4", "UKSFD7AGPMPPLUHC"),
        ("ns4", "svc4", "10.180.0.5", "C6EBXVWJJZMIWKLZ"),
        ("ns5", "svc5", "10.180.0.3", "I77PXRDZVX7PMWMN"),
    ],
)
def test_endpoint_chain_names_hash_like_upstream(ns, name, ip, chain):
    assert kp.sep_chain(svc(ns, name), Endpoint(ip, 80)) == f"KUBE-SEP-{chain}"


def test_chain_name_depends_on_protocol_and_port_name():
    names = {kp.svc_chain(svc(protocol=p)) for p in ("TCP", "UDP", "SCTP")}
    names.add(kp.svc_chain(svc(port_name="")))
    assert len(names) == 4
    assert svc(port_name="").port_name_string == "ns1/svc1"


@pytest.mark.parametrize(
    ("n", "probabilities"),
    [
        (1, []),
        (2, ["0.5000000000"]),
        (3, ["0.3333333333", "0.5000000000"]),
        (4, ["0.2500000000", "0.3333333333", "0.5000000000"]),
    ],
)
def test_random_spread_probability_is_one_over_n_minus_i(n, probabilities):
    sp = svc(endpoints=eps(*[f"10.180.0.{i + 1}" for i in range(n)]))
    rules = [r for r in chain_rules(compile_rules([sp], CFG), kp.svc_chain(sp)) if "->" in r]
    assert len(rules) == n
    got = [r.split("--probability ")[1].split()[0] for r in rules if "--probability" in r]
    assert got == probabilities
    # Every endpoint gets exactly one rule, in "ip:port" order, the last one unconditional.
    assert [r.rsplit(" ", 1)[1] for r in rules] == [kp.sep_chain(sp, ep) for ep in sp.endpoints]
    assert "statistic" not in rules[-1]


def test_endpoints_are_ordered_by_their_ip_port_string():
    sp = svc(endpoints=eps("10.180.0.9", "10.180.0.10", "10.180.0.2"))
    rules = [r for r in chain_rules(compile_rules([sp], CFG), kp.svc_chain(sp)) if "->" in r]
    assert [r.split("-> ")[1].split('"')[0] for r in rules] == ["10.180.0.10:80", "10.180.0.2:80", "10.180.0.9:80"]


def test_hairpin_traffic_is_masqueraded_in_the_endpoint_chain():
    sp = svc(endpoints=eps("10.180.0.1", port=8080))
    sep = kp.sep_chain(sp, sp.endpoints[0])
    assert chain_rules(compile_rules([sp], CFG), sep) == [
        "-m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ",
        "-m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:8080",
    ]


def test_no_endpoints_rejects_cluster_ip_node_port_external_and_lb_ip():
    sp = svc(node_port=30080, external_ips=("192.168.99.11",), load_balancer_ips=("1.2.3.4",))
    text = compile_rules([sp], CFG)
    reject = '-m comment --comment "ns1/svc1:p80 has no endpoints"'
    assert chain_rules(text, "KUBE-SERVICES", "filter") == [
        f"{reject} -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT"
    ]
    assert chain_rules(text, "KUBE-EXTERNAL-SERVICES", "filter") == [
        f"{reject} -m tcp -p tcp -d 192.168.99.11 --dport 80 -j REJECT",
        f"{reject} -m tcp -p tcp -d 1.2.3.4 --dport 80 -j REJECT",
        f"{reject} -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j REJECT",
    ]
    # No nat chain at all for the service, and nothing in KUBE-NODEPORTS.
    assert not [c for c in declared(text) if kp.is_service_chain(c)]
    assert chain_rules(text, "KUBE-NODEPORTS") == []


def test_not_ready_endpoints_do_not_count():
    sp = svc(endpoints=eps("10.180.0.1", ready=False))
    assert "has no endpoints" in compile_rules([sp], CFG)


def test_terminating_serving_endpoints_are_used_only_when_nothing_is_ready():
    only_terminating = svc(endpoints=eps("10.180.0.1", ready=False, serving=True, terminating=True))
    text = compile_rules([only_terminating], CFG)
    assert "has no endpoints" not in text
    assert "--to-destination 10.180.0.1:80" in text
    mixed = svc(endpoints=(*only_terminating.endpoints, Endpoint("10.180.0.2", 80)))
    text = compile_rules([mixed], CFG)
    assert "10.180.0.1:80" not in text and "--to-destination 10.180.0.2:80" in text


def test_nodeports_jump_is_the_last_rule_of_kube_services():
    text = compile_rules(UPSTREAM_PORTS, CFG)
    last = chain_rules(text, "KUBE-SERVICES")[-1]
    assert last.endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    no_localhost = compile_rules(UPSTREAM_PORTS, ProxierConfig(localhost_nodeports=False))
    assert chain_rules(no_localhost, "KUBE-SERVICES")[-1].endswith(
        "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS"
    )
    assert "KUBE-FIREWALL" not in no_localhost
    by_address = compile_rules(UPSTREAM_PORTS, ProxierConfig(node_port_addresses=("192.168.0.2", "10.1.0.1")))
    assert [r.split(" -d ")[1] for r in chain_rules(by_address, "KUBE-SERVICES") if "nodeports" in r] == [
        "192.168.0.2 -j KUBE-NODEPORTS",
        "10.1.0.1 -j KUBE-NODEPORTS",
    ]


def test_etp_local_with_local_endpoints_uses_only_them_and_keeps_client_ip():
    sp = svc(
        node_port=30080,
        external_policy_local=True,
        endpoints=(Endpoint("10.180.0.1", 80, is_local=True), Endpoint("10.180.1.1", 80)),
    )
    text = compile_rules([sp], CFG)
    svl, ext, svc_chain = kp.svl_chain(sp), kp.ext_chain(sp), kp.svc_chain(sp)
    assert chain_rules(text, svl) == [
        f'-m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j {kp.sep_chain(sp, sp.endpoints[0])}'
    ]
    assert chain_rules(text, ext) == [
        f'-m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j {svc_chain}',
        '-m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" '
        "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
        '-m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" '
        f"-m addrtype --src-type LOCAL -j {svc_chain}",
        f"-j {svl}",
    ]
    # Client IP kept: nothing in the external path masquerades traffic that is not from the node itself.
    assert not [r for r in chain_rules(text, ext) if r.endswith("KUBE-MARK-MASQ") and "LOCAL" not in r]
    # The cluster IP still spreads over every endpoint.
    assert len([r for r in chain_rules(text, svc_chain) if "->" in r]) == 2
    assert "KUBE-EXTERNAL-SERVICES -m" not in text


def test_etp_local_without_local_endpoints_drops_external_traffic():
    sp = svc(node_port=30080, external_policy_local=True, load_balancer_ips=("1.2.3.4",), endpoints=eps("10.180.1.1"))
    text = compile_rules([sp], CFG)
    drop = '-m comment --comment "ns1/svc1:p80 has no local endpoints"'
    assert chain_rules(text, "KUBE-EXTERNAL-SERVICES", "filter") == [
        f"{drop} -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP",
        f"{drop} -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP",
    ]
    assert kp.svl_chain(sp) not in declared(text)
    assert not [r for r in chain_rules(text, kp.ext_chain(sp)) if r.startswith("-j ")]


def test_itp_local():
    local = svc(
        internal_policy_local=True, endpoints=(Endpoint("10.180.0.1", 80, is_local=True), Endpoint("10.180.1.1", 80))
    )
    text = compile_rules([local], CFG)
    svl = kp.svl_chain(local)
    assert chain_rules(text, "KUBE-SERVICES")[0].endswith(f"--dport 80 -j {svl}")
    assert kp.svc_chain(local) not in declared(text)
    assert [r.rsplit(" ", 1)[1] for r in chain_rules(text, svl) if "->" in r] == [
        kp.sep_chain(local, local.endpoints[0])
    ]
    none_local = svc(internal_policy_local=True, endpoints=eps("10.180.1.1"))
    text = compile_rules([none_local], CFG)
    assert chain_rules(text, "KUBE-SERVICES", "filter") == [
        '-m comment --comment "ns1/svc1:p80 has no local endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j DROP'
    ]


def test_session_affinity_client_ip_with_timeout():
    sp = svc(session_affinity="ClientIP", sticky_max_age_seconds=600, endpoints=eps("10.180.0.1", "10.180.0.2"))
    text = compile_rules([sp], CFG)
    seps = [kp.sep_chain(sp, ep) for ep in sp.endpoints]
    rules = chain_rules(text, kp.svc_chain(sp))
    assert [r for r in rules if "recent" in r] == [
        f'-m comment --comment "ns1/svc1:p80 -> 10.180.0.{i + 1}:80" -m recent --name {sep} '
        f"--rcheck --seconds 600 --reap -j {sep}"
        for i, sep in enumerate(seps)
    ]
    # Affinity checks come before the random spread.
    assert rules.index(next(r for r in rules if "statistic" in r)) > max(
        i for i, r in enumerate(rules) if "recent" in r
    )
    for sep in seps:
        assert f"-m recent --name {sep} --set -m tcp" in chain_rules(text, sep)[1]


def test_load_balancer_source_ranges():
    sp = svc(
        node_port=30080,
        load_balancer_ips=("5.6.7.8",),
        load_balancer_source_ranges=("203.0.113.0/25", "192.168.0.0/24"),
        endpoints=eps("10.180.0.1"),
    )
    fw, ext = kp.fw_chain(sp), kp.ext_chain(sp)
    text = compile_rules([sp], CFG)  # node IP 192.168.0.2 is inside the second range
    assert chain_rules(text, fw) == [
        f'-m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j {ext}',
        f'-m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 192.168.0.0/24 -j {ext}',
        f'-m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 5.6.7.8 -j {ext}',
        '-m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"',
    ]
    assert chain_rules(text, "KUBE-PROXY-FIREWALL", "filter") == [
        f'-m comment --comment "ns1/svc1:p80 traffic not accepted by {fw}" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP'
    ]
    assert f"-d 5.6.7.8 --dport 80 -j {fw}" in "\n".join(chain_rules(text, "KUBE-SERVICES"))
    # NodePorts are not subject to the source ranges.
    assert chain_rules(text, "KUBE-NODEPORTS")[0].endswith(f"--dport 30080 -j {ext}")
    other_node = compile_rules([sp], ProxierConfig(cluster_cidr="10.0.0.0/8", node_ip="172.16.0.1"))
    assert "-s 5.6.7.8" not in other_node


def test_cluster_ip_masquerade_depends_on_cluster_cidr_and_masquerade_all():
    sp = svc(endpoints=eps("10.180.0.1"))
    masq = [r for r in chain_rules(compile_rules([sp], CFG), kp.svc_chain(sp)) if r.endswith("KUBE-MARK-MASQ")]
    assert masq == [
        '-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 '
        "! -s 10.0.0.0/8 -j KUBE-MARK-MASQ"
    ]
    no_cidr = compile_rules([sp], ProxierConfig())
    assert not [r for r in chain_rules(no_cidr, kp.svc_chain(sp)) if r.endswith("KUBE-MARK-MASQ")]
    everything = compile_rules([sp], ProxierConfig(masquerade_all=True, cluster_cidr="10.0.0.0/8"))
    assert next(r for r in chain_rules(everything, kp.svc_chain(sp)) if r.endswith("KUBE-MARK-MASQ")).endswith(
        "--dport 80 -j KUBE-MARK-MASQ"
    )


@pytest.mark.parametrize("protocol", ["UDP", "SCTP"])
def test_udp_and_sctp(protocol):
    sp = svc(protocol=protocol, endpoints=eps("10.180.0.1", port=53))
    text = compile_rules([sp], CFG)
    p = protocol.lower()
    assert f"-m {p} -p {p} -d 172.30.0.41 --dport 80 -j {kp.svc_chain(sp)}" in text
    assert f"-m {p} -p {p} -j DNAT --to-destination 10.180.0.1:53" in text
    assert kp.svc_chain(sp) != kp.svc_chain(svc())


def test_masquerade_mark_and_postrouting():
    text = compile_rules([], ProxierConfig())
    assert chain_rules(text, "KUBE-MARK-MASQ") == ["-j MARK --or-mark 0x4000"]
    assert chain_rules(text, "KUBE-POSTROUTING") == [
        "-m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-j MARK --xor-mark 0x4000",
        '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ]
    assert chain_rules(text, "KUBE-FORWARD", "filter")[1] == (
        '-m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT'
    )


def test_large_cluster_mode_drops_endpoint_comments():
    ports = [
        svc(name=f"s{i}", cluster_ip=f"172.30.{i // 250}.{i % 250 + 1}", endpoints=eps("10.1.0.1", "10.1.0.2"))
        for i in range(501)
    ]
    text = compile_rules(ports, CFG)
    sp = ports[0]
    assert chain_rules(text, kp.sep_chain(sp, sp.endpoints[0]))[0] == "-s 10.1.0.1 -j KUBE-MARK-MASQ"
    assert chain_rules(text, kp.svc_chain(sp))[-1] == f"-j {kp.sep_chain(sp, sp.endpoints[1])}"
    assert "cluster IP" in chain_rules(text, "KUBE-SERVICES")[0]  # service-level comments stay


def test_stale_service_chains_are_flushed_and_deleted():
    sp = svc(endpoints=eps("10.180.0.1"))
    stale = ["KUBE-SVC-AAAAAAAAAAAAAAAA", "KUBE-SEP-BBBBBBBBBBBBBBBB"]
    text = compile_rules([sp], CFG, existing_nat_chains=[*stale, kp.svc_chain(sp), "DOCKER", "KUBE-MARK-MASQ"])
    for chain in stale:
        assert f":{chain} - [0:0]" in text and f"-X {chain}\n" in text
    assert "-X DOCKER" not in text and "-X KUBE-MARK-MASQ" not in text and f"-X {kp.svc_chain(sp)}" not in text


def test_jump_rules():
    jumps = kp.jump_rules()
    assert ("nat", "PREROUTING", "KUBE-SERVICES") in [(j.table, j.chain, j.target) for j in jumps]
    fwd = next(j for j in jumps if j.chain == "FORWARD" and j.target == "KUBE-SERVICES")
    assert fwd.args() == [
        "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubernetes service portals",
        "-j", "KUBE-SERVICES",
    ]  # fmt: skip
    assert "KUBE-FIREWALL" not in [j.target for j in kp.jump_rules(ProxierConfig(localhost_nodeports=False))]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"protocol": "ICMP"}, "protocol"),
        ({"cluster_ip": "172.30.0"}, "clusterIP"),
        ({"port": 70000}, "port"),
        ({"node_port": -1}, "nodePort"),
        ({"session_affinity": "Cookie"}, "sessionAffinity"),
        ({"load_balancer_source_ranges": ("10.0.0.0/33",)}, "loadBalancerSourceRanges"),
        ({"endpoints": eps("10.0.0.300")}, "endpoints.ip"),
    ],
)
def test_bad_input_is_refused_naming_service_and_field(change, field):
    with pytest.raises(ValidationError) as err:
        compile_rules([svc(**change)], CFG)
    assert err.value.resource == "Service ns1/svc1" and err.value.field == field


def test_duplicate_service_port_is_refused():
    with pytest.raises(ValidationError, match="appears twice"):
        compile_rules([svc(), svc()], CFG)


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("iptables-restore") is None, reason="no tools")
def test_rules_load_in_a_throwaway_network_namespace(tmp_path):
    """The kernel accepts the text: iptables-restore --test inside a private `unshare -n` namespace only."""
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root for unshare -n")
    ports = [
        *UPSTREAM_PORTS,
        svc("ns7", "udp", protocol="UDP", cluster_ip="172.30.0.47", endpoints=eps("10.180.0.7", "10.180.0.8")),
        svc("ns7", "sctp", protocol="SCTP", cluster_ip="172.30.0.48", endpoints=eps("10.180.0.9")),
        svc(
            "ns8", "itp", cluster_ip="172.30.0.49", internal_policy_local=True, endpoints=eps("10.1.0.1", is_local=True)
        ),
    ]
    text = compile_rules(ports, ProxierConfig(cluster_cidr="10.0.0.0/8", node_ip="203.0.113.5"))
    result = subprocess.run(
        ["unshare", "-n", "iptables-restore", "--test", "--noflush"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_sync_text_removes_stale_service_chains_and_prepends_missing_jumps():
    from acklab.k8s.realize.kube_proxy_rules import NodeProxier, Ruleset

    proxier = NodeProxier("t0000000000", "node-1", "acklab-t0000000000-i-00000001")
    existing = Ruleset.parse(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-GONEGONEGONEGONE - [0:0]\n"
        ":KUBE-SEP-GONEGONEGONEGONE - [0:0]\n:MY-OWN - [0:0]\n"
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\nCOMMIT\n'
    )
    assert ("nat", "PREROUTING", "KUBE-SERVICES") in existing.jumps
    text = proxier.text([], existing)
    nat = text.split("*nat\n", 1)[1]
    # stale service chains: declared (flushed) in the transaction, deleted at its end; others' chains untouched
    assert ":KUBE-SVC-GONEGONEGONEGONE - [0:0]" in nat and nat.rstrip().endswith(
        "-X KUBE-SEP-GONEGONEGONEGONE\n-X KUBE-SVC-GONEGONEGONEGONE\n"
        '-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING\n'
        '-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\nCOMMIT')
    assert "MY-OWN" not in text
    # the jump that exists is not added again; filter's jumps are all missing, so all are prepended
    assert "-I PREROUTING" not in text
    filter_part = text.split("*nat\n", 1)[0]
    assert '-I FORWARD 1 -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD' in filter_part
