"""NAT gateway and SNAT entries with Alibaba's rules: a vSwitch's (or a block's) egress to the lab's internet.

Pure: ids, the checks of a SNAT entry, the routing numbers and the nftables text that ``netns/realize/nat_gateway.py``
keeps in a NAT gateway's namespace and its VPC's router.

Semantics (Alibaba's NAT gateway docs): an Internet NAT gateway sits in one vSwitch of its VPC and owns one SNAT
table (``stb-``) and one DNAT (forward) table (``ftb-``). EIPs are bound to it (``ecs.EipAssociation`` with its id);
a SNAT entry translates the traffic of a source — a vSwitch of the VPC or a CIDR block inside the VPC — to one of
those EIPs, and conntrack takes the replies back. An instance with an EIP of its own keeps using its EIP.

A DNAT (forward) entry sends what reaches one of the gateway's EIPs on ``external_port`` (a port, a ``first/last``
range, or ``any`` for a whole-address "IP mapping") of ``ip_protocol`` (tcp, udp or any) to ``internal_ip`` on
``internal_port`` (a range of the same size), an address of the gateway's VPC; the replies go back the same way.
(EIP, port, protocol) is unique in a table; an IP mapping takes its EIP whole (no other DNAT or SNAT entry on it);
a DNAT entry on an EIP that SNAT also uses takes ports above 1024 only with ``port_break`` (Alibaba's rules).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass

from netns.model.errors import ValidationError

TABLE = "acklab_ngw"  # nftables table (family ip) in a NAT gateway's namespace
LEG_PATTERN = "eip-*"  # the gateway's legs on the lab's internet, named by their EIPs' ids
IFNAME = "eth0"  # the gateway's leg on its vSwitch
NAT_TYPES = ("Enhanced",)  # "Normal" NAT gateways are gone from Alibaba (the SDK says so)
NETWORK_TYPES = ("internet",)  # a VPC NAT gateway ("intranet") translates into other VPCs: not in the lab
# In the VPC router, a SNAT entry's source is routed to the gateway after the main table (32766) and the default
# table (32767): the VPC's own blocks (its ``unreachable`` route), route entries and the EIP rules (900) decide
# first, so only traffic that nothing else routes — the internet's — goes to the gateway, and an instance's own
# EIP wins over SNAT, as on Alibaba.
ROUTER_RULE_PRIORITY = 32800
# The router's table for one gateway: from the gateway id's 32 bits, above 2^31 (far from the main table, the EIP
# legs' 10000+ and everything else). Derived, not allocated, so a gateway whose namespace vanished can still be
# cleaned out of its router. Two gateways of one VPC collide with a chance of 1 in 2^31.
ROUTER_TABLE_BASE = 1 << 31
# Inside the gateway: one table per EIP leg (from the leg's interface index), chosen by source address.
LEG_TABLE_BASE = 10000
LEG_RULE_PRIORITY = 1000
# DNAT: the reply of a forwarded connection leaves by the leg its request came in by, whatever its source (one
# internal address may be mapped from several EIPs, or be SNATed to another): the DNAT rule writes the leg's table
# into the connection's mark, replies copy it to the packet, and a rule per leg, before the source rules, looks the
# mark up.
MARK_RULE_PRIORITY = 900
# In the VPC router, the replies of an internal address are routed to the gateway like a SNAT source's, in a
# priority of their own: a SNAT entry of the same /32 is another rule, and the EIP rules (900) still win, so an
# instance with its own EIP answers by it (Alibaba: a DNAT entry works for an instance without an EIP).
ROUTER_DNAT_RULE_PRIORITY = 32801
PROTOCOLS = ("tcp", "udp", "any")
ANY = "any"
PORT_BREAK_ABOVE = 1024  # DNAT ports above this on an EIP shared with SNAT need port_break
_PORTS_RE = re.compile(r"^(\d{1,5})(?:/(\d{1,5}))?$")
_FORWARD_TABLE_RE = re.compile(r"^ftb-[0-9a-f]{8}$")
NOT_BOUND = "is not an EIP bound to NAT gateway"  # the one external_ip error a create waits out (see the provider)
COMMENT_MAX = 128  # bytes nftables keeps in a rule's comment


def snat_table_id(ngw_id: str) -> str:
    """``stb-`` and the gateway's hex, as a VPC's route table is ``vtb-`` and its hex."""
    return "stb-" + ngw_id.split("-", 1)[1]


def forward_table_id(ngw_id: str) -> str:
    return "ftb-" + ngw_id.split("-", 1)[1]


def ngw_of_snat_table(table_id: str) -> str:
    return "ngw-" + table_id.split("-", 1)[1]


def ngw_of_forward_table(table_id: str) -> str:
    return "ngw-" + table_id.split("-", 1)[1]


def new_forward_id() -> str:
    """A DNAT entry's id, ``fwd-`` and 8 hex digits as Alibaba's. Not an id of netns/model/names.py: the entry owns
    no namespace or interface, only rules inside its gateway and its router, which go with the gateway."""
    return f"fwd-{secrets.token_hex(4)}"


def router_table(ngw_id: str) -> int:
    return ROUTER_TABLE_BASE + (int(ngw_id.split("-", 1)[1], 16) & 0x7FFFFFFF)


def leg_table(leg_index: int) -> int:
    return LEG_TABLE_BASE + leg_index


@dataclass(frozen=True)
class SnatRule:
    """One SNAT entry as the kernel keeps it: in the comment of its nftables rule (the only place with room)."""

    entry_id: str
    source: ipaddress.IPv4Network
    snat_ips: tuple[ipaddress.IPv4Address, ...]  # one EIP, or a pool of them (each connection takes one)
    source_vswitch_id: str = ""  # set when the entry names a vSwitch rather than a block

    @property
    def snat_ip(self) -> str:
        """As Alibaba spells it: the address, or the pool's addresses separated by commas."""
        return ",".join(map(str, self.snat_ips))

    @property
    def pool(self) -> bool:
        return len(self.snat_ips) > 1

    def comment(self) -> str:
        words = [self.entry_id, str(self.source), self.snat_ip, self.source_vswitch_id]
        return " ".join(w for w in words if w)

    @classmethod
    def parse(cls, comment: str) -> SnatRule | None:
        words = comment.split()
        if len(words) not in (3, 4) or not words[0].startswith("snat-"):
            return None
        return cls(words[0], ipaddress.IPv4Network(words[1]),
                   tuple(ipaddress.IPv4Address(a) for a in words[2].split(",")),
                   words[3] if len(words) == 4 else "")


def check_source_cidr(resource: str, value: object, vpc_cidr: ipaddress.IPv4Network | None = None
                      ) -> ipaddress.IPv4Network:
    """A SNAT entry's ``source_cidr``: an IPv4 block, inside the gateway's VPC when that is known."""
    try:
        net = ipaddress.IPv4Network(str(value))
    except ValueError as exc:
        raise ValidationError(resource, "source_cidr", f"{value!r} is not an IPv4 CIDR block ({exc})") from None
    if vpc_cidr is not None and not net.subnet_of(vpc_cidr):
        raise ValidationError(resource, "source_cidr", f"{net} is not inside the VPC's cidr_block {vpc_cidr}")
    return net


def check_snat_ip(resource: str, value: object, bound: dict[str, str] | None = None, ngw_id: str = ""
                  ) -> tuple[ipaddress.IPv4Address, ...]:
    """``snat_ip``: an IPv4 address, or a SNAT address pool (addresses separated by commas, each once); with
    ``bound`` (address → EIP id of the gateway), every one an EIP of the gateway."""
    text = str(value)
    addresses = []
    for part in text.split(","):
        try:
            addresses.append(ipaddress.IPv4Address(part.strip()))
        except ValueError:
            raise ValidationError(resource, "snat_ip", f"{part.strip()!r} is not an IPv4 address"
                                  + (f" (in {text!r})" if "," in text else "")) from None
    twice = sorted({str(a) for a in addresses if addresses.count(a) > 1})
    if twice:
        raise ValidationError(resource, "snat_ip", f"{', '.join(twice)} is given more than once in {text!r}")
    room = SnatRule("snat-00000000", ipaddress.IPv4Network("255.255.255.255/32"), tuple(addresses), "vsw-00000000")
    if len(room.comment()) > COMMENT_MAX:
        raise ValidationError(resource, "snat_ip", f"a pool of {len(addresses)} EIPs is more than acklab keeps "
                                                   f"in a SNAT rule's {COMMENT_MAX}-byte comment (at most 5)")
    if bound is not None:
        missing = [str(a) for a in addresses if str(a) not in bound]
        if missing:
            have = ", ".join(f"{ip} ({eip})" for ip, eip in sorted(bound.items())) or "none"
            raise ValidationError(resource, "snat_ip", f"{', '.join(missing)} {NOT_BOUND} {ngw_id} (bound: "
                                                       f"{have}); associate it with ecs.EipAssociation first")
    return tuple(addresses)


def check_unique_source(resource: str, field: str, source: ipaddress.IPv4Network, existing: list[SnatRule]) -> None:
    """Alibaba: a source has one SNAT entry per SNAT table."""
    for rule in existing:
        if rule.source == source:
            raise ValidationError(resource, field, f"{source} already has SNAT entry {rule.entry_id} in this table")


def table_text() -> str:
    """The gateway's NAT table: one rule per SNAT entry, added to the chain (entries come and go one at a time)."""
    return f"""table ip {TABLE} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
    }}
}}
""" + dnat_chains_text()


def dnat_chains_text() -> str:
    """The DNAT chains, idempotent (a gateway made before DNAT existed gets them with its first entry): the entries'
    rules in ``prerouting``; ``replies`` copies a forwarded connection's mark (its leg's table) to its replies
    from the VPC (not to those coming in by a leg: a SNAT pool's connection carries a leg's mark too, and its
    replies go to the VPC by the main table)."""
    return (f"add chain ip {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n"
            f"add chain ip {TABLE} replies {{ type filter hook prerouting priority mangle; policy accept; }}\n"
            f"flush chain ip {TABLE} replies\n"
            f'add rule ip {TABLE} replies ct direction reply ct mark != 0 iifname != "{LEG_PATTERN}" '
            f"meta mark set ct mark\n")


def add_rule_text(rule: SnatRule, legs: dict[ipaddress.IPv4Address, int] | None = None) -> str:
    """SNAT only what leaves by an EIP leg: replies to the VPC and the gateway's own traffic stay untouched.

    A pool (``legs``: each address's leg table) spreads connections over its EIPs: a new connection from the source
    gets one leg's table in its mark, at random (``pools``), its packets carry the mark to the leg's routing rule
    (the DNAT replies' rule, ``MARK_RULE_PRIORITY``), and the SNAT takes the address of the leg the mark names."""
    match = f'ip saddr {rule.source} oifname "{LEG_PATTERN}"'
    comment = f'comment "{rule.comment()}"'
    if not rule.pool:
        return f"add rule ip {TABLE} postrouting {match} snat to {rule.snat_ips[0]} {comment}\n"
    if legs is None or set(legs) != set(rule.snat_ips):
        raise ValueError(f"SNAT pool {rule.entry_id}: a leg per address is needed")
    tables = [legs[a] for a in rule.snat_ips]
    by_mark = ", ".join(f"{legs[a]} : {a}" for a in rule.snat_ips)
    picks = ", ".join(f"{i} : {t}" for i, t in enumerate(tables))
    return (pools_chain_text()
            + f"add rule ip {TABLE} pools ip saddr {rule.source} ct state new "
              f"ct mark set numgen random mod {len(tables)} map {{ {picks} }} {comment}\n"
            + f"add rule ip {TABLE} pools ip saddr {rule.source} ct direction original ct mark != 0 "
              f"meta mark set ct mark {comment}\n"
            + f"add rule ip {TABLE} postrouting {match} snat ip to ct mark map {{ {by_mark} }} {comment}\n")


def pools_chain_text() -> str:
    """The chain of the SNAT pools' marks, idempotent: before routing, so the mark picks the leg."""
    return f"add chain ip {TABLE} pools {{ type filter hook prerouting priority mangle; policy accept; }}\n"


def delete_rule_text(handle: int, chain: str = "postrouting") -> str:
    return f"delete rule ip {TABLE} {chain} handle {handle}\n"


# --- DNAT (forward) entries ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ports:
    """A port or a ``first/last`` range, as Alibaba's ``external_port`` and ``internal_port`` spell them."""

    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}/{self.last}"

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def overlaps(self, other: Ports) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class DnatRule:
    """One DNAT entry as the kernel keeps it: in the comment of its nftables rule. Ports are None for ``any``."""

    entry_id: str
    external_ip: ipaddress.IPv4Address
    protocol: str  # tcp, udp or any (lower case)
    external: Ports | None
    internal_ip: ipaddress.IPv4Address
    internal: Ports | None
    port_break: bool = False

    def comment(self) -> str:
        words = [self.entry_id, str(self.external_ip), self.protocol, str(self.external or ANY), str(self.internal_ip),
                 str(self.internal or ANY), *(["break"] if self.port_break else [])]
        return " ".join(words)

    @classmethod
    def parse(cls, comment: str) -> DnatRule | None:
        words = comment.split()
        if len(words) not in (6, 7) or not words[0].startswith("fwd-") or words[2] not in PROTOCOLS:
            return None
        return cls(words[0], ipaddress.IPv4Address(words[1]), words[2], _parse_ports(words[3]),
                   ipaddress.IPv4Address(words[4]), _parse_ports(words[5]), len(words) == 7 and words[6] == "break")

    def conflict(self, other: DnatRule) -> str | None:
        """Why this entry and ``other`` cannot share a DNAT table (None: they can)."""
        if other.external_ip != self.external_ip:
            return None
        if ANY in (self.protocol, other.protocol):
            return (f"{self.external_ip} is mapped whole by DNAT entry {other.entry_id} (ip_protocol any)"
                    if other.protocol == ANY else f"{self.external_ip} already has DNAT entry {other.entry_id}; an "
                                                  "IP mapping (ip_protocol any) takes the whole EIP")
        if other.protocol == self.protocol and self.external and other.external and \
                self.external.overlaps(other.external):
            return (f"{self.protocol} {self.external} of {self.external_ip} overlaps DNAT entry {other.entry_id} "
                    f"({other.external})")
        return None


def _parse_ports(text: str) -> Ports | None:
    if text.lower() == ANY:
        return None
    match = _PORTS_RE.match(text)
    if match is None:
        raise ValueError(text)
    first = int(match.group(1))
    return Ports(first, int(match.group(2) or first))


def check_forward_table_id(resource: str, value: object) -> str:
    text = str(value)
    if not _FORWARD_TABLE_RE.match(text):
        raise ValidationError(resource, "forward_table_id", f"{text!r} is not a DNAT table id of acklab (ftb- and "
                                                            "8 hex digits: a vpc.NatGateway's forward_table_ids)")
    return text


def check_ip_protocol(resource: str, value: object) -> str:
    protocol = str(value).lower()
    if protocol not in PROTOCOLS:
        raise ValidationError(resource, "ip_protocol", f"{value!r} is not one of {', '.join(PROTOCOLS)}")
    return protocol


def check_ports(resource: str, field: str, value: object, protocol: str) -> Ports | None:
    """A port (1-65535), a ``first/last`` range, or ``any`` — which ip_protocol ``any`` requires and only it takes."""
    text = str(value)
    if protocol == ANY or text.lower() == ANY:
        if protocol != ANY or text.lower() != ANY:
            raise ValidationError(resource, field, f"{text!r}: ip_protocol any (an IP mapping) and port any go together"
                                                   f" (ip_protocol is {protocol})")
        return None
    try:
        ports = _parse_ports(text)
    except ValueError:
        raise ValidationError(resource, field, f"{text!r} is not a port or a range first/last (e.g. 80 or 8000/8010)"
                              ) from None
    if ports is None or not 1 <= ports.first <= ports.last <= 65535:
        raise ValidationError(resource, field, f"{text!r}: ports are 1-65535, the first of a range not above its last")
    return ports


def check_port_pair(resource: str, external: Ports | None, internal: Ports | None) -> None:
    """Alibaba maps a range onto a range of the same size, port by port."""
    if external and internal and external.size != internal.size:
        raise ValidationError(resource, "internal_port", f"{internal} has {internal.size} ports, external_port "
                                                         f"{external} has {external.size}: ranges map port by port")


def check_internal_ip(resource: str, value: object, vpc_cidr: ipaddress.IPv4Network | None = None
                      ) -> ipaddress.IPv4Address:
    """A private IPv4 address; with ``vpc_cidr``, one of the gateway's VPC."""
    try:
        addr = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ValidationError(resource, "internal_ip", f"{value!r} is not an IPv4 address") from None
    if not addr.is_private:
        raise ValidationError(resource, "internal_ip", f"{addr} is not a private address")
    if vpc_cidr is not None and addr not in vpc_cidr:
        raise ValidationError(resource, "internal_ip", f"{addr} is not inside the NAT gateway's VPC {vpc_cidr}")
    return addr


def check_external_ip(resource: str, value: object, bound: dict[str, str] | None = None, ngw_id: str = ""
                      ) -> ipaddress.IPv4Address:
    """One IPv4 address; with ``bound`` (address → EIP id of the gateway), one of the gateway's EIPs."""
    try:
        addr = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ValidationError(resource, "external_ip", f"{value!r} is not an IPv4 address") from None
    if bound is not None and str(addr) not in bound:
        have = ", ".join(f"{ip} ({eip})" for ip, eip in sorted(bound.items())) or "none"
        raise ValidationError(resource, "external_ip", f"{addr} {NOT_BOUND} {ngw_id} (bound: {have}); associate it "
                                                       "with ecs.EipAssociation first")
    return addr


def forward_rule(resource: str, entry_id: str, external_ip: object, external_port: object, ip_protocol: object,
                 internal_ip: object, internal_port: object, port_break: bool = False) -> DnatRule:
    """A DNAT entry from its own arguments (the first problem raised; the provider's Check reports them all)."""
    protocol = check_ip_protocol(resource, ip_protocol)
    external = check_ports(resource, "external_port", external_port, protocol)
    internal = check_ports(resource, "internal_port", internal_port, protocol)
    check_port_pair(resource, external, internal)
    return DnatRule(entry_id, check_external_ip(resource, external_ip), protocol, external,
                    check_internal_ip(resource, internal_ip), internal, bool(port_break))


def check_forward_conflicts(resource: str, rule: DnatRule, forwards: list[DnatRule], snats: list[SnatRule]) -> None:
    """The entry against its table's other DNAT entries and the gateway's SNAT entries (Alibaba's rules)."""
    for other in (f for f in forwards if f.entry_id != rule.entry_id):
        why = rule.conflict(other)
        if why:
            raise ValidationError(resource, "external_ip" if ANY in (rule.protocol, other.protocol) else
                                  "external_port", why)
    sharing = [s.entry_id for s in snats if rule.external_ip in s.snat_ips]
    if sharing and rule.protocol == ANY:
        raise ValidationError(resource, "external_ip", f"{rule.external_ip} is the snat_ip of SNAT entries "
                                                       f"{', '.join(sharing)}; an IP mapping (ip_protocol any) takes "
                                                       "the whole EIP")
    if sharing and not rule.port_break and rule.external and rule.external.last > PORT_BREAK_ABOVE:
        raise ValidationError(resource, "port_break", f"external_port {rule.external} is above {PORT_BREAK_ABOVE} on "
                                                      f"{rule.external_ip}, which SNAT entries {', '.join(sharing)} "
                                                      "also use: set port_break = true (Alibaba's rule)")


def check_snat_beside_forwards(resource: str, snat_ips: tuple[ipaddress.IPv4Address, ...],
                               forwards: list[DnatRule]) -> None:
    """A SNAT entry cannot translate to an EIP that a DNAT IP mapping takes whole."""
    for snat_ip in snat_ips:
        whole = [f.entry_id for f in forwards if f.external_ip == snat_ip and f.protocol == ANY]
        if whole:
            raise ValidationError(resource, "snat_ip", f"{snat_ip} is mapped whole by DNAT entry {whole[0]} "
                                                       "(ip_protocol any)")


def add_forward_text(rule: DnatRule, mark: int) -> str:
    """Match the EIP (and protocol and ports), mark the connection with its leg's table, and DNAT: the same ports
    keep theirs, a shifted range goes through a port map, an IP mapping rewrites the address only."""
    match = f"ip daddr {rule.external_ip}"
    target = f"{rule.internal_ip}"
    if rule.protocol != ANY and rule.external and rule.internal:
        match += f" {rule.protocol} dport {_nft_range(rule.external)}"
        if rule.internal.size == 1:
            target += f":{rule.internal.first}"
        elif rule.internal != rule.external:
            pairs = ", ".join(f"{e} : {i}" for e, i in zip(range(rule.external.first, rule.external.last + 1),
                                                           range(rule.internal.first, rule.internal.last + 1),
                                                           strict=True))
            target += f" : {rule.protocol} dport map {{ {pairs} }}"
    return f'add rule ip {TABLE} prerouting {match} ct mark set {mark} dnat to {target} comment "{rule.comment()}"\n'


def _nft_range(ports: Ports) -> str:
    return str(ports.first) if ports.size == 1 else f"{ports.first}-{ports.last}"
