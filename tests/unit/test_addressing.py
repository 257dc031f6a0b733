"""Alibaba's VPC and vSwitch addressing rules, without root."""

import ipaddress
import re

import pytest

from netns.model import addressing
from netns.model.errors import ValidationError

N = ipaddress.IPv4Network
A = ipaddress.IPv4Address


@pytest.mark.parametrize("cidr", ["192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "10.20.0.0/16", "192.168.3.0/28"])
def test_vpc_accepts_private_blocks(cidr):
    assert addressing.check_vpc_cidr("vpc", cidr) == N(cidr)


@pytest.mark.parametrize(("cidr", "reason"), [
    ("8.8.0.0/16", "is not inside"),
    ("192.168.0.0/29", "prefix length /29"),
    ("192.168.0.1/16", "is not a CIDR block"),
    ("fd00::/64", "not IPv4"),
    ("banana", "is not a CIDR block"),
])
def test_vpc_rejects_with_field_and_reason(cidr, reason):
    with pytest.raises(ValidationError) as err:
        addressing.check_vpc_cidr("vpc.Network 'v'", cidr)
    assert err.value.field == "cidr_block"
    assert reason in err.value.reason
    assert str(err.value).startswith("vpc.Network 'v': cidr_block: ")


def test_vswitch_must_sit_inside_its_vpc():
    with pytest.raises(ValidationError, match=re.escape("not inside the VPC's cidr_block 192.168.0.0/16")):
        addressing.check_vswitch_cidr("vsw", "10.0.1.0/24", N("192.168.0.0/16"))


def test_vswitch_must_not_overlap_a_sibling():
    with pytest.raises(ValidationError, match="overlaps vSwitch a"):
        addressing.check_vswitch_cidr("vsw", "192.168.1.128/25", N("192.168.0.0/16"), [("a", N("192.168.1.0/24"))])


@pytest.mark.parametrize("cidr", ["192.168.0.0/15", "192.168.1.0/30"])
def test_vswitch_prefix_range(cidr):
    with pytest.raises(ValidationError, match="prefix length"):
        addressing.check_vswitch_cidr("vsw", cidr)


def test_reserved_are_first_and_last_three():
    assert addressing.reserved(N("192.168.1.0/24")) == {A("192.168.1.0"), A("192.168.1.253"),
                                                         A("192.168.1.254"), A("192.168.1.255")}


def test_gateway_is_the_253_style_address():
    assert addressing.gateway(N("192.168.1.0/24")) == A("192.168.1.253")
    assert addressing.gateway(N("10.0.0.0/29")) == A("10.0.0.5")


def test_allocation_skips_reserved_and_used():
    net = N("10.0.0.0/29")  # usable: .1 .2 .3 .4
    assert addressing.allocate(net, []) == A("10.0.0.1")
    assert addressing.allocate(net, [A("10.0.0.1"), A("10.0.0.3")]) == A("10.0.0.2")
    with pytest.raises(ValidationError, match="no free address"):
        addressing.allocate(net, [A(f"10.0.0.{i}") for i in range(1, 5)])


@pytest.mark.parametrize(("ip", "reason"), [
    ("192.168.1.253", "reserved"),
    ("192.168.1.0", "reserved"),
    ("192.168.2.4", "not inside"),
    ("192.168.1.10", "already used"),
    ("192.168.1.300", "not an IPv4 address"),
])
def test_private_ip_checks(ip, reason):
    with pytest.raises(ValidationError) as err:
        addressing.check_private_ip("ecs", ip, N("192.168.1.0/24"), [A("192.168.1.10")])
    assert err.value.field == "private_ip"
    assert reason in err.value.reason


def test_private_ip_accepted():
    assert addressing.check_private_ip("ecs", "192.168.1.11", N("192.168.1.0/24"), [A("192.168.1.10")]) == \
        A("192.168.1.11")
