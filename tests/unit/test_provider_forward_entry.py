"""vpc.ForwardEntry (a DNAT entry of a NAT gateway): the pure model (ports, protocols, Alibaba's conflict rules, the
nftables text) and the plugin's Check (field-named errors for what the arguments alone decide, unknowns passing)."""

from __future__ import annotations

import ipaddress

import pytest

from acklab.provider import records, vpc
from acklab.provider.base import Context
from acklab.provider.vpc import ForwardEntry
from acklab.provider.wire import UNKNOWN
from netns.model import nat_gateway as model
from netns.model.errors import ValidationError

EIP = ipaddress.IPv4Address("203.0.113.10")
IPv4 = ipaddress.IPv4Address
BASE = {"forward_table_id": "ftb-0123abcd", "external_ip": "203.0.113.10", "external_port": "80",
        "ip_protocol": "tcp", "internal_ip": "172.16.0.3", "internal_port": "8080"}


def check(news: dict) -> tuple[dict, dict[str, str]]:
    kind = ForwardEntry()
    inputs, found = kind.check(Context("lab1", "x", "cn-hangzhou", "vpc.ForwardEntry 'x'"), news)
    return inputs, {f.field: f.reason for f in found}


def rule(entry: str, protocol: str, external: str, internal: str, ip: ipaddress.IPv4Address = EIP,
         port_break: bool = False
         ) -> model.DnatRule:
    return model.forward_rule("r", entry, ip, external, protocol, "172.16.0.3", internal, port_break)




def test_the_sdk_example_passes_check_with_the_defaults():
    inputs, found = check({**BASE, "name": "web"})
    assert found == {} and inputs["port_break"] is False and inputs["forward_entry_name"] == "web"
    # in a preview the SDK example's table and EIP are still unknown
    assert check({**BASE, "forward_table_id": UNKNOWN, "external_ip": UNKNOWN})[1] == {}


def test_check_names_each_field_and_reason():
    _, found = check({**BASE, "forward_table_id": "stb-0123abcd", "external_ip": "203.0.113.300",
                      "internal_ip": "8.8.8.8", "external_port": "0", "internal_port": "80/81"})
    assert "DNAT table id" in found["forward_table_id"] and "not an IPv4 address" in found["external_ip"]
    assert "not a private address" in found["internal_ip"] and "1-65535" in found["external_port"]
    assert set(found) == {"forward_table_id", "external_ip", "internal_ip", "external_port"}
    assert "not one of tcp, udp, any" in check({**BASE, "ip_protocol": "icmp"})[1]["ip_protocol"]
    assert "go together" in check({**BASE, "ip_protocol": "any"})[1]["external_port"]
    assert "go together" in check({**BASE, "internal_port": "any"})[1]["internal_port"]
    assert "map port by port" in check({**BASE, "external_port": "80/90", "internal_port": "80/85"})[1][
        "internal_port"]
    assert "not a port or a range" in check({**BASE, "external_port": "80-90"})[1]["external_port"]
    assert "is required" in check({k: v for k, v in BASE.items() if k != "internal_ip"})[1]["internal_ip"]


def test_ports_ranges_and_ip_mappings():
    assert check({**BASE, "ip_protocol": "Any", "external_port": "Any", "internal_port": "any"})[1] == {}
    assert check({**BASE, "ip_protocol": "UDP", "external_port": "10/20", "internal_port": "80/90"})[1] == {}
    mapped = rule("fwd-00000001", "any", "any", "any")
    assert mapped.external is None and model.DnatRule.parse(mapped.comment()) == mapped
    ranged = rule("fwd-00000002", "udp", "10/12", "80/82", port_break=True)
    assert model.DnatRule.parse(ranged.comment()) == ranged and len(ranged.comment()) <= model.COMMENT_MAX
    assert model.DnatRule.parse("snat-00000001 192.168.0.0/24 203.0.113.10") is None


def test_nftables_text():
    one = model.add_forward_text(rule("fwd-00000001", "tcp", "80", "8080"), 10005)
    assert "ip daddr 203.0.113.10 tcp dport 80 ct mark set 10005 dnat to 172.16.0.3:8080 " in one
    assert 'comment "fwd-00000001 203.0.113.10 tcp 80 172.16.0.3 8080"' in one
    same = model.add_forward_text(rule("fwd-00000002", "udp", "100/200", "100/200"), 10005)
    assert "udp dport 100-200 ct mark set 10005 dnat to 172.16.0.3 comment" in same  # ports kept
    shifted = model.add_forward_text(rule("fwd-00000003", "tcp", "10/11", "80/81"), 10005)
    assert "dnat to 172.16.0.3 : tcp dport map { 10 : 80, 11 : 81 }" in shifted
    whole = model.add_forward_text(rule("fwd-00000004", "any", "any", "any"), 10005)
    assert "ip daddr 203.0.113.10 ct mark set 10005 dnat to 172.16.0.3 comment" in whole
    assert "chain ip acklab_ngw prerouting" in model.table_text()


def test_conflicts_in_a_table_follow_alibaba():
    web = rule("fwd-00000001", "tcp", "80/90", "80/90")
    conflicts = model.check_forward_conflicts
    conflicts("r", rule("fwd-00000002", "udp", "80", "80"), [web], [])  # another protocol
    conflicts("r", rule("fwd-00000002", "tcp", "91", "80"), [web], [])  # another port
    conflicts("r", rule("fwd-00000002", "tcp", "80", "80", ip=IPv4("203.0.113.11")), [web], [])  # another EIP
    conflicts("r", web, [web], [])  # itself (a retried create)
    with pytest.raises(ValidationError, match=r"external_port: tcp 85 of 203\.0\.113\.10 overlaps DNAT entry fwd-0"):
        conflicts("r", rule("fwd-00000002", "tcp", "85", "80"), [web], [])
    with pytest.raises(ValidationError, match=r"external_ip: .* an IP mapping \(ip_protocol any\) takes the whole"):
        conflicts("r", rule("fwd-00000002", "any", "any", "any"), [web], [])
    with pytest.raises(ValidationError, match=r"external_ip: 203\.0\.113\.10 is mapped whole by DNAT entry"):
        conflicts("r", web, [rule("fwd-00000002", "any", "any", "any")], [])


def test_sharing_an_eip_with_snat():
    snat = model.SnatRule("snat-00000001", ipaddress.IPv4Network("172.16.0.0/21"), (EIP,))
    conflicts = model.check_forward_conflicts
    conflicts("r", rule("fwd-00000001", "tcp", "80", "8080"), [], [snat])  # a low port needs no port_break
    with pytest.raises(ValidationError, match=r"port_break: external_port 8080 is above 1024 .* snat-00000001"):
        conflicts("r", rule("fwd-00000001", "tcp", "8080", "80"), [], [snat])
    conflicts("r", rule("fwd-00000001", "tcp", "8080", "80", port_break=True), [], [snat])
    with pytest.raises(ValidationError, match=r"external_ip: .* snat_ip of SNAT entries snat-00000001"):
        conflicts("r", rule("fwd-00000001", "any", "any", "any"), [], [snat])
    with pytest.raises(ValidationError, match=r"snat_ip: 203\.0\.113\.10 is mapped whole by DNAT entry"):
        model.check_snat_beside_forwards("s", (EIP,), [rule("fwd-00000001", "any", "any", "any")])


def test_against_the_gateway():
    with pytest.raises(ValidationError, match=r"external_ip: 203\.0\.113\.11 is not an EIP bound to NAT gateway"):
        model.check_external_ip("r", "203.0.113.11", {"203.0.113.10": "eip-00000001"}, "ngw-00000001")
    with pytest.raises(ValidationError, match=r"internal_ip: 10\.0\.0\.3 is not inside the NAT gateway's VPC"):
        model.check_internal_ip("r", "10.0.0.3", ipaddress.IPv4Network("172.16.0.0/12"))
    assert model.ngw_of_forward_table(model.forward_table_id("ngw-0123abcd")) == "ngw-0123abcd"
    assert model.new_forward_id().startswith("fwd-") and len(model.new_forward_id()) == 12


def test_import_by_id_finds_no_difference(monkeypatch, tmp_path):
    """`import_` of an entry: Read by `<forward table>:<entry>` alone gives what the SDK example's arguments check
    to (spelling kept: a program's TCP stays TCP when the kernel says tcp)."""
    made = rule("fwd-0123abcd", "tcp", "80", "8080")

    class FoundGateway:
        def __init__(self, lab: str, ngw_id: str) -> None:
            assert ngw_id == "ngw-0123abcd"

        def forward(self, entry_id: str) -> model.DnatRule | None:
            return made if entry_id == made.entry_id else None

    monkeypatch.setattr(vpc, "NatGatewayRealization", FoundGateway)
    monkeypatch.setattr(records, "state_dir", lambda lab: tmp_path / lab)
    kind, ctx = ForwardEntry(), Context("lab1", "x", "cn-hangzhou", "vpc.ForwardEntry 'x'")
    program = {**BASE, "internal_ip": "172.16.0.3", "ip_protocol": "TCP"}
    read = kind.read(ctx, "ftb-0123abcd:fwd-0123abcd", {})
    assert read["forward_entry_id"] == "fwd-0123abcd" and read["status"] == "Available"
    assert kind.diff(read, kind.check(ctx, program)[0]).changed == ()  # the kernel's tcp is the program's TCP
    assert kind.diff(read, kind.check(ctx, {**program, "internal_port": "8081"})[0]).changed == ("internal_port",)
    assert kind.diff(kind.read(ctx, "ftb-0123abcd:fwd-0123abcd", read), kind.check(ctx, BASE)[0]).changed == ()
    assert kind.check(ctx, kind.inputs_of(read))[1] == []
    assert kind.read(ctx, "ftb-0123abcd:fwd-00000000", {}) is None
