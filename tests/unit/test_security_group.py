"""Security-group validation and the compiled router ruleset (semantics are probed on the kernel)."""

import pytest

from netns.model.errors import ValidationError
from netns.model.security_group import Eni, Group, Rule, check_group, compile_ruleset, parse_rule


def rule(**kw):
    args = {"type": "ingress", "ip_protocol": "tcp", "port_range": "80/80", "cidr_ip": "0.0.0.0/0"}
    return parse_rule("r", kw.pop("rule_id", "sgr-1"), **{**args, **kw})


@pytest.mark.parametrize(("kw", "field", "reason"), [
    ({"port_range": "80"}, "port_range", "start/end"),
    ({"port_range": "90/80"}, "port_range", "after the end"),
    ({"port_range": "0/80"}, "port_range", "1..65535"),
    ({"ip_protocol": "icmp", "port_range": "80/80"}, "port_range", "-1/-1"),
    ({"ip_protocol": "gre"}, "ip_protocol", "not one of"),
    ({"priority": 0}, "priority", "1 to 100"),
    ({"priority": 101}, "priority", "1 to 100"),
    ({"policy": "reject"}, "policy", "not one of"),
    ({"type": "inbound"}, "type", "not one of"),
    ({"nic_type": "internet"}, "nic_type", "intranet only"),
    ({"cidr_ip": "10.0.0.300/8"}, "cidr_ip", "not an IPv4"),
    ({"cidr_ip": None}, "cidr_ip", "exactly one"),
    ({"source_security_group_id": "sg-1"}, "cidr_ip", "exactly one"),
])
def test_bad_rules_name_the_field(kw, field, reason):
    with pytest.raises(ValidationError) as err:
        rule(**kw)
    assert err.value.field == field
    assert reason in err.value.reason


def test_enterprise_group_has_no_inner_accept():
    with pytest.raises(ValidationError, match="inner_access_policy"):
        check_group("sg", "enterprise", "Accept")


def test_rules_are_ordered_by_priority_then_drop_first():
    rules = [rule(rule_id="sgr-a", priority=2), rule(rule_id="sgr-b", priority=1, policy="accept"),
             rule(rule_id="sgr-c", priority=1, policy="drop")]
    assert [r.rule_id for r in sorted(rules, key=Rule.order)] == ["sgr-c", "sgr-b", "sgr-a"]


def test_compiled_layout():
    web = Group("sg-web", "vpc-1", rules=(rule(rule_id="sgr-http"),
                                          rule(rule_id="sgr-ssh", port_range="22/22", source_security_group_id="sg-web",
                                               cidr_ip=None)))
    text = compile_ruleset({"sg-web": web}, [Eni("eni-1", ("10.0.0.1",), ("sg-web",)), Eni("eni-2", ("10.0.0.2",))])
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert lines.index("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT") < \
        lines.index("-A FORWARD -d 10.0.0.1 -j SG-IN-eni-1")
    assert "-A SRC-eni-2 -s 10.0.0.2 -j RETURN" in lines  # unfiltered ENIs still get the source check
    assert "SG-IN-eni-2" not in text
    assert any(line.startswith("-A SG-IN-eni-1 -s 0.0.0.0/0 -p tcp --dport 80 ") for line in lines)
    assert "-A SG-IN-eni-1 -j DROP" in lines
    assert "-A SG-OUT-eni-1 -j RETURN" in lines  # basic group: outbound allowed by default


def test_enterprise_defaults_deny_both_ways_and_no_inner_access():
    group = Group("sg-e", "vpc-1", "enterprise", "Drop")
    text = compile_ruleset({"sg-e": group}, [Eni("eni-1", ("10.0.0.1",), ("sg-e",)),
                                             Eni("eni-2", ("10.0.0.2",), ("sg-e",))])
    assert "-A SG-OUT-eni-1 -j DROP" in text
    assert "inner" not in text


def test_inner_access_accepts_other_members_only():
    group = Group("sg-a", "vpc-1")
    text = compile_ruleset({"sg-a": group}, [Eni("eni-1", ("10.0.0.1",), ("sg-a",)),
                                             Eni("eni-2", ("10.0.0.2",), ("sg-a",))])
    assert "-A SG-IN-eni-1 -s 10.0.0.2 -m comment --comment sg-a-inner -j ACCEPT" in text
    assert "-A SG-IN-eni-1 -s 10.0.0.1 " not in text


def test_compilation_is_deterministic():
    groups = {"sg-a": Group("sg-a", "vpc-1", rules=(rule(),))}
    enis = [Eni("eni-2", ("10.0.0.2",), ("sg-a",)), Eni("eni-1", ("10.0.0.1",), ("sg-a",))]
    assert compile_ruleset(groups, enis) == compile_ruleset(groups, list(reversed(enis)))
