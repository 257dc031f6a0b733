import ipaddress
import json

from netns.model.source_check import element_command, parse_listing, table_text

N = ipaddress.IPv4Network


def test_elements_are_port_address_pairs_hosts_without_prefix():
    text = element_command("add", "eni-1", [N("10.0.0.5/32"), N("10.244.1.0/24"), N("10.0.0.5/32")])
    assert text == ('add element bridge acklab port_addresses { "eni-1" . 10.0.0.5 }\n'
                    'add element bridge acklab port_blocks { "eni-1" . 10.244.1.0/24 }\n')
    assert element_command("delete", "eni-1", []) == ""


def test_only_eni_ports_are_checked_ip_and_arp():
    rules = [r.strip() for r in table_text().replace("\\\n", "").splitlines() if "drop" in r]
    assert len(rules) == 2 and all(r.startswith('iifname "eni-*"') for r in rules)
    assert all("@port_addresses" in r and "@port_blocks" in r for r in rules)
    assert any("ip saddr" in r for r in rules) and any("arp saddr ip" in r for r in rules)


def test_listing_is_parsed_back():
    listing = {"nftables": [{"metainfo": {}}, {"set": {"elem": [
        {"concat": ["eni-a", "192.168.1.10"]},
        {"concat": ["eni-a", {"prefix": {"addr": "10.244.1.0", "len": 24}}]},
        {"concat": ["lb-b", "192.168.1.20"]}]}}]}
    assert parse_listing(json.dumps(listing)) == {"eni-a": [N("192.168.1.10/32"), N("10.244.1.0/24")],
                                                 "lb-b": [N("192.168.1.20/32")]}
