"""An EIP's leg: the parked end of the EIP's internet port, moved into the namespace that uses the EIP.

An EIP is a veth pair in the lab's internet namespace (``netns/realize/eip.py``): ``eip-<hex>`` on the internet
bridge, ``eip-<hex>p`` parked beside it. Bound, the parked end moves into a VPC router (an instance's EIP: 1:1 NAT
there) or into a NAT gateway (its SNAT and DNAT entries translate to the EIP) and becomes ``eip-<hex>`` there, with
the EIP as a /32 (so it answers ARP for the address on the internet) and a routing table of its own whose one route
sends the internet out of the leg, chosen by a rule per source address. One class for both users: each passes its
table numbering, rule priority and sources (``netns/model/eip.py``, ``netns/model/nat_gateway.py``).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from netns.kernel import arp, netlink
from netns.kernel.link import ensure_address, index_of, unless_exists
from netns.kernel.namespace import Namespace
from netns.model import slb as slb_model
from netns.model.errors import NotFoundError
from netns.realize import format_alias


@dataclass(frozen=True)
class Routing:
    """How a user routes out of its legs: the table of a leg (by the leg's interface index) and the rules' priority."""

    table_of: Callable[[int], int]
    priority: int


@dataclass(frozen=True)
class EipLeg:
    eip_id: str
    parked: str  # the end's name while parked in the internet namespace
    internet: Namespace

    def plug(self, into: Namespace, address: str, alias: Mapping[str, str], routing: Routing,
             sources: Iterable[str]) -> int:
        """Move the parked end into ``into`` (a retried plug finds it there already), name it, label it with
        ``alias``, give it the EIP, route the internet out of it for each of ``sources``, announce the address on
        the internet (a stale neighbour entry there is replaced at once). The leg's table."""
        with self.internet.ipr() as ipr:
            if index_of(ipr, self.parked) is not None:
                ipr.link("set", ifname=self.parked, state="down")
                ipr.link("set", ifname=self.parked, net_ns_fd=into.name)
        with into.ipr() as ipr:
            index = index_of(ipr, self.parked) or index_of(ipr, self.eip_id)
            if index is None:
                raise NotFoundError(f"EIP {self.eip_id}: its leg is in neither the internet nor {into.name}")
            ipr.link("set", index=index, ifname=self.eip_id, ifalias=format_alias(**alias))
            ipr.link("set", index=index, state="up")
            ensure_address(ipr, self.eip_id, ipaddress.IPv4Interface(f"{address}/32"))
            table = routing.table_of(index)
            ipr.route("replace", dst=str(slb_model.INTERNET), oif=index, table=table, prefsrc=address)
            for source in sources:
                unless_exists(ipr.rule, "add", src=source, src_len=32, table=table, priority=routing.priority)
        arp.announce(into, self.eip_id, address)
        return table

    def index_in(self, namespace: Namespace) -> int | None:
        """The leg's interface index in ``namespace`` (plugged, or half-plugged under its parked name)."""
        if not namespace.exists():
            return None
        with namespace.ipr() as ipr:
            return index_of(ipr, self.eip_id) or index_of(ipr, self.parked)

    def unplug(self, out_of: Namespace, address: str, routing: Routing, sources: Iterable[str]) -> None:
        """Undo ``plug`` as far as it got and move the end back to the internet, parked. Nothing to do when the
        namespace is gone (the leg died with it: a veth end dies with its namespace, its peer too)."""
        index = self.index_in(out_of)
        if index is None:
            return
        with out_of.ipr() as ipr:
            for source in sources:
                with contextlib.suppress(netlink.NetlinkError):
                    ipr.rule("del", src=source, src_len=32, table=routing.table_of(index), priority=routing.priority)
            ipr.link("set", index=index, state="down")  # its routes go with it
            with contextlib.suppress(netlink.NetlinkError):
                ipr.addr("del", index=index, address=address, prefixlen=32)
            ipr.link("set", index=index, ifname=self.parked, ifalias="")
            ipr.link("set", index=index, net_ns_fd=self.internet.name)
