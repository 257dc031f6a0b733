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
and routed traffic alike. The bridge's source check (netns/model/source_check.py) guarantees that a source
address came from the ENI it belongs to, so a packet's addresses identify its ENIs: egress is chosen by the
source address, ingress by the destination. Instances with no security group are left unfiltered (a lab
convenience; Alibaba requires one).
"""

from __future__ import annotations

import hashlib
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
    addresses: tuple[str, ...]  # the ENI's own addresses (primary and secondary private IPs)
    groups: tuple[str, ...] = field(default=())
    routed: tuple[str, ...] = field(default=())  # blocks routed to its instance by route entries


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
#
# The ruleset names no ENI. ENIs with the same groups share a *profile* (its chains SG-OUT-<p>/SG-IN-<p> are
# compiled once from those groups); the addresses of a profile's ENIs, and of each group's members, live in
# ipsets. Adding or removing an ENI of a known profile changes set contents only, never the ruleset.

SET_TYPE = "hash:net"


def profile_id(groups: Iterable[str]) -> str:
    """A short, stable name for a combination of groups (order does not matter)."""
    return hashlib.sha1(",".join(sorted(set(groups))).encode()).hexdigest()[:8]


def profile_set(profile: str) -> str:
    return f"sgp-{profile}"


def member_set(sg_id: str) -> str:
    return f"sgm-{sg_id}"


def profiles_of(enis: Iterable[Eni]) -> dict[str, tuple[str, ...]]:
    return {profile_id(e.groups): tuple(sorted(set(e.groups))) for e in enis if e.groups}


def referenced_groups(groups: Mapping[str, Group]) -> set[str]:
    """Every group that needs a member set: the VPC's groups and the peers their rules name."""
    return set(groups) | {r.peer_group for g in groups.values() for r in g.rules if r.peer_group}


def set_contents(groups: Mapping[str, Group], enis: Iterable[Eni]) -> dict[str, set[str]]:
    """Every ipset the ruleset refers to → its addresses.

    A profile set holds what the profile's ENIs carry: their addresses and the blocks routed to their
    instances (so the node's groups filter traffic of what sits behind it). A member set holds the members'
    own addresses only: a rule "from group G" means G's instances, not what they route.
    """
    enis = list(enis)
    contents: dict[str, set[str]] = {member_set(g): set() for g in referenced_groups(groups)}
    for eni in enis:
        if not eni.groups:
            continue
        contents.setdefault(profile_set(profile_id(eni.groups)), set()).update((*eni.addresses, *eni.routed))
        for sg_id in eni.groups:
            contents.setdefault(member_set(sg_id), set()).update(eni.addresses)
    return contents


def _match(rule: Rule) -> list[str]:
    words = [] if rule.protocol == "all" else ["-p", rule.protocol]
    if rule.ports is not None:
        low, high = rule.ports
        words += ["--dport", str(low) if low == high else f"{low}:{high}"]
    return words


def _rule_line(chain: str, rule: Rule, accept: str) -> str:
    direction = "src" if rule.direction == "ingress" else "dst"
    if rule.cidr is not None:
        peer = ["-s" if direction == "src" else "-d", rule.cidr]
    else:
        peer = ["-m", "set", "--match-set", member_set(rule.peer_group or ""), direction]
    target = accept if rule.policy == "accept" else "DROP"
    comment = ["-m", "comment", "--comment", f'"{rule.rule_id} prio {rule.priority} {rule.policy}"']
    return " ".join(["-A", chain, *peer, *_match(rule), *comment, "-j", target])


def _profile_chains(profile: str, own: list[Group]) -> list[str]:
    out, into = f"SG-OUT-{profile}", f"SG-IN-{profile}"
    rules = sorted((r for g in own for r in g.rules), key=Rule.order)
    enterprise = bool(own) and own[0].group_type == "enterprise"
    body = [_rule_line(out, r, "RETURN") for r in rules if r.direction == "egress"]
    body.append(f"-A {out} -j {'DROP' if enterprise else 'RETURN'}")
    body += [_rule_line(into, r, "ACCEPT") for r in rules if r.direction == "ingress"]
    body += [f"-A {into} -m set --match-set {member_set(g.sg_id)} src -m comment --comment {g.sg_id}-inner -j ACCEPT"
             for g in own if g.group_type == "normal" and g.inner_access_policy == "Accept"]
    body.append(f"-A {into} -j DROP")
    return body


def compile_ruleset(groups: Mapping[str, Group], profiles: Mapping[str, tuple[str, ...]]) -> str:
    """The whole filter table of a VPC router, as iptables-restore input (applied atomically).

    ``profiles``: profile id → its groups (see ``profiles_of``). The sets it names must exist first.
    """
    ordered = sorted(profiles.items())
    chains = [c for p, _ in ordered for c in (f"SG-OUT-{p}", f"SG-IN-{p}")]
    forward = ["-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
               "-A FORWARD -m conntrack --ctstate INVALID -j DROP"]
    forward += [f"-A FORWARD -m set --match-set {profile_set(p)} src -j SG-OUT-{p}" for p, _ in ordered]
    forward += [f"-A FORWARD -m set --match-set {profile_set(p)} dst -j SG-IN-{p}" for p, _ in ordered]
    body = [line for p, ids in ordered for line in _profile_chains(p, [groups[g] for g in ids if g in groups])]
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":{chain} - [0:0]" for chain in chains]
    lines += forward + body + ["COMMIT", ""]
    return "\n".join(lines)
