"""VPC and vSwitch addressing with Alibaba Cloud's rules.

- A VPC's CIDR block is 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or a subnet of one, with a prefix
  length from 8 to 28 (the console's choices; other private/public ranges are left out).
- A vSwitch's CIDR block lies inside its VPC's, has a prefix length from 16 to 29, and does not overlap
  another vSwitch of the same VPC.
- In each vSwitch the first address and the last three are reserved by the system; the vSwitch gateway
  is the third-to-last one (x.x.x.253 in a /24), the address users see as the gateway in an ECS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from netns.model.errors import ValidationError

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address

VPC_BLOCKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
VPC_PREFIX = (8, 28)
VSWITCH_PREFIX = (16, 29)


def parse_network(resource: str, field: str, value: object) -> Net:
    if not isinstance(value, str):
        raise ValidationError(resource, field, f"expected a CIDR block such as 10.0.0.0/16, got {value!r}")
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValidationError(resource, field, f"{value!r} is not a CIDR block ({exc})") from None
    if not isinstance(net, Net):
        raise ValidationError(resource, field, f"{value} is not IPv4; acklab VPCs are IPv4 only")
    return net


def check_vpc_cidr(resource: str, value: object) -> Net:
    net = parse_network(resource, "cidr_block", value)
    if not any(net.subnet_of(block) for block in VPC_BLOCKS):
        raise ValidationError(
            resource, "cidr_block",
            f"{net} is not inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
        )
    low, high = VPC_PREFIX
    if not low <= net.prefixlen <= high:
        raise ValidationError(resource, "cidr_block", f"prefix length /{net.prefixlen} is outside /{low}../{high}")
    return net


def check_vswitch_cidr(resource: str, value: object, vpc_cidr: Net | None = None,
                       siblings: Iterable[tuple[str, Net]] = ()) -> Net:
    """Validate a vSwitch block against its VPC and the VPC's other vSwitches (name, block)."""
    net = parse_network(resource, "cidr_block", value)
    low, high = VSWITCH_PREFIX
    if not low <= net.prefixlen <= high:
        raise ValidationError(resource, "cidr_block", f"prefix length /{net.prefixlen} is outside /{low}../{high}")
    if vpc_cidr is not None and not net.subnet_of(vpc_cidr):
        raise ValidationError(resource, "cidr_block", f"{net} is not inside the VPC's cidr_block {vpc_cidr}")
    for name, other in siblings:
        if net.overlaps(other):
            raise ValidationError(resource, "cidr_block", f"{net} overlaps vSwitch {name} ({other})")
    return net


def reserved(net: Net) -> frozenset[Addr]:
    """The system-reserved addresses of a vSwitch: the first and the last three."""
    first = net.network_address
    last = net.broadcast_address
    return frozenset({first, last - 2, last - 1, last})


def gateway(net: Net) -> Addr:
    """The vSwitch gateway: the third-to-last address (x.x.x.253 in a /24)."""
    return net.broadcast_address - 2


def check_private_ip(resource: str, value: object, net: Net, used: Iterable[Addr] = (),
                     field: str = "private_ip") -> Addr:
    """Validate an address requested for an ENI in the vSwitch ``net``."""
    try:
        addr = ipaddress.ip_address(value)  # type: ignore[arg-type]
    except ValueError:
        raise ValidationError(resource, field, f"{value!r} is not an IPv4 address") from None
    if addr not in net:
        raise ValidationError(resource, field, f"{addr} is not inside the vSwitch's cidr_block {net}")
    if addr in reserved(net):
        raise ValidationError(
            resource, field,
            f"{addr} is reserved in {net} (the first and the last three addresses are; the gateway is {gateway(net)})",
        )
    if addr in set(used):
        raise ValidationError(resource, field, f"{addr} is already used in {net}")
    return addr  # type: ignore[return-value]


def allocate(net: Net, used: Iterable[Addr]) -> Addr:
    """The lowest address of ``net`` that is neither reserved nor used."""
    taken = set(used) | reserved(net)
    for addr in net:
        if addr not in taken:
            return addr
    raise ValidationError(f"vSwitch {net}", "private_ip", f"no free address left in {net}")
