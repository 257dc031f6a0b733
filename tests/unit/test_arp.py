"""The gratuitous ARP frame, byte by byte (RFC 5227 §3: an ARP request whose sender and target are the address)."""

import ipaddress

from netns.kernel.arp import gratuitous_request


def test_a_gratuitous_request_is_broadcast_with_sender_and_target_the_address():
    mac = bytes.fromhex("02aabbccddee")
    frame = gratuitous_request(mac, ipaddress.IPv4Address("203.0.113.10"))
    assert len(frame) == 14 + 28
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"
    arp = frame[14:]
    assert arp[:8] == bytes.fromhex("0001080006040001")  # Ethernet, IPv4, 6, 4, request
    assert arp[8:14] == mac and arp[14:18] == bytes([203, 0, 113, 10])
    assert arp[18:24] == b"\x00" * 6 and arp[24:28] == bytes([203, 0, 113, 10])
