"""Links inside a namespace: bridges, veth pairs, addresses, routes.

Each helper is idempotent (ensure-style), because a realization may be re-run after a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netns.kernel import netlink
from netns.kernel.namespace import Namespace

if TYPE_CHECKING:
    from pyroute2 import IPRoute

EEXIST = 17
ENODEV = 19
IFNAME_MAX = 15  # IFNAMSIZ - 1


def check_ifname(name: str) -> None:
    """Refuse a name the kernel would refuse (dev_valid_name), before any netlink request is made."""
    if not 0 < len(name.encode()) <= IFNAME_MAX or name in (".", "..") or any(c in name for c in "/:") \
            or any(c.isspace() for c in name):
        raise ValueError(f"{name!r} is not a valid interface name (1-{IFNAME_MAX} bytes, no '/', ':' or space)")


def index_of(ipr: IPRoute, ifname: str) -> int | None:
    """The interface index of ``ifname``, asked of the kernel by name (no dump of every link)."""
    try:
        return ipr.link("get", ifname=ifname)[0]["index"]
    except netlink.NetlinkError as exc:
        if exc.code == ENODEV:
            return None
        raise


def unless_exists(request: Callable[..., object], *args: object, **kwargs: object) -> None:
    """A netlink add that may have been made already (a converge, a retry after a crash): EEXIST is success."""
    try:
        request(*args, **kwargs)
    except netlink.NetlinkError as exc:
        if exc.code != EEXIST:
            raise


def ensure_address(ipr: IPRoute, ifname: str, interface: ipaddress.IPv4Interface) -> None:
    unless_exists(ipr.addr, "add", index=index_of(ipr, ifname), address=str(interface.ip),
                  prefixlen=interface.network.prefixlen)


def addresses(ipr: IPRoute, ifname: str) -> list[ipaddress.IPv4Interface]:
    index = index_of(ipr, ifname)
    if index is None:
        return []
    return [
        ipaddress.IPv4Interface(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
        for a in ipr.get_addr(index=index, family=2)
    ]


def ensure_default_route(ipr: IPRoute, gateway: ipaddress.IPv4Address) -> None:
    unless_exists(ipr.route, "add", dst="0.0.0.0/0", gateway=str(gateway))


def default_gateway(ipr: IPRoute) -> str | None:
    for route in ipr.get_routes(family=2, table=254):
        if route["dst_len"] == 0:
            return route.get("RTA_GATEWAY")
    return None


def ensure_unreachable(ipr: IPRoute, net: ipaddress.IPv4Network) -> None:
    """An ``unreachable`` route: traffic to the block that no more specific route serves is refused."""
    unless_exists(ipr.route, "add", dst=str(net), type="unreachable")


def unreachable_routes(ipr: IPRoute) -> list[ipaddress.IPv4Network]:
    return [
        ipaddress.IPv4Network(f"{r.get('RTA_DST')}/{r['dst_len']}")
        for r in ipr.get_routes(family=2, table=254)
        if r["type"] == 7  # RTN_UNREACHABLE
    ]


def add_veth(ipr: IPRoute, ifname: str, peer_namespace: Namespace, peer_ifname: str) -> None:
    """A veth pair: ``ifname`` where ``ipr`` is, the peer created straight inside ``peer_namespace``."""
    try:
        ipr.link("add", ifname=ifname, kind="veth", peer={"ifname": peer_ifname, "net_ns_fd": peer_namespace.name})
    except netlink.NetlinkError as exc:
        if exc.code != EEXIST:
            raise


@dataclass(frozen=True)
class Bridge:
    """A Linux bridge in a namespace (STP off, so ports forward as soon as they are up)."""

    namespace: Namespace
    ifname: str

    def __post_init__(self) -> None:
        check_ifname(self.ifname)

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


def stable_mac(key: str) -> str:
    """A MAC address that is the same every time for ``key``: locally administered, unicast. An interface made
    again with the same address keeps its MAC, so neighbours' ARP caches stay true (no wait for them to expire)."""
    digest = hashlib.sha256(key.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def ensure_mac(ipr: IPRoute, ifname: str, mac: str) -> None:
    ipr.link("set", ifname=ifname, address=mac)


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

    def __post_init__(self) -> None:
        check_ifname(self.ifname)
        check_ifname(self.peer_ifname)

    def ensure(self, alias: str = "", master: str | None = None) -> None:
        with self.namespace.ipr() as ipr:
            add_veth(ipr, self.ifname, self.peer_namespace, self.peer_ifname)
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
            except netlink.NetlinkError as exc:
                if exc.code != ENODEV:
                    raise


RTM_GETLINK, RTM_NEWLINK, NLMSG_DONE, NLMSG_ERROR = 18, 16, 3, 2
IFLA_IFNAME, IFLA_MASTER, IFLA_IFALIAS, IFLA_EXT_MASK = 3, 10, 20, 29
RTEXT_FILTER_SKIP_STATS = 1 << 3
_NLMSGHDR, _IFINFOMSG, _RTATTR = struct.Struct("=LHHLL"), struct.Struct("=BxHiII"), struct.Struct("=HH")


def port_aliases(namespace: Namespace, master_index: int) -> dict[str, str]:
    """Name → alias of every port of a bridge, in one netlink dump filtered by the kernel on the master.

    The hot path of address allocation: pyroute2 decodes every attribute of every link (about 1 ms per
    link), while only two are needed here; the request is small enough to write out, the answer is read
    attribute by attribute and the rest skipped.
    """
    return {attrs[IFLA_IFNAME]: attrs.get(IFLA_IFALIAS, "") for _, attrs in _dump_links(namespace, master_index)
            if attrs.get(IFLA_MASTER) == master_index and IFLA_IFNAME in attrs}


RAW_ROUTE = (socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)  # the socket a dump may be handed


def enslaved_aliases(namespace: Namespace, sock: socket.socket | None = None) -> dict[str, tuple[str, str | None]]:
    """Name → (alias, master's name) of every link of a namespace that has a master (a bridge's ports), in
    one dump read as ``port_aliases`` reads it: for scans of every port, at any number of ports. ``sock``: a
    ``RAW_ROUTE`` socket already made in the namespace (left open), else one is made for the dump."""
    links = list(_dump_links(namespace, None, sock))
    names = {index: attrs.get(IFLA_IFNAME) for index, attrs in links}
    return {attrs[IFLA_IFNAME]: (attrs.get(IFLA_IFALIAS, ""), names.get(attrs[IFLA_MASTER]))  # type: ignore[arg-type]
            for _, attrs in links if IFLA_MASTER in attrs and IFLA_IFNAME in attrs}


def _dump_links(namespace: Namespace, master_index: int | None,
                sock: socket.socket | None = None) -> Iterator[tuple[int, dict[int, object]]]:
    """(index, name/alias/master attributes) of every link, or of a master's ports only (kernel-filtered)."""
    with contextlib.nullcontext(sock) if sock is not None else namespace.socket(*RAW_ROUTE) as sock:
        attr = _RTATTR.pack(8, IFLA_MASTER) + struct.pack("=I", master_index) if master_index is not None else b""
        # no statistics: summing a veth's per-CPU counters is most of what a dump costs the kernel
        attr += _RTATTR.pack(8, IFLA_EXT_MASK) + struct.pack("=I", RTEXT_FILTER_SKIP_STATS)
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr
        sock.sendall(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETLINK, 0x301, 1, 0) + body)  # REQUEST|DUMP
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset < len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
                    raise OSError(code, f"link dump in {namespace.name}: {os.strerror(code)}")
                if kind == RTM_NEWLINK:
                    index = _IFINFOMSG.unpack_from(data, offset + _NLMSGHDR.size)[2]
                    yield index, _attributes(data, offset + _NLMSGHDR.size + _IFINFOMSG.size, offset + length)
                offset += (length + 3) & ~3


def _attributes(data: bytes, start: int, end: int) -> dict[int, object]:
    attrs: dict[int, object] = {}
    while start + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, start)
        if length < _RTATTR.size:
            break
        payload = data[start + _RTATTR.size:start + length]
        if kind in (IFLA_IFNAME, IFLA_IFALIAS):
            attrs[kind] = payload.rstrip(b"\0").decode()
        elif kind == IFLA_MASTER:
            attrs[kind] = struct.unpack("=I", payload[:4])[0]
        start += (length + 3) & ~3
    return attrs


def links_of(namespace: Namespace) -> dict[str, str | None]:
    """Every interface of a namespace: name → kind (``bridge``, ``veth``, …; None for plain devices)."""
    with namespace.ipr() as ipr:
        return {link.get("ifname"): link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") for link in ipr.get_links()}


def remove_link(namespace: Namespace, ifname: str) -> None:
    """Delete an interface (both ends of a veth pair) if it is there."""
    with namespace.ipr() as ipr:
        index = index_of(ipr, ifname)
        if index is None:
            return
        try:
            ipr.link("del", index=index)
        except netlink.NetlinkError as exc:
            if exc.code != ENODEV:
                raise
