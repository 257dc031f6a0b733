"""Links inside a namespace: bridges, veth pairs, addresses, routes.

Each helper is idempotent (ensure-style), because a realization may be re-run after a failure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netns.kernel.namespace import Namespace

EEXIST = 17
ENODEV = 19


def index_of(ipr: IPRoute, ifname: str) -> int | None:
    """The interface index of ``ifname``, asked of the kernel by name (no dump of every link)."""
    try:
        return ipr.link("get", ifname=ifname)[0]["index"]
    except NetlinkError as exc:
        if exc.code == ENODEV:
            return None
        raise


def ensure_address(ipr: IPRoute, ifname: str, interface: ipaddress.IPv4Interface) -> None:
    index = index_of(ipr, ifname)
    try:
        ipr.addr("add", index=index, address=str(interface.ip), prefixlen=interface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code != EEXIST:
            raise


def addresses(ipr: IPRoute, ifname: str) -> list[ipaddress.IPv4Interface]:
    index = index_of(ipr, ifname)
    if index is None:
        return []
    return [
        ipaddress.IPv4Interface(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
        for a in ipr.get_addr(index=index, family=2)
    ]


def ensure_default_route(ipr: IPRoute, gateway: ipaddress.IPv4Address) -> None:
    try:
        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))
    except NetlinkError as exc:
        if exc.code != EEXIST:
            raise


def default_gateway(ipr: IPRoute) -> str | None:
    for route in ipr.get_routes(family=2, table=254):
        if route["dst_len"] == 0:
            return route.get("RTA_GATEWAY")
    return None


def ensure_unreachable(ipr: IPRoute, net: ipaddress.IPv4Network) -> None:
    """An ``unreachable`` route: traffic to the block that no more specific route serves is refused."""
    try:
        ipr.route("add", dst=str(net), type="unreachable")
    except NetlinkError as exc:
        if exc.code != EEXIST:
            raise


def unreachable_routes(ipr: IPRoute) -> list[ipaddress.IPv4Network]:
    return [
        ipaddress.IPv4Network(f"{r.get('RTA_DST')}/{r['dst_len']}")
        for r in ipr.get_routes(family=2, table=254)
        if r["type"] == 7  # RTN_UNREACHABLE
    ]


@dataclass(frozen=True)
class Bridge:
    """A Linux bridge in a namespace (STP off, so ports forward as soon as they are up)."""

    namespace: Namespace
    ifname: str

    def ensure(self, alias: str = "") -> None:
        with self.namespace.ipr() as ipr:
            if index_of(ipr, self.ifname) is None:
                ipr.link("add", ifname=self.ifname, kind="bridge")
            index = index_of(ipr, self.ifname)
            if alias:
                ipr.link("set", index=index, ifalias=alias)
            ipr.link("set", index=index, state="up")

    def exists(self) -> bool:
        with self.namespace.ipr() as ipr:
            return index_of(ipr, self.ifname) is not None

    def remove(self) -> None:
        with self.namespace.ipr() as ipr:
            index = index_of(ipr, self.ifname)
            if index is not None:
                ipr.link("del", index=index)


@dataclass(frozen=True)
class Veth:
    """A veth pair: ``ifname`` in ``namespace`` and ``peer_ifname`` in ``peer_namespace``.

    The pair is created from inside ``namespace`` with its peer placed straight into the other namespace,
    so no end ever appears in the root namespace.
    """

    namespace: Namespace
    ifname: str
    peer_namespace: Namespace
    peer_ifname: str

    def ensure(self, alias: str = "", master: str | None = None) -> None:
        with self.namespace.ipr() as ipr:
            if index_of(ipr, self.ifname) is None:
                ipr.link("add", ifname=self.ifname, kind="veth",
                         peer={"ifname": self.peer_ifname, "net_ns_fd": self.peer_namespace.name})
            settings: dict[str, object] = {"state": "up"}
            if alias:
                settings["ifalias"] = alias
            if master is not None:
                settings["master"] = index_of(ipr, master)
            ipr.link("set", ifname=self.ifname, **settings)  # one request: by name, no index lookup
        with self.peer_namespace.ipr() as ipr:
            ipr.link("set", ifname=self.peer_ifname, state="up")

    def set_alias(self, alias: str) -> None:
        if not self.namespace.exists():
            return
        with self.namespace.ipr() as ipr:
            index = index_of(ipr, self.ifname)
            if index is not None:
                ipr.link("set", index=index, ifalias=alias)

    def remove(self) -> None:
        """Delete the pair (deleting one end deletes both)."""
        if not self.namespace.exists():
            return
        with self.namespace.ipr() as ipr:
            try:
                ipr.link("del", ifname=self.ifname)
            except NetlinkError as exc:
                if exc.code != ENODEV:
                    raise
