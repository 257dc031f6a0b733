"""Route entry (next hop: an instance) → a route in the VPC router namespace via the instance's primary IP.

The VPC then delivers the destination block to that instance, which is how ACK's VPC-route mode (what ACK
calls Flannel) reaches each node's pod CIDR. The block is recorded on the instance's ENI port (``routes=``):
its source check lets the block's addresses leave that port, and the instance's groups filter its traffic.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netns.kernel import netlink
from netns.model.errors import NotFoundError, ValidationError
from netns.realize import lab_lock, words
from netns.realize.eni import find_primary_port
from netns.realize.vpc import VpcRouter

ESRCH = 3


def check_destination(resource: str, value: object,
                      vswitch_blocks: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """Alibaba: a custom route's destination may not equal or sit inside a vSwitch's block; it may lie
    outside the VPC's block (e.g. a pod CIDR)."""
    try:
        dst = ipaddress.IPv4Network(value, strict=True)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise ValidationError(resource, "destination_cidrblock", f"{value!r} is not an IPv4 CIDR block "
                              "(host bits must be zero)") from None
    for block in vswitch_blocks:
        if dst.subnet_of(block):
            raise ValidationError(resource, "destination_cidrblock",
                                  f"{dst} lies inside vSwitch block {block} of the VPC; route a block no vSwitch uses")
    if dst.prefixlen == 0:
        raise ValidationError(resource, "destination_cidrblock", "0.0.0.0/0 would route the VPC out: the lab is sealed")
    return dst


@dataclass(frozen=True)
class RouteEntry:
    router: VpcRouter
    destination: ipaddress.IPv4Network
    instance_id: str

    def create(self, resource: str) -> None:
        with lab_lock(self.router.lab):
            vpc_cidr = self.router.cidr()
            if vpc_cidr is None:
                raise NotFoundError(f"{resource}: route_table_id: the VPC {self.router.vpc_id} does not exist")
            blocks = [b for b in (v.cidr() for v in self.router.vswitches()) if b]
            check_destination(resource, str(self.destination), blocks)
            found = find_primary_port(self.router, self.instance_id)
            if found is None:
                raise NotFoundError(f"{resource}: nexthop_id: {self.instance_id} is not an instance of VPC "
                                    f"{self.router.vpc_id}")
            port, facts = found
            if str(self.destination) in self._routed_elsewhere():
                raise ValidationError(resource, "destination_cidrblock",
                                      f"{self.destination} already has a route entry in this route table")
            with self.router.namespace.ipr() as ipr:
                ipr.route("replace", dst=str(self.destination), gateway=facts["ip"])
            routes = sorted({*words(facts, "routes"), str(self.destination)})
            port.rewrite(facts, {**facts, "routes": ",".join(routes)})

    def _routed_elsewhere(self) -> set[str]:
        return {r for v in self.router.vswitches() for facts in v.enis().values()
                if facts.get("instance") != self.instance_id for r in words(facts, "routes")}

    def exists(self) -> bool:
        if not self.router.namespace.exists():
            return False
        found = find_primary_port(self.router, self.instance_id)
        with self.router.namespace.ipr() as ipr:
            routes = ipr.get_routes(family=2, table=254)
        dst, length = str(self.destination.network_address), self.destination.prefixlen
        via = {r.get("RTA_GATEWAY") for r in routes if r.get("RTA_DST") == dst and r["dst_len"] == length}
        return found is not None and found[1]["ip"] in via

    def delete(self) -> None:
        with lab_lock(self.router.lab):
            if not self.router.namespace.exists():
                return
            with self.router.namespace.ipr() as ipr:
                try:
                    ipr.route("del", dst=str(self.destination))
                except netlink.NetlinkError as exc:
                    if exc.code != ESRCH:
                        raise
            found = find_primary_port(self.router, self.instance_id)
            if found is not None:
                port, facts = found
                routes = [r for r in words(facts, "routes") if r != str(self.destination)]
                port.rewrite(facts, {**facts, "routes": ",".join(routes)})
