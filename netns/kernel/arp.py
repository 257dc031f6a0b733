"""Gratuitous ARP: an address that moved to another port tells its segment at once.

When an address appears on a new port (an EIP associated, a NAT gateway's leg plugged), a neighbour on the
segment may still hold an entry for it that is INCOMPLETE or FAILED from a probe made while nothing answered.
Until that entry times out, its packets queue or fail with "no route to host" (up to 3 s with the default
probes). A gratuitous ARP request (sender and target both the address, broadcast) updates any such entry to
the new MAC at once (Linux updates existing entries from it even with ``arp_accept`` off), as clouds do when an
EIP moves. It is sent from a packet socket made inside the namespace; nothing forks.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from netns.kernel.namespace import Namespace

ETH_P_ARP = 0x0806
ARP_REQUEST = 1
BROADCAST = b"\xff" * 6


def gratuitous_request(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    """The Ethernet frame of a gratuitous ARP request for ``address`` from ``mac``."""
    ip = address.packed
    header = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, ARP_REQUEST) + mac + ip + b"\x00" * 6 + ip
    return header + body


def announce(namespace: Namespace, ifname: str, address: str) -> None:
    """Send one gratuitous ARP for ``address`` out of ``ifname`` (which must be up) in ``namespace``."""
    sock = namespace.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        sock.bind((ifname, ETH_P_ARP))
        mac = sock.getsockname()[4]
        sock.send(gratuitous_request(mac, ipaddress.IPv4Address(address)))
    finally:
        sock.close()
