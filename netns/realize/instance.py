"""ECS instance → a namespace whose primary ENI (eth0) is a veth into its vSwitch's bridge.

The router end of the veth is the ENI's port (see netns/realize/eni.py): its alias carries the instance's
facts, its addresses are bound in the VPC's source check and its groups' sets, so a new ENI is filtered and
source-checked from the moment it exists. Secondary private IPs of the primary ENI are, like in a VPC,
delivered to it by the fabric: the instance answers ARP for them on eth0 (proxy-neighbour entries), whether
or not its OS configures them.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass, field

from pyroute2 import IPRoute

from netns.kernel.link import add_veth, addresses, default_gateway, ensure_address, ensure_default_route
from netns.kernel.namespace import Namespace
from netns.model import addressing
from netns.model.errors import ValidationError
from netns.model.names import netns_name
from netns.realize import lab_lock, state_dir, words
from netns.realize.eni import EniPort, alias, check_groups, claim, deliver_secondary, find_port, forget_port
from netns.realize.vpc import VSwitch, routers

PRIMARY_IFNAME = "eth0"


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
        with lab_lock(self.lab), vswitch.router.namespace.ipr() as router:
            bridge, net = vswitch.locate(router)
            if bridge is None or net is None:
                raise ValidationError(resource, "vswitch_id", f"vSwitch {vswitch.vswitch_id} has no address block")
            check_groups(resource, vswitch.router, security_groups, "security_groups")
            wanted = [("private_ip", private_ip)] if private_ip else []
            wanted += [("secondary_private_ips", ip) for ip in secondary_ips]
            taken = claim(vswitch, resource, net, wanted, (0 if private_ip else 1) + secondary_count, bridge)
            primary = taken[0] if private_ip else taken[len(wanted)]
            secondary = [a for a in taken if a != primary]
            facts = {"ip": str(primary), "secondary": ",".join(map(str, secondary)), "instance": self.instance_id,
                     "device": "0", "name": "_".join(name.split()), "host": host_name,
                     "sg": ",".join(security_groups)}
            port = EniPort(vswitch.router, self.eni_id)
            try:
                self._plumb(router, bridge, net, facts)
                port.bind(facts)
            except Exception:
                self._remove(port, facts)
                raise
        if user_data:
            self._run_user_data(user_data, host_name)
        return str(primary)

    def _plumb(self, router: IPRoute, bridge: int, net: ipaddress.IPv4Network, facts: dict[str, str]) -> None:
        """One netlink session per side: creating an ECS is on the hot path of every lab (see make bench)."""
        self.namespace.create(loopback_up=False)
        add_veth(router, self.eni_id, self.namespace, PRIMARY_IFNAME)
        router.link("set", ifname=self.eni_id, ifalias=alias(facts), master=bridge, state="up")
        with self.namespace.ipr() as ipr:
            ipr.link("set", ifname="lo", state="up")
            ipr.link("set", ifname=PRIMARY_IFNAME, state="up")
            ensure_address(ipr, PRIMARY_IFNAME, ipaddress.IPv4Interface(f"{facts['ip']}/{net.prefixlen}"))
            ensure_default_route(ipr, addressing.gateway(net))
        deliver_secondary(self.namespace, PRIMARY_IFNAME, words(facts, "secondary"))

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
            for router in routers(self.lab):
                if find_port(self.lab, self.eni_id, [router]) is None:
                    forget_port(router, self.eni_id)
            return None
        with self.namespace.ipr() as ipr:
            found = addresses(ipr, PRIMARY_IFNAME)
            gateway = default_gateway(ipr)
        if not found:
            return None
        located = find_port(self.lab, self.eni_id, routers(self.lab))
        facts = located[1] if located else {}
        return InstanceState(str(found[0].ip), facts.get("vswitch"), gateway, facts.get("name", ""),
                             words(facts, "sg"), words(facts, "secondary"), facts.get("host", ""),
                             words(facts, "routes"))

    def delete(self) -> None:
        with lab_lock(self.lab):
            located = find_port(self.lab, self.eni_id, routers(self.lab), with_vswitch=False)
            if located is None:
                self.namespace.remove()
                return
            self._remove(*located)

    def _remove(self, port: EniPort, facts: dict[str, str]) -> None:
        """Unbind the ENI, then remove the namespace: eth0 goes with it, and its veth peer (the router
        port) with eth0. The port's facts are taken off first, so that while the kernel tears the namespace
        down (asynchronously, as after ``ip netns delete``) nothing reads the dying port as an ENI."""
        port.unbind(facts, going=True)
        port.forget()
        self.namespace.remove()
        for suffix in ("user-data", "user-data.log", "user-data.pid"):
            (state_dir(self.lab) / f"{self.instance_id}.{suffix}").unlink(missing_ok=True)
