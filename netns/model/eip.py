"""EIP (Elastic IP address) with Alibaba's rules: an address on the lab's internet, NATed 1:1 to an instance.

Pure: ids, the checks of an address and of an association, and the nftables text of the NAT that
``netns/realize/eip.py`` keeps in a VPC router namespace.

Semantics (Alibaba's EIP docs): an EIP is allocated on its own and associated with at most one instance at a time;
an instance has at most one EIP (on its primary ENI); traffic from the internet to the EIP reaches the instance's
private address with the client's address kept (DNAT), and the instance's traffic to the internet leaves from the
EIP (SNAT). The instance's security groups filter that traffic like any other. An instance without an EIP (or a NAT
gateway) has no route to the internet.
"""

from __future__ import annotations

import re
import secrets

from netns.model.errors import ValidationError

_ID = re.compile(r"^eip-[0-9a-f]{8}$")
# What an association binds an EIP to in the lab. Alibaba also has SlbInstance, HaVip, NetworkInterface.
INSTANCE_TYPES = ("EcsInstance", "Nat", "SlbInstance")
TABLE = "acklab_eip"  # nftables table (family ip) in a VPC router namespace
LEG_PATTERN = "eip-*"  # the router-side interfaces of EIP legs (named by the EIP's id)
# Policy routing of an associated instance: its traffic to the lab's internet leaves by its EIP's leg. One table per
# leg (numbered from the leg's interface index) so that legs come and go without touching each other's routes.
TABLE_BASE = 10000
RULE_PRIORITY = 900  # before the main table (32766), which has no route to the internet: the lab is sealed
# Bound to an intranet SLB, the leg is another frontend of the SLB's layer-4 listeners in the router (no 1:1 NAT):
# connections arriving by it carry this mark in conntrack, and their replies a packet mark that a rule (same
# priority) sends to the leg's table.
SLB_MARK_BASE = 0x45490000  # "EI" in the high half; the low half is the leg's interface index


def slb_mark(leg_index: int) -> int:
    return SLB_MARK_BASE + leg_index


def new_eip_id() -> str:
    """``eip-`` and 8 hex digits, like acklab's other ids (short enough to name an interface)."""
    return f"eip-{secrets.token_hex(4)}"


def check_eip_id(resource: str, field: str, value: object) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValidationError(resource, field, f"{value!r} is not an EIP id of acklab (eip- and 8 hex digits)")
    return value


def route_table(leg_index: int) -> int:
    return TABLE_BASE + leg_index


def table_text() -> str:
    """The NAT of a router's EIPs: two maps (EIP → private address, private address → EIP) and one rule each.

    An association adds one element to each map in one transaction; no rule changes. DNAT only for traffic that
    arrives on an EIP leg, SNAT only for traffic that leaves by one: the VPC's own traffic is untouched.
    """
    return f"""table ip {TABLE} {{
    map to_private {{ type ipv4_addr : ipv4_addr; }}
    map to_eip {{ type ipv4_addr : ipv4_addr; }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "{LEG_PATTERN}" dnat to ip daddr map @to_private
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{LEG_PATTERN}" snat to ip saddr map @to_eip
    }}
}}
"""


def elements(verb: str, eip: str, private_ip: str) -> str:
    """One transaction's text adding (``add``) or removing (``delete``) an association's two map elements."""
    return (f"{verb} element ip {TABLE} to_private {{ {eip} : {private_ip} }}\n"
            f"{verb} element ip {TABLE} to_eip {{ {private_ip} : {eip} }}\n")
