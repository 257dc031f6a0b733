"""Security-group validation and the compiled router ruleset (semantics are probed on the kernel)."""

import pytest

from netns.model.errors import ValidationError
from netns.model.security_group import (
    Eni,
    Group,
    Rule,
    check_group,
    compile_ruleset,
    parse_rule,
    profile_id,
    profiles_of,
    set_contents,
)


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


def compiled(groups: dict[str, Group], enis: list[Eni]) -> str:
    return compile_ruleset(groups, profiles_of(enis))


def test_compiled_layout_names_profiles_not_enis():
    web = Group("sg-web", "vpc-1", rules=(rule(rule_id="sgr-http"),
                                          rule(rule_id="sgr-ssh", port_range="22/22", source_security_group_id="sg-web",
                                               cidr_ip=None)))
    enis = [Eni("eni-1", ("10.0.0.1",), ("sg-web",)), Eni("eni-2", ("10.0.0.2",))]
    text = compiled({"sg-web": web}, enis)
    p = profile_id(("sg-web",))
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert lines.index("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT") < \
        lines.index(f"-A FORWARD -m set --match-set sgp-{p} dst -j SG-IN-{p}")
    assert "eni-" not in text and "10.0.0" not in text  # ENIs live in sets: adding one changes no rule
    assert any(line.startswith(f"-A SG-IN-{p} -s 0.0.0.0/0 -p tcp --dport 80 ") for line in lines)
    assert any(line.startswith(f"-A SG-IN-{p} -m set --match-set sgm-sg-web src -p tcp --dport 22 ")
               for line in lines)
    assert lines.index(f"-A SG-IN-{p} -j DROP") == max(i for i, x in enumerate(lines) if x.startswith(f"-A SG-IN-{p}"))
    assert f"-A SG-OUT-{p} -j RETURN" in lines  # basic group: outbound allowed by default
    assert compiled({"sg-web": web}, [*enis, Eni("eni-3", ("10.0.0.3",), ("sg-web",))]) == text


def test_set_contents_profiles_carry_routed_blocks_members_do_not():
    group = Group("sg-a", "vpc-1")
    enis = [Eni("eni-1", ("10.0.0.1", "10.0.0.9"), ("sg-a",), ("10.244.1.0/24",)), Eni("eni-2", ("10.0.0.2",))]
    contents = set_contents({"sg-a": group}, enis)
    assert contents[f"sgp-{profile_id(('sg-a',))}"] == {"10.0.0.1", "10.0.0.9", "10.244.1.0/24"}
    assert contents["sgm-sg-a"] == {"10.0.0.1", "10.0.0.9"}
    assert len(contents) == 2  # eni-2 has no group: in no set


def test_profiles_do_not_depend_on_group_order():
    assert profile_id(("sg-a", "sg-b")) == profile_id(("sg-b", "sg-a")) != profile_id(("sg-a",))


def test_enterprise_defaults_deny_both_ways_and_no_inner_access():
    group = Group("sg-e", "vpc-1", "enterprise", "Drop")
    text = compiled({"sg-e": group}, [Eni("eni-1", ("10.0.0.1",), ("sg-e",)), Eni("eni-2", ("10.0.0.2",), ("sg-e",))])
    assert f"-A SG-OUT-{profile_id(('sg-e',))} -j DROP" in text
    assert "inner" not in text


def test_inner_access_accepts_members_of_the_group():
    group = Group("sg-a", "vpc-1")
    text = compiled({"sg-a": group}, [Eni("eni-1", ("10.0.0.1",), ("sg-a",))])
    p = profile_id(("sg-a",))
    assert f"-A SG-IN-{p} -m set --match-set sgm-sg-a src -m comment --comment sg-a-inner -j ACCEPT" in text


def test_compilation_is_deterministic():
    groups = {"sg-a": Group("sg-a", "vpc-1", rules=(rule(),)), "sg-b": Group("sg-b", "vpc-1")}
    enis = [Eni("eni-2", ("10.0.0.2",), ("sg-a",)), Eni("eni-1", ("10.0.0.1",), ("sg-b", "sg-a"))]
    assert compiled(groups, enis) == compiled(groups, list(reversed(enis)))
