"""The source check of a VPC's bridge ports, as nftables text (pure; applied by netns/realize/source_check.py).

Alibaba's vSwitch only accepts, from an ENI, packets whose source is an address the VPC assigned to that ENI
(its primary and secondary private IPs) or a block routed to its instance by a route entry. Here each ENI is a
bridge port named ``eni-…``; one set in a ``bridge`` table of the router namespace holds the pairs
``port . address`` and one rule drops IPv4 and ARP frames from an ENI port whose source is not in it. The set
is also the VPC's record of which address sits behind which port: address allocation reads it.

Why nftables and not iptables: the check is per bridge port and stateless; the bridge family sees every frame
at the port (also frames for the gateway), and a set update changes no rule. ipset's ``hash:net,iface`` cannot
match a bridge port from iptables (its physdev flag is not exposed to the iptables match).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable

TABLE = "acklab"
HOSTS = "port_addresses"  # port . single address: a hash set, cheap to change
BLOCKS = "port_blocks"  # port . routed block: an interval set, changed only by route entries
SETS = (HOSTS, BLOCKS)
CHECKED_PORTS = "eni-*"

Address = ipaddress.IPv4Network


def table_text() -> str:
    return f"""table bridge {TABLE} {{
  set {HOSTS} {{ type ifname . ipv4_addr; }}
  set {BLOCKS} {{ type ifname . ipv4_addr; flags interval; }}
  chain source_check {{
    type filter hook prerouting priority filter; policy accept;
    iifname "{CHECKED_PORTS}" ether type ip iifname . ip saddr != @{HOSTS} iifname . ip saddr != @{BLOCKS} \\
      counter drop comment "anti-spoofing"
    iifname "{CHECKED_PORTS}" ether type arp iifname . arp saddr ip != @{HOSTS} \\
      iifname . arp saddr ip != @{BLOCKS} counter drop comment "anti-spoofing"
  }}
}}
"""


def _element(port: str, address: Address) -> str:
    value = str(address.network_address) if address.prefixlen == 32 else str(address)
    return f'"{port}" . {value}'


def element_command(verb: str, port: str, addresses: Iterable[Address]) -> str:
    """``add``/``delete element`` for one port's addresses (hosts and blocks in their sets); may be empty."""
    text = ""
    for name, chosen in ((HOSTS, True), (BLOCKS, False)):
        elements = ", ".join(_element(port, a) for a in sorted(set(addresses)) if (a.prefixlen == 32) == chosen)
        text += f"{verb} element bridge {TABLE} {name} {{ {elements} }}\n" if elements else ""
    return text


def parse_listing(text: str) -> dict[str, list[Address]]:
    """``nft -j list table`` output → port → its addresses (both sets)."""
    bound: dict[str, list[Address]] = {}
    for item in json.loads(text).get("nftables", []):
        for elem in item.get("set", {}).get("elem", []):
            port, value = elem["concat"]
            if isinstance(value, dict):
                value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
            bound.setdefault(port, []).append(ipaddress.IPv4Network(value))
    return bound
