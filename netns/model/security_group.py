"""Security groups with Alibaba Cloud's semantics, compiled to one iptables ruleset for a VPC router.

Semantics (Alibaba's docs, "security group rules" and "basic vs enterprise security groups"):
- Stateful: replies of an allowed connection always pass.
- An instance in several groups gets the rules of all of them, merged and ordered by priority (1 first);
  at equal priority, drop comes before accept. The first matching rule decides.
- When no rule matches: a basic ("normal") group allows inbound traffic only from members of the same group
  when its ``inner_access_policy`` is Accept, and allows all outbound; an enterprise group denies inbound and
  outbound and never opens traffic between its members. One instance cannot mix the two types.
- A connection between two instances needs the source's egress and the destination's ingress to allow it.

Where: in the VPC router namespace, outside the guests, on the FORWARD hook that sees bridged (br_netfilter)
and routed traffic alike. Each ENI gets a source check (anti-spoofing: only its own addresses may leave its
port) and, when it has groups, an egress chain (traffic from its addresses) and an ingress chain (traffic to
its addresses). Instances with no security group are left unfiltered (a lab convenience; Alibaba requires one).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from netns.model.errors import ValidationError

PROTOCOLS = ("tcp", "udp", "icmp", "all")
POLICIES = ("accept", "drop")
DIRECTIONS = ("ingress", "egress")
GROUP_TYPES = ("normal", "enterprise")
INNER_POLICIES = ("Accept", "Drop")
_PORT_RANGE = re.compile(r"^(-?\d+)/(-?\d+)$")


@dataclass(frozen=True)
class Rule:
    rule_id: str
    direction: str
    protocol: str
    ports: tuple[int, int] | None  # None: every port (-1/-1)
    policy: str
    priority: int
    cidr: str | None = None  # the peer block: source for ingress, destination for egress
    peer_group: str | None = None  # source_security_group_id: the peer is that group's members

    def order(self) -> tuple[int, int, str]:
        return (self.priority, 0 if self.policy == "drop" else 1, self.rule_id)


@dataclass(frozen=True)
class Group:
    sg_id: str
    vpc_id: str
    group_type: str = "normal"
    inner_access_policy: str = "Accept"
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Eni:
    eni_id: str
    addresses: tuple[str, ...]  # addresses (or blocks) that belong to the ENI: source check, ingress match
    groups: tuple[str, ...] = field(default=())


# --- validation -------------------------------------------------------------------------------------------

def _choice(resource: str, name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValidationError(resource, name, f"{value!r} is not one of {', '.join(choices)}")
    return value  # type: ignore[return-value]


def parse_port_range(resource: str, protocol: str, value: object) -> tuple[int, int] | None:
    match = _PORT_RANGE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValidationError(resource, "port_range", f"{value!r} is not of the form start/end (e.g. 80/80, -1/-1)")
    low, high = int(match[1]), int(match[2])
    if protocol in ("icmp", "all"):
        if (low, high) != (-1, -1):
            raise ValidationError(resource, "port_range", f"must be -1/-1 for ip_protocol {protocol}, got {value}")
        return None
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise ValidationError(resource, "port_range", f"{value}: ports are 1..65535 for ip_protocol {protocol}")
    if low > high:
        raise ValidationError(resource, "port_range", f"{value}: the start port is after the end port")
    return (low, high)


def parse_rule(resource: str, rule_id: str, *, type: str, ip_protocol: str, port_range: str, policy: str = "accept",
               priority: int = 1, cidr_ip: str | None = None, source_security_group_id: str | None = None,
               nic_type: str = "intranet") -> Rule:
    """Validate the arguments of an ``ecs.SecurityGroupRule``; return the rule."""
    direction = _choice(resource, "type", type, DIRECTIONS)
    protocol = _choice(resource, "ip_protocol", ip_protocol, PROTOCOLS)
    ports = parse_port_range(resource, protocol, port_range)
    _choice(resource, "policy", policy, POLICIES)
    if nic_type != "intranet":
        raise ValidationError(resource, "nic_type", f"{nic_type!r}: rules of a VPC security group are intranet only")
    if isinstance(priority, float) and priority.is_integer():
        priority = int(priority)  # Pulumi carries every number as a float
    if not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= 100:
        raise ValidationError(resource, "priority", f"{priority!r} is not an integer from 1 to 100")
    if (cidr_ip is None) == (source_security_group_id is None):
        raise ValidationError(resource, "cidr_ip", "give exactly one of cidr_ip and source_security_group_id")
    if cidr_ip is not None:
        try:
            cidr_ip = str(ipaddress.IPv4Network(cidr_ip, strict=False))
        except ValueError:
            raise ValidationError(resource, "cidr_ip", f"{cidr_ip!r} is not an IPv4 address or block") from None
    return Rule(rule_id, direction, protocol, ports, policy, priority, cidr_ip, source_security_group_id)


def check_group(resource: str, group_type: str, inner_access_policy: str) -> None:
    _choice(resource, "security_group_type", group_type, GROUP_TYPES)
    _choice(resource, "inner_access_policy", inner_access_policy, INNER_POLICIES)
    if group_type == "enterprise" and inner_access_policy == "Accept":
        raise ValidationError(resource, "inner_access_policy",
                              "an enterprise security group never opens traffic between its members; use Drop")


def check_membership(resource: str, groups: Iterable[Group]) -> None:
    types = {g.group_type for g in groups}
    if len(types) > 1:
        raise ValidationError(resource, "security_groups",
                              "an instance cannot join basic and enterprise groups at once")


# --- compilation ------------------------------------------------------------------------------------------

def _match(rule: Rule) -> list[str]:
    words = [] if rule.protocol == "all" else ["-p", rule.protocol]
    if rule.ports is not None:
        low, high = rule.ports
        words += ["--dport", str(low) if low == high else f"{low}:{high}"]
    return words


def _peers(rule: Rule, members: Mapping[str, list[str]]) -> list[str]:
    if rule.cidr is not None:
        return [rule.cidr]
    return members.get(rule.peer_group or "", [])


def _rule_lines(chain: str, rule: Rule, members: Mapping[str, list[str]], accept: str) -> list[str]:
    peer_flag = "-s" if rule.direction == "ingress" else "-d"
    target = accept if rule.policy == "accept" else "DROP"
    comment = ["-m", "comment", "--comment", f'"{rule.rule_id} prio {rule.priority} {rule.policy}"']
    return [" ".join(["-A", chain, peer_flag, peer, *_match(rule), *comment, "-j", target])
            for peer in _peers(rule, members)]


def compile_ruleset(groups: Mapping[str, Group], enis: Iterable[Eni]) -> str:
    """The whole filter table of a VPC router, as iptables-restore input (applied atomically)."""
    enis = sorted(enis, key=lambda e: e.eni_id)
    members: dict[str, list[str]] = {}
    for eni in enis:
        for sg_id in eni.groups:
            members.setdefault(sg_id, []).extend(eni.addresses)

    chains: list[str] = []
    forward = ["-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
               "-A FORWARD -m conntrack --ctstate INVALID -j DROP"]
    body: list[str] = []
    ingress_jumps: list[str] = []
    for eni in enis:
        src, out, into = f"SRC-{eni.eni_id}", f"SG-OUT-{eni.eni_id}", f"SG-IN-{eni.eni_id}"
        chains.append(src)
        forward.append(f"-A FORWARD -m physdev --physdev-in {eni.eni_id} -j {src}")
        body += [f"-A {src} -s {address} -j RETURN" for address in eni.addresses]
        body.append(f"-A {src} -m comment --comment anti-spoofing -j DROP")
        own = [groups[g] for g in eni.groups if g in groups]
        if not own:
            continue
        chains += [out, into]
        forward.append(f"-A FORWARD -m physdev --physdev-in {eni.eni_id} -j {out}")
        ingress_jumps += [f"-A FORWARD -d {address} -j {into}" for address in eni.addresses]
        rules = sorted((r for g in own for r in g.rules), key=Rule.order)
        enterprise = own[0].group_type == "enterprise"
        for rule in (r for r in rules if r.direction == "egress"):
            body += _rule_lines(out, rule, members, "RETURN")
        body.append(f"-A {out} -j {'DROP' if enterprise else 'RETURN'}")
        for rule in (r for r in rules if r.direction == "ingress"):
            body += _rule_lines(into, rule, members, "ACCEPT")
        for group in own:
            if group.group_type == "normal" and group.inner_access_policy == "Accept":
                peers = [a for a in members.get(group.sg_id, []) if a not in eni.addresses]
                body += [f"-A {into} -s {peer} -m comment --comment {group.sg_id}-inner -j ACCEPT" for peer in peers]
        body.append(f"-A {into} -j DROP")

    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":{chain} - [0:0]" for chain in chains]
    lines += forward + ingress_jumps + body + ["COMMIT", ""]
    return "\n".join(lines)
