"""ECS instance → a namespace whose primary ENI (eth0) is a veth into its vSwitch's bridge.

The router end of the veth is the ENI's port (see netns/realize/eni.py): its alias carries the instance's
facts, its addresses are bound in the VPC's source check and its groups' sets, so a new ENI is filtered and
source-checked from the moment it exists. Secondary private IPs of the primary ENI are, like in a VPC,
delivered to it by the fabric: the instance answers ARP for them on eth0 (proxy-neighbour entries), whether
or not its OS configures them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netns.kernel import netlink
from netns.kernel.ipset import SPEC as IPSET
from netns.kernel.link import (
    ENODEV,
    RAW_ROUTE,
    add_veth,
    addresses,
    default_gateway,
    enslaved_aliases,
    ensure_address,
    ensure_default_route,
)
from netns.kernel.namespace import Namespace
from netns.model import addressing
from netns.model.errors import NotFoundError, ValidationError
from netns.model.names import is_cloud_id, netns_name
from netns.realize import alias_addresses, lab_lock, pack_addresses, parse_alias, state_dir, words
from netns.realize.eni import EniPort, alias, check_groups, claim, deliver_secondary, find_port, forget_port
from netns.realize.vpc import VpcRouter, VSwitch, routers

if TYPE_CHECKING:
    from pyroute2 import IPRoute

PRIMARY_IFNAME = "eth0"
TERWAY_OWNER = "terway"  # the owner= fact of ENIs the node agent (Terway) makes


@dataclass(frozen=True)
class InstanceState:
    private_ip: str
    vswitch_id: str | None
    gateway: str | None
    name: str = ""
    security_groups: tuple[str, ...] = ()
    secondary_private_ips: tuple[str, ...] = ()
    host_name: str = ""
    routes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Plugged:
    """What ``EcsInstance.plug`` made: its vSwitch (and that vSwitch's zone), the primary ENI's addresses."""

    vswitch: VSwitch
    private_ip: str
    secondary_private_ips: tuple[str, ...]
    zone_id: str | None


Located = tuple[int | None, ipaddress.IPv4Network | None, str | None]


@contextmanager
def _router_session(lab: str, vswitch: VSwitch | str,
                    resource: str) -> Iterator[tuple[VSwitch, IPRoute, Located, socket.socket]]:
    """A session of the vSwitch's router with a netfilter socket for the groups' sets (made together), the
    vSwitch, and where it is (``_locate``). Given by id, the vSwitch is found as ``find_vswitch`` finds it, in
    the session then used (not one session to find it, one to use it)."""
    if isinstance(vswitch, VSwitch):
        with vswitch.router.namespace.session(IPSET) as (ipr, (ipset,)):
            yield vswitch, ipr, _locate(ipr, vswitch.vswitch_id), ipset
        return
    if not is_cloud_id(vswitch, "vsw"):  # not even a possible bridge name: never ask the kernel
        raise NotFoundError(f"{resource}: vswitch_id: vSwitch {vswitch!r} does not exist in lab {lab}")
    for router in routers(lab):
        with router.namespace.session(IPSET) as (ipr, (ipset,)):
            located = _locate(ipr, vswitch)
            if located[0] is not None:
                yield VSwitch(router, vswitch), ipr, located, ipset
                return
    raise NotFoundError(f"{resource}: vswitch_id: vSwitch {vswitch} does not exist in lab {lab}")


def _locate(router: IPRoute, vswitch_id: str) -> Located:
    """The bridge's index, the vSwitch's block and its zone (``VSwitch.locate`` and ``zone_id`` in one look)."""
    try:
        link = router.link("get", ifname=vswitch_id)[0]  # asked by name: no dump
    except netlink.NetlinkError as exc:
        if exc.code == ENODEV:
            return None, None, None
        raise
    index, zone = link["index"], parse_alias(link.get("IFLA_IFALIAS")).get("zone")
    found = router.get_addr(index=index, family=2)
    net = ipaddress.IPv4Network(f"{found[0].get('IFA_ADDRESS')}/{found[0]['prefixlen']}", strict=False) \
        if found else None
    return index, net, zone


@dataclass(frozen=True)
class EcsInstance:
    lab: str
    instance_id: str
    eni_id: str

    @property
    def namespace(self) -> Namespace:
        return Namespace(netns_name(self.lab, self.instance_id))

    def create(self, vswitch: VSwitch, private_ip: str | None, resource: str, name: str = "",
               security_groups: tuple[str, ...] = (), secondary_ips: tuple[str, ...] = (),
               secondary_count: int = 0, host_name: str = "", user_data: str = "") -> str:
        """Make the namespace and plug eth0 into the vSwitch; return the address it got."""
        return self.plug(vswitch, private_ip, resource, name, security_groups, secondary_ips, secondary_count,
                         host_name, user_data).private_ip

    def plug(self, vswitch: VSwitch | str, private_ip: str | None, resource: str, name: str = "",
             security_groups: tuple[str, ...] = (), secondary_ips: tuple[str, ...] = (),
             secondary_count: int = 0, host_name: str = "", user_data: str = "",
             check: Callable[[VSwitch, str | None], None] | None = None) -> Plugged:
        """``create``, answering what was made: the vSwitch, the addresses and the vSwitch's zone, read in the
        session that plugs the ENI (a caller needs no session of its own). ``vswitch`` may be given by id: it is
        then looked up in that session too. ``check`` is given the vSwitch and its zone before anything is made
        and may refuse them (by raising)."""
        with lab_lock(self.lab), _router_session(self.lab, vswitch, resource) as (vswitch, router, located, ipset):
            bridge, net, zone = located
            if check is not None:
                check(vswitch, zone)
            if bridge is None or net is None:
                raise ValidationError(resource, "vswitch_id", f"vSwitch {vswitch.vswitch_id} has no address block")
            check_groups(resource, vswitch.router, security_groups, "security_groups")
            wanted = [("private_ip", private_ip)] if private_ip else []
            wanted += [("secondary_private_ips", ip) for ip in secondary_ips]
            taken = claim(vswitch, resource, net, wanted, (0 if private_ip else 1) + secondary_count, bridge)
            primary = taken[0] if private_ip else taken[len(wanted)]
            secondary = [a for a in taken if a != primary]
            facts = {"ip": str(primary), "secondary": pack_addresses(map(str, secondary)), "instance": self.instance_id,
                     "device": "0", "name": "_".join(name.split()), "host": host_name,
                     "sg": ",".join(security_groups)}
            port = EniPort(vswitch.router, self.eni_id)
            try:
                self._plumb(router, bridge, net, facts)
                port.bind(facts, ipset)
            except Exception:
                self._remove(port, facts, router, ipset)
                raise
        if user_data:
            self._run_user_data(user_data, host_name)
        return Plugged(vswitch, str(primary), alias_addresses(facts), zone)

    def _plumb(self, router: IPRoute, bridge: int, net: ipaddress.IPv4Network, facts: dict[str, str]) -> None:
        """One netlink session per side: creating an ECS is on the hot path of every lab (see make bench)."""
        with self.namespace.create_session() as ipr:  # made, and its session opened, by one thread
            add_veth(router, self.eni_id, self.namespace, PRIMARY_IFNAME)
            router.link("set", ifname=self.eni_id, ifalias=alias(facts), master=bridge, state="up")
            ipr.link("set", ifname="lo", state="up")
            ipr.link("set", ifname=PRIMARY_IFNAME, state="up")
            ensure_address(ipr, PRIMARY_IFNAME, ipaddress.IPv4Interface(f"{facts['ip']}/{net.prefixlen}"))
            ensure_default_route(ipr, addressing.gateway(net))
        deliver_secondary(self.namespace, PRIMARY_IFNAME, alias_addresses(facts))

    def _run_user_data(self, script: str, host_name: str) -> None:
        """Run the script once, detached, like cloud-init: its output goes to ``<instance>.user-data.log``.

        It runs in the instance's namespace with the instance's host name (its own UTS namespace); what it
        starts lives there and ends with the instance.
        """
        folder = state_dir(self.lab)
        script_path = folder / f"{self.instance_id}.user-data"
        script_path.write_text(script)
        log = open(folder / f"{self.instance_id}.user-data.log", "wb")  # noqa: SIM115 - handed to the child
        naming = f"hostname {host_name} && " if host_name else ""
        with log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace.name, "unshare", "--uts", "sh", "-c",
                 f'{naming}exec sh "$0"', str(script_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (folder / f"{self.instance_id}.user-data.pid").write_text(f"{process.pid}\n")

    def relabel(self, resource: str, name: str, security_groups: tuple[str, ...]) -> None:
        """Record a new name or new security groups on the primary ENI; the groups' sets follow."""
        with lab_lock(self.lab):
            found = find_port(self.lab, self.eni_id, routers(self.lab))
            if found is None:
                return
            port, facts = found
            check_groups(resource, port.router, security_groups, "security_groups")
            port.rewrite(facts, {**facts, "name": "_".join(name.split()), "sg": ",".join(security_groups)})

    def read(self) -> InstanceState | None:
        """What the kernel holds for this instance, or None if its namespace is gone.

        Gone behind the lab's back, its ENI's entries in the source check and the groups' sets are dropped
        here, so that its address can be handed out again cleanly."""
        if not self.namespace.exists():
            self._forget()
            return None
        with self.namespace.ipr() as ipr:
            found = addresses(ipr, PRIMARY_IFNAME)
            gateway = default_gateway(ipr)
        if not found:
            return None
        located = find_port(self.lab, self.eni_id, routers(self.lab))
        facts = located[1] if located else {}
        return InstanceState(str(found[0].ip), facts.get("vswitch"), gateway, facts.get("name", ""),
                             words(facts, "sg"), alias_addresses(facts), facts.get("host", ""),
                             words(facts, "routes"))

    def _forget(self) -> None:
        """Drop the ENI's source-check and set entries in every router that no longer has its port. Under the
        lab lock: the sets are rebuilt from the ports, which a create or delete running meanwhile changes."""
        with lab_lock(self.lab):
            for router in routers(self.lab):
                if find_port(self.lab, self.eni_id, [router]) is None:
                    forget_port(router, self.eni_id)

    def delete(self) -> None:
        with lab_lock(self.lab), contextlib.ExitStack() as sessions:
            # one namespace entry per router (typically one) for all this needs there: the ports' dump, the set
            # entries, the port's alias
            opened = {router: sessions.enter_context(router.namespace.session(RAW_ROUTE, IPSET))
                      for router in routers(self.lab) if router.namespace.exists()}
            own = self._release_terway_enis(opened)
            if own is not None:
                port, facts = own
                ipr, (_, ipset) = opened[port.router]
                self._remove(port, facts, ipr, ipset)
                return
            # not a port of any bridge (e.g. a create that failed half-way): asked by name
            located = find_port(self.lab, self.eni_id, routers(self.lab), with_vswitch=False)
            if located is None:
                self.namespace.remove()
                return
            self._remove(*located)

    def _release_terway_enis(self, opened: dict[VpcRouter, tuple[IPRoute, list[socket.socket]]],
                             ) -> tuple[EniPort, dict[str, str]] | None:
        """ENIs Terway made for this instance are in no Pulumi state: they go with it, as on ACK (created with
        "release with instance"). Their facts and bindings are taken off, then the port is deleted (its device,
        in the namespace or in a pod's, goes with it), under the lab lock, held by the caller.

        Answers the instance's own primary port and its facts, seen in the same look at the routers' ports (as
        ``find_port(..., with_vswitch=False)`` would answer them)."""
        own = None
        for router, (ipr, (dump, ipset)) in opened.items():
            # one dump of the router's ports read by hand (not a decoded dump per vSwitch): this runs for every
            # instance deleted, at any number of ports
            for eni_id, (text, vswitch_id) in enslaved_aliases(router.namespace, dump).items():
                facts = parse_alias(text)
                if eni_id == self.eni_id and own is None:
                    own = EniPort(router, eni_id), facts
                elif facts.get("owner") == TERWAY_OWNER and facts.get("instance") == self.instance_id:
                    port = EniPort(router, eni_id)
                    port.unbind({**facts, "vswitch": vswitch_id or ""}, going=True, ipset=ipset)
                    port.forget(ipr)
                    with contextlib.suppress(netlink.NetlinkError):  # its device may be in a pod (exclusive ENI)
                        ipr.link("del", ifname=eni_id)
        return own

    def _remove(self, port: EniPort, facts: dict[str, str], ipr: IPRoute | None = None,
                ipset: socket.socket | None = None) -> None:
        """Unbind the ENI, then remove the namespace: eth0 goes with it, and its veth peer (the router
        port) with eth0. The port's facts are taken off first, so that while the kernel tears the namespace
        down (asynchronously, as after ``ip netns delete``) nothing reads the dying port as an ENI. ``ipr``,
        ``ipset``: a session of the port's router and its netfilter socket, if the caller has them open."""
        port.unbind(facts, going=True, ipset=ipset)
        port.forget(ipr)
        self.namespace.remove()
        for suffix in ("user-data", "user-data.log", "user-data.pid"):
            (state_dir(self.lab) / f"{self.instance_id}.{suffix}").unlink(missing_ok=True)
