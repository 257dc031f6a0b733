"""NetworkPolicy compiler, evaluator and parsers, without root: Calico selectors, Kubernetes and Calico policy
validation, the reference evaluator against every truth-table case of the kernel tests (hand-written
expectations), the shape of the compiled chains and sets, and conntrack parsing."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from acklab.k8s.model.calico import SelectorError, parse_selector
from acklab.k8s.model.network_policy import (
    Endpoint,
    allowed,
    compile_node,
    direction_allows,
    flow_allowed,
    namespace_view,
    parse_policies,
)
from acklab.k8s.model.objects import ContainerPort, parse_documents
from acklab.k8s.realize.network_policy import _normal_member, parse_conntrack
from netns.model.errors import ValidationError
from tests import netpoltools as kt
from tests.netpoltools import NAMESPACES, NODE_OF, PAIRS, PODS, hand

PORTS = tuple(ContainerPort(n, p, f"serve-{n}-{p.lower()}") for n in (80, 81) for p in ("TCP", "UDP"))


def endpoints(ns_labels: dict[str, dict[str, str]] | None = None) -> dict[str, Endpoint]:
    result = {}
    for i, (ns, pod) in enumerate(((n, p) for n in NAMESPACES for p in PODS), start=10):
        labels = {"ns": ns, **(ns_labels or {}).get(ns, {})}
        result[f"{ns}/{pod}"] = Endpoint(ns, pod, {"pod": pod}, f"192.168.3.{i}", NODE_OF[pod], PORTS,
                                         f"cali{ns}{pod}", namespace_view(ns, labels))
    return result


def policies_of(text: str):
    return parse_policies([d for d in yaml.safe_load_all(text) if d])


def fill(text: str, eps: dict[str, Endpoint]) -> str:
    for key, ep in eps.items():
        text = text.replace(f"@{key}@", ep.ip)
    return text.replace("@cidr@", "192.168.0.0/16")


# --- selectors -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "labels", "expected"), [
    ("", {}, True),
    ("all()", {"a": "1"}, True),
    ("global()", {"a": "1"}, False),
    ("a == '1'", {"a": "1"}, True),
    ("a == '1'", {}, False),
    ("a != '1'", {}, True),  # a missing label is "not equal"
    ("has(a)", {"a": ""}, True),
    ("!has(a)", {"a": ""}, False),
    ("a in {'1', '2'}", {"a": "2"}, True),
    ("a not in {'1', '2'}", {}, True),
    ("a == '1' || b == '2' && c == '3'", {"b": "2"}, False),  # && binds tighter
    ("(a == '1' || b == '2') && !has(c)", {"b": "2"}, True),
    ("k contains 'ell'", {"k": "hello"}, True),
    ("k starts with 'he'", {"k": "hello"}, True),
    ("k ends with 'he'", {"k": "hello"}, False),
    ("projectcalico.org/namespace == \"x\"", {"projectcalico.org/namespace": "x"}, True),
])
def test_calico_selectors(text, labels, expected):
    assert parse_selector(text)(labels) is expected


@pytest.mark.parametrize("text", ["a ==", "a = '1'", "has(a", "a == 1", "(a == '1'", "a == '1' b", "a in {'1' '2'}"])
def test_bad_calico_selectors(text):
    with pytest.raises(SelectorError):
        parse_selector(text)


def test_equal_selectors_share_a_canonical_form():
    assert parse_selector("a in {'2','1'}").canonical == parse_selector("a in { '1', '2' }").canonical


# --- validation ----------------------------------------------------------------------------------------------------

def k8s_doc(spec: str, name: str = "p", namespace: str = "x") -> str:
    return kt.k8s(name, namespace, textwrap.dedent(spec))


@pytest.mark.parametrize(("spec", "field", "reason"), [
    ("podSelector: {}\ningress: [{ports: [{port: 80, endPort: 70}]}]", "spec.ingress[0].ports[0].endPort",
     "must be >= port 80"),
    ("podSelector: {}\ningress: [{ports: [{port: http, endPort: 90}]}]", "spec.ingress[0].ports[0].endPort",
     "may not be set when port is a name"),
    ("podSelector: {}\ningress: [{ports: [{protocol: ICMP}]}]", "spec.ingress[0].ports[0].protocol",
     "must be one of TCP, UDP, SCTP"),
    ("podSelector: {}\ningress: [{ports: [{port: 70000}]}]", "spec.ingress[0].ports[0].port", "1-65535"),
    ("podSelector: {}\ningress: [{ports: [{port: Not_A_Name}]}]", "spec.ingress[0].ports[0].port",
     "not a valid port name"),
    ("podSelector: {}\npolicyTypes: [Ingress, Sideways]", "spec.policyTypes[1]", "must be Ingress or Egress"),
    ("podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]",
     "spec.egress[0].to[0].ipBlock.except[0]", "must be strictly within 10.0.0.0/8"),
    ("podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]", "spec.egress[0].to[0].ipBlock.cidr",
     "not a valid CIDR"),
    ("podSelector: {}\negress: [{to: [{ipBlock: {cidr: 'fd00::/8'}}]}]", "spec.egress[0].to[0].ipBlock.cidr",
     "only IPv4"),
    ("podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]",
     "spec.egress[0].to[0].ipBlock", "may not be combined"),
    ("podSelector: {matchExpressions: [{key: a, operator: Near, values: [b]}]}",
     "spec.podSelector.matchExpressions[0].operator", "must be In, NotIn, Exists or DoesNotExist"),
    ("podSelector: {matchExpressions: [{key: a, operator: In}]}", "spec.podSelector.matchExpressions[0].values",
     "must not be empty for In"),
    ("podSelector: {}\ningress: [{from: [{}]}]", "spec.ingress[0].from[0]", "must set podSelector"),
    ("podSelector: {}\ningres: []", "spec.ingres", "is not a known or supported field"),
])
def test_invalid_kubernetes_policies_name_object_field_and_reason(spec, field, reason):
    with pytest.raises(ValidationError) as err:
        policies_of(k8s_doc(spec))
    assert err.value.resource == "NetworkPolicy 'x/p'"
    assert err.value.field == field
    assert reason in err.value.reason


@pytest.mark.parametrize(("spec", "field", "reason"), [
    ("selector: a = b", "spec.selector", "expected"),
    ("ingress: [{action: Maybe}]", "spec.ingress[0].action", "must be one of Allow, Deny, Pass, Log"),
    ("ingress: [{action: Allow, destination: {ports: [80]}}]", "spec.ingress[0].destination.ports",
     "need the rule's protocol"),
    ("ingress: [{action: Allow, protocol: TCP, destination: {ports: ['90:80']}}]",
     "spec.ingress[0].destination.ports[0]", "must be a range"),
    ("ingress: [{action: Allow, protocol: TCP, source: {ports: [80]}}]", "spec.ingress[0].source.ports",
     "source ports are not supported"),
    ("ingress: [{action: Allow, destination: {selector: a == 'b'}}]", "spec.ingress[0].destination",
     "policy's own side"),
    ("order: high", "spec.order", "must be a number"),
    ("tier: security", "spec.tier", "only the default tier"),
])
def test_invalid_calico_policies(spec, field, reason):
    with pytest.raises(ValidationError) as err:
        policies_of(kt.calico("GlobalNetworkPolicy", "g", textwrap.dedent(spec)))
    assert err.value.resource == "projectcalico.org/v3 GlobalNetworkPolicy 'g'"
    assert (err.value.field, reason in err.value.reason) == (field, True), err.value


def test_policy_defined_twice():
    with pytest.raises(ValidationError, match="is defined twice"):
        policies_of(k8s_doc("podSelector: {}") + k8s_doc("podSelector: {}"))


def test_model_keeps_namespace_labels_and_calico_kinds():
    text = ("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {team: blue}}\n"
            + kt.calico("GlobalNetworkPolicy", "g", "selector: all()")
            + kt.calico("NetworkPolicy", "n", "selector: all()", "x") + k8s_doc("podSelector: {}"))
    cluster = parse_documents([(d, "t.yaml") for d in yaml.safe_load_all(text)])
    assert cluster.namespace_labels["x"] == {"team": "blue"}
    assert [(d["apiVersion"], d["kind"]) for d in cluster.network_policies] == [
        ("projectcalico.org/v3", "GlobalNetworkPolicy"), ("projectcalico.org/v3", "NetworkPolicy"),
        ("networking.k8s.io/v1", "NetworkPolicy")]


# --- semantics -----------------------------------------------------------------------------------------------------

def test_policy_types_defaults():
    eps = endpoints()
    egress_only_rules = policies_of(k8s_doc("podSelector: {}\negress: [{}]"))
    assert egress_only_rules[0].types == {"Ingress", "Egress"}  # Kubernetes: Ingress always
    assert not allowed(egress_only_rules, eps["y/a"], eps["x/a"], "TCP", 80)
    calico = policies_of(kt.calico("NetworkPolicy", "c", "egress: [{action: Allow}]", "x"))
    assert calico[0].types == {"Egress"}  # Calico: the directions that have rules
    assert allowed(calico, eps["y/a"], eps["x/a"], "TCP", 80)
    assert policies_of(k8s_doc("podSelector: {}"))[0].types == {"Ingress"}


def test_order_puts_calico_without_order_after_kubernetes():
    text = (kt.calico("GlobalNetworkPolicy", "late", "selector: all()") + k8s_doc("podSelector: {}")
            + kt.calico("GlobalNetworkPolicy", "early", "order: 5\nselector: all()"))
    assert [p.name for p in policies_of(text)] == ["early", "p", "late"]


@pytest.mark.parametrize("case", kt.CASES, ids=[c.name for c in kt.CASES])
def test_evaluator_matches_the_hand_written_truth_tables(case):
    eps = endpoints()
    policies = policies_of(fill(case.policies, eps))
    for protocol, port, rule in case.probes:
        got = {(s, d): s == d or allowed(policies, eps[s], eps[d], protocol, port) for s, d in PAIRS}
        assert got == hand(rule), f"{case.name} {protocol}/{port}"


def test_named_port_resolves_on_the_destination_pod():
    eps = endpoints()
    other = Endpoint("x", "d", {"pod": "d"}, "192.168.3.99", "node-1", (ContainerPort(8080, "TCP", "serve-80-tcp"),),
                     "calixd", namespace_view("x", {"ns": "x"}))
    policies = policies_of(k8s_doc("podSelector: {}\npolicyTypes: [Egress]\negress: [{ports: [{port: serve-80-tcp}]}]"))
    assert allowed(policies, eps["x/a"], eps["y/a"], "TCP", 80)
    assert not allowed(policies, eps["x/a"], eps["y/a"], "TCP", 81)
    assert allowed(policies, eps["x/a"], other, "TCP", 8080)  # the name means 8080 on that pod
    assert not allowed(policies, eps["x/a"], other, "TCP", 80)
    # a named port cannot be resolved on an address that is not a pod
    assert not direction_allows(policies, eps["x/a"], "Egress", "10.9.9.9", None, "TCP", 80)


def test_flow_allowed_checks_only_the_given_nodes_pods():
    eps = endpoints()
    policies = policies_of(kt.DENY_ALL_X)
    assert not flow_allowed(policies, eps.values(), eps["y/b"].ip, eps["x/a"].ip, "TCP", 80, "node-1")
    assert flow_allowed(policies, eps.values(), eps["y/b"].ip, eps["x/a"].ip, "TCP", 80, "node-2")  # x/a: node-1
    assert flow_allowed(policies, eps.values(), "10.0.0.1", eps["y/a"].ip, "TCP", 80, "node-1")


# --- compiled rules ------------------------------------------------------------------------------------------------

def test_compiled_chains_follow_felix_layout():
    eps = endpoints()
    text = kt.DENY_ALL_X + k8s_doc("""
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}],
                   ports: [{port: serve-80-tcp}, {port: 90, endPort: 99, protocol: UDP}]}]""")
    rs = compile_node(policies_of(text), eps.values(), "node-1")
    assert rs.chains["cali-FORWARD"][0] == "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    assert rs.chains["cali-to-wl-dispatch"] == ["-o calixa -g cali-tw-calixa", "-o calixc -g cali-tw-calixc"]
    assert rs.chains["cali-from-wl-dispatch"] == []  # no egress policy: no from-workload chains
    assert "cali-tw-calixb" not in rs.chains  # x/b runs on node-2
    tw = rs.chains["cali-tw-calixa"]
    assert tw[0] == "-j MARK --set-xmark 0x0/0x30000" and tw[-1].endswith("-j DROP")
    assert len([r for r in tw if "-j cali-pi-" in r]) == 2  # both policies, Kubernetes order then name
    pi = next(rules for name, rules in rs.chains.items() if name.startswith("cali-pi-") and len(rules) > 1)
    assert any("-p tcp -m set --match-set cali40p:" in r and " dst,dst " in r and "src -j MARK" in r for r in pi)
    assert any(r.startswith("-p udp -m udp --dport 90:99 -m set --match-set cali40s:") for r in pi)
    sets = {s.type: s for s in rs.sets.values()}
    assert sets["hash:ip"].members == [eps["y/b"].ip]
    assert f"{eps['x/c'].ip},tcp:80" in sets["hash:ip,port"].members
    assert compile_node(policies_of(text), eps.values(), "node-1", interface_dispatch=False).chains[
        "cali-to-wl-dispatch"][0] == f"-d {eps['x/a'].ip}/32 -g cali-tw-calixa"


def test_ip_block_except_is_a_nomatch_entry_and_slash0_is_split():
    eps = endpoints()
    rs = compile_node(policies_of(k8s_doc("""
        podSelector: {}
        policyTypes: [Egress]
        egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.1.0.0/16]}}]}]""")), eps.values(), "node-1")
    (net,) = [s for s in rs.sets.values() if s.type == "hash:net"]
    assert net.members == ["0.0.0.0/1", "128.0.0.0/1", "10.1.0.0/16 nomatch"]
    assert set(rs.chains["cali-from-wl-dispatch"]) == {"-i calixa -g cali-fw-calixa", "-i calixc -g cali-fw-calixc"}


def test_calico_actions_compile_to_marks_drop_and_log():
    eps = endpoints()
    rs = compile_node(policies_of(kt.calico("GlobalNetworkPolicy", "g", """
order: 1
selector: all()
ingress:
- {action: Log}
- {action: Deny, source: {notNets: [10.0.0.0/8]}}
- {action: Pass, protocol: TCP, destination: {ports: [80, '1000:1010', 22, 23, 24, 25, 26, 27]}}""")),
                      eps.values(), "node-1")
    rules = next(r for name, r in rs.chains.items() if name.startswith("cali-pi-"))
    assert '-j LOG --log-prefix "calico-packet: "' in rules
    assert any("-m set ! --match-set cali40n:" in r and r.endswith("src -j DROP") for r in rules)
    multiport = [r for r in rules if "multiport" in r]
    assert len(multiport) == 2 and all(r.endswith("-j MARK --set-xmark 0x20000/0x20000") for r in multiport)
    assert "-m mark --mark 0x20000/0x20000 -j RETURN" in rules


def test_restore_texts():
    eps = endpoints()
    rs = compile_node(policies_of(kt.DENY_ALL_X), eps.values(), "node-1")
    text = rs.iptables(stale=["cali-pi-old", "cali-FORWARD"])
    assert text.startswith("*filter\n:cali-FORWARD - [0:0]\n") and text.endswith("COMMIT\n")
    assert "-F cali-pi-old\n-X cali-pi-old\nCOMMIT" in text and "-X cali-FORWARD" not in text
    assert "KUBE-" not in text and ":FORWARD" not in text  # never a built-in chain or another component's
    rs2 = compile_node(policies_of(kt.k8s("p", "x", "podSelector: {}\ningress: [{from: [{podSelector: {}}]}]")),
                       eps.values(), "node-1")
    lines = rs2.ipsets().splitlines()
    (name,) = rs2.sets
    tmp = name.replace("cali40", "cali4t")
    assert lines[:2] == [f"create {tmp} hash:ip family inet -exist", f"flush {tmp}"]
    assert lines[-3:] == [f"create {name} hash:ip family inet -exist", f"swap {tmp} {name}", f"destroy {tmp}"]


def test_conntrack_parsing_keeps_live_flows_and_undoes_dnat():
    text = textwrap.dedent("""\
        tcp      6 431999 ESTABLISHED src=192.168.3.10 dst=10.96.0.10 sport=40000 dport=80 src=192.168.3.12 dst=192.168.3.10 sport=8080 dport=40000 [ASSURED] mark=0 use=1
        tcp      6 100 TIME_WAIT src=192.168.3.10 dst=192.168.3.11 sport=40001 dport=80 src=192.168.3.11 dst=192.168.3.10 sport=80 dport=40001 [ASSURED] mark=0 use=1
        tcp      6 100 SYN_SENT src=192.168.3.10 dst=192.168.3.11 sport=40002 dport=80 [UNREPLIED] src=192.168.3.11 dst=192.168.3.10 sport=80 dport=40002 mark=0 use=1
        udp      17 29 src=192.168.3.10 dst=192.168.3.11 sport=5000 dport=81 src=192.168.3.11 dst=192.168.3.10 sport=81 dport=5000 mark=0 use=1
        icmp     1 29 src=192.168.3.10 dst=192.168.3.11 type=8 code=0 id=1 src=192.168.3.11 dst=192.168.3.10 type=0 code=0 id=1 mark=0 use=1
        """)  # noqa: E501
    assert parse_conntrack(text) == [("TCP", "192.168.3.10", "10.96.0.10", 40000, "192.168.3.12", 8080),
                                     ("UDP", "192.168.3.10", "192.168.3.11", 5000, "192.168.3.11", 81)]


def test_ipset_members_are_compared_the_way_ipset_saves_them():
    assert _normal_member("10.0.0.5/32") == "10.0.0.5"
    assert _normal_member("10.0.0.0/8 nomatch") == "10.0.0.0/8 nomatch"


def test_no_policy_compiles_to_nothing():
    rs = compile_node([], endpoints().values(), "node-1")
    assert (rs.chains, rs.sets) == ({}, {})


def test_an_update_rewrites_only_what_differs():
    from acklab.k8s.realize.network_policy import Applied, plan_update

    eps = endpoints()
    before = compile_node(policies_of(kt.DENY_ALL_X), eps.values(), "node-1")
    kernel = Applied({n: len(r) for n, r in before.chains.items()}, {}, True)
    assert not plan_update(before, kernel, before.chains)  # in place: nothing to do
    assert plan_update(before, kernel, {}).chains == list(before.chains)  # nothing recorded: rewrite all
    after = compile_node(policies_of(kt.DENY_ALL_X + k8s_doc("""
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{podSelector: {}}]}]""")), eps.values(), "node-1")
    update = plan_update(after, kernel, before.chains)
    assert set(update.chains) == {"cali-tw-calixa"} | {n for n in after.chains if n not in before.chains}
    assert update.sets == list(after.sets) and not update.stale_chains and not update.jump
    back = plan_update(before, Applied({n: len(r) for n, r in after.chains.items()},
                                       {s.name: frozenset(s.members) for s in after.sets.values()}, False),
                       after.chains)
    assert back.chains == ["cali-tw-calixa"] and back.jump
    assert back.stale_chains == [n for n in after.chains if n not in before.chains]
    assert back.stale_sets == list(after.sets)
