"""NAT gateway → a namespace ``acklab-<lab>-ngw-<hex>`` between its vSwitch and the lab's internet; SNAT entries.

The gateway's ``eth0`` is a veth whose other end, ``ngw-<hex>``, is a port of its vSwitch's bridge in the VPC router
(alias ``ip=<address> ngw=<id>``: address allocation reads the ports' aliases, so the address counts as used; named
``ngw-*``, not ``eni-*``, so the source check and security groups, which are for guests, leave it alone). The
gateway routes its VPC's block via the vSwitch gateway and has no default route: the lab is sealed.

An EIP bound to the gateway (``ecs.EipAssociation`` with the gateway's id, ``netns/realize/eip.py``) is its port on
the internet bridge whose other end moves into the gateway as ``eip-<hex>`` with the EIP as a /32; the internet is
routed out of each leg in the leg's own table, chosen by source address (the EIP itself, and the sources of the
SNAT entries translated to it).

A SNAT entry is three kernel objects, made in this order and removed in the reverse one, so traffic only reaches the
gateway once it can leave: an nftables rule in the gateway's ``acklab_ngw`` table (``ip saddr <source> oifname
"eip-*" snat to <snat_ip>``, the entry's facts in its comment: the kernel is the only state), a rule in the gateway
from the source to the snat_ip's leg table, and a rule in the VPC router from the source to the gateway's table,
whose one route is a default via the gateway's address (``netns/model/nat_gateway.py`` says why after the main
table). Replies are un-NATed by the gateway's conntrack. Every read-modify-write runs under the lab's lock.

A DNAT (forward) entry is an nftables rule in the gateway's ``prerouting`` chain (``ip daddr <EIP> <proto> dport
<ports> ct mark set <leg table> dnat to <internal>``, its facts in its comment) and, for the replies, a rule in the
VPC router from the internal address to the gateway's table (one per address, shared by its entries). In the gateway
the replies get their connection's mark back (chain ``replies``) and leave by the leg the request came in by (a
``fwmark`` rule per leg); conntrack puts the EIP back as their source.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from netns.kernel import rules
from netns.kernel.link import Veth, addresses, ensure_address, index_of
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model import addressing
from netns.model import nat_gateway as model
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import mark, netns_name
from netns.realize import format_alias, lab_lock, parse_alias
from netns.realize.eip_leg import EipLeg, Routing
from netns.realize.eni import claim
from netns.realize.vpc import VpcRouter, VSwitch, routers

LEG_ROUTING = Routing(model.leg_table, model.LEG_RULE_PRIORITY)  # an EIP's leg in the gateway


class EipInUse(LabError):
    """An EIP that a SNAT entry translates to cannot leave its gateway (Alibaba refuses it too)."""


@dataclass(frozen=True)
class NatGatewayState:
    address: str
    vpc_id: str
    vswitch_id: str


def _ip(namespace: Namespace, lines: list[str], tolerant: bool = False) -> None:
    """``ip -batch``: routes and rules in one process. ``tolerant``: go on past lines that fail (a removal of what
    is already gone)."""
    if not lines:
        return
    result = namespace.run(["ip", *(["-force"] if tolerant else []), "-batch", "-"], input="\n".join(lines) + "\n",
                           check=False)
    if result.returncode != 0 and not tolerant:
        raise LabError(f"NAT gateway routing in {namespace.name}: {result.stderr.strip()}")


def _nft(namespace: Namespace, text: str) -> None:
    rules.nft(namespace, text, f"NAT gateway rules in {namespace.name}")


def _rules_of_table(namespace: Namespace, table: int) -> list[dict[str, object]]:
    result = namespace.run(["ip", "-j", "rule", "list", "table", str(table)], check=False)
    return json.loads(result.stdout or "[]") if result.returncode == 0 else []


def _rule_line(verb: str, source: ipaddress.IPv4Network, table: int, priority: int) -> str:
    return f"rule {verb} from {source} table {table} priority {priority}"


def _mark_line(verb: str, table: int) -> str:
    """A leg's rule for the replies of the connections DNATed from it: marked with the leg's table number."""
    return f"rule {verb} fwmark {table} table {table} priority {model.MARK_RULE_PRIORITY}"


@dataclass(frozen=True)
class NatGateway:
    lab: str
    ngw_id: str

    @property
    def namespace(self) -> Namespace:
        return Namespace(netns_name(self.lab, self.ngw_id))

    @property
    def table(self) -> int:
        return model.router_table(self.ngw_id)

    # -- create / read / delete --

    def create(self, vswitch: VSwitch, resource: str) -> str:
        """Plug the gateway into its vSwitch with a free address; return the address. Nothing is left on failure."""
        with lab_lock(self.lab):
            vpc_cidr, net = vswitch.router.cidr(), vswitch.cidr()
            if vpc_cidr is None or net is None:
                raise NotFoundError(f"{resource}: vswitch_id: {vswitch.vswitch_id} does not exist in lab {self.lab}")
            (addr,) = claim(vswitch, resource, net, [], 1)
            try:
                self._plumb(vswitch, vpc_cidr, net, addr)
            except Exception:
                self._remove_locked()
                raise
        return str(addr)

    def _plumb(self, vswitch: VSwitch, vpc_cidr: ipaddress.IPv4Network, net: ipaddress.IPv4Network,
               addr: ipaddress.IPv4Address) -> None:
        self.namespace.create()
        self.namespace.sysctl("net.ipv4.ip_forward", 1)
        # Legs on one bridge: each answers ARP only for its own EIP, so replies come back by the leg they left from.
        self.namespace.sysctl("net.ipv4.conf.all.arp_ignore", 1)
        Veth(vswitch.router.namespace, self.ngw_id, self.namespace, model.IFNAME).ensure(
            alias=format_alias(ip=str(addr), ngw=self.ngw_id), master=vswitch.vswitch_id)
        Veth(self.namespace, model.IFNAME, self.namespace, model.IFNAME).set_alias(
            format_alias(ngw=self.ngw_id, vpc=vswitch.router.vpc_id, vswitch=vswitch.vswitch_id))
        gateway = addressing.gateway(net)
        with self.namespace.ipr() as ipr:
            ensure_address(ipr, model.IFNAME, ipaddress.IPv4Interface(f"{addr}/{net.prefixlen}"))
        _ip(self.namespace, [f"route replace {vpc_cidr} via {gateway}"])  # the VPC only: no default route
        if not rules.nft_table_exists(self.namespace, "ip", model.TABLE):
            _nft(self.namespace, model.table_text())
        _ip(vswitch.router.namespace, [f"route replace default via {addr} dev {vswitch.vswitch_id} table {self.table}"])

    def read(self) -> NatGatewayState | None:
        if not self.namespace.exists():
            return None
        with self.namespace.ipr() as ipr:
            found = addresses(ipr, model.IFNAME)
            index = index_of(ipr, model.IFNAME)
            facts = parse_alias(ipr.get_links(index)[0].get("IFLA_IFALIAS")) if index is not None else {}
        if not found or "vpc" not in facts:
            return None
        return NatGatewayState(str(found[0].ip), facts["vpc"], facts.get("vswitch", ""))

    def delete(self, resource: str) -> None:
        """Remove the gateway; refused while EIPs are bound to it (as Alibaba: unbind them first). Its SNAT entries
        go with it."""
        with lab_lock(self.lab):
            bound = self.eips()
            if bound:
                raise LabError(f"{resource}: EIPs {', '.join(sorted(bound.values()))} are bound to {self.ngw_id}; "
                               "disassociate them first")
            self._remove_locked()

    def _remove_locked(self) -> None:
        """Whatever of the gateway exists, in every router of the lab (its namespace may be gone already)."""
        for router in routers(self.lab):
            found = [r for r in _rules_of_table(router.namespace, self.table) if "src" in r]
            lines = [_rule_line("del", ipaddress.IPv4Network(f"{r['src']}/{r.get('srclen', 32)}"), self.table,
                                int(r["priority"])) for r in found]
            _ip(router.namespace, [*lines, f"route flush table {self.table}"], tolerant=True)
            Veth(router.namespace, self.ngw_id, self.namespace, model.IFNAME).remove()
        self.namespace.remove()

    # -- EIP legs (called by netns/realize/eip.py under the lab's lock) --

    def eips(self) -> dict[str, str]:
        """The EIPs bound to the gateway: address → EIP id, from its legs' aliases."""
        if not self.namespace.exists():
            return {}
        with self.namespace.ipr() as ipr:
            facts = [parse_alias(link.get("IFLA_IFALIAS")) for link in ipr.get_links()
                     if (link.get("ifname") or "").startswith("eip-")]
        return {f["ip"]: f["eip"] for f in facts if "ip" in f and "eip" in f}

    def plug_leg(self, eip_id: str, parked: str, address: str, internet: Namespace) -> None:
        """Move the EIP's parked end from the internet namespace into the gateway, with its address and table."""
        EipLeg(eip_id, parked, internet).plug(self.namespace, address, {"eip": eip_id, "ip": address}, LEG_ROUTING,
                                              (address,))

    def unplug_leg(self, eip_id: str, parked: str, address: str, internet: Namespace) -> None:
        """The reverse of ``plug_leg``; refused while a SNAT entry translates to the EIP."""
        users = [r.entry_id for r, _ in self.entries() if address in map(str, r.snat_ips)]
        if users:
            raise EipInUse(f"EIP {eip_id} ({address}) is the snat_ip of SNAT entries {', '.join(users)} of "
                           f"{self.ngw_id}; delete them first")
        forwards = [f.entry_id for f, _ in self.forwards() if str(f.external_ip) == address]
        if forwards:
            raise EipInUse(f"EIP {eip_id} ({address}) is the external_ip of DNAT entries {', '.join(forwards)} of "
                           f"{self.ngw_id}; delete them first")
        leg = EipLeg(eip_id, parked, internet)
        index = leg.index_in(self.namespace)
        if index is None:
            return  # never plugged, or the leg died with the namespace
        _ip(self.namespace, [_mark_line("del", model.leg_table(index))], tolerant=True)  # its fwmark rule
        leg.unplug(self.namespace, address, LEG_ROUTING, (address,))

    # -- SNAT entries --

    def _comments(self, chain: str) -> list[tuple[str, int]]:
        """The comments of a chain's rules (where the entries keep their facts), each with its rule's handle."""
        if not self.namespace.exists():
            return []
        result = self.namespace.run(["nft", "-j", "list", "chain", "ip", model.TABLE, chain], check=False)
        if result.returncode != 0:
            return []  # no gateway, or one made before its chain existed
        rules = [item["rule"] for item in json.loads(result.stdout).get("nftables", []) if "rule" in item]
        return [(rule.get("comment", ""), int(rule["handle"])) for rule in rules]

    def entries(self) -> list[tuple[model.SnatRule, int]]:
        """The SNAT entries, each with its nftables rule handle (from the rules' comments)."""
        parsed = [(model.SnatRule.parse(comment), handle) for comment, handle in self._comments("postrouting")]
        return [(rule, handle) for rule, handle in parsed if rule is not None]

    def entry(self, entry_id: str) -> model.SnatRule | None:
        """An entry as the kernel holds it: its rule in the gateway and its rule in the router (else drifted)."""
        state = self.read()
        rule = next((r for r, _ in self.entries() if r.entry_id == entry_id), None)
        if state is None or rule is None:
            return None
        routed = _rules_of_table(VpcRouter(self.lab, state.vpc_id).namespace, self.table)
        if not any(r.get("src") == str(rule.source.network_address) and r.get("srclen", 32) == rule.source.prefixlen
                   for r in routed):
            return None
        return rule

    def add_entry(self, entry_id: str, resource: str, snat_ip: str, source_cidr: str | None = None,
                  source_vswitch_id: str | None = None) -> model.SnatRule:
        """Check the entry against the gateway, its VPC and its EIPs, then make it; nothing is left on failure."""
        with lab_lock(self.lab):
            state = self.read()
            if state is None:
                raise NotFoundError(f"{resource}: snat_table_id: NAT gateway {self.ngw_id} does not exist in lab "
                                    f"{self.lab}")
            router = VpcRouter(self.lab, state.vpc_id)
            field, source = self._source(resource, router, source_cidr, source_vswitch_id)
            addresses = model.check_snat_ip(resource, snat_ip, self.eips(), self.ngw_id)
            existing = self.entries()
            rule = model.SnatRule(entry_id, source, addresses, source_vswitch_id or "")
            if any(r.entry_id == entry_id for r, _ in existing):
                return rule  # a retried create
            model.check_unique_source(resource, field, source, [r for r, _ in existing])
            model.check_snat_beside_forwards(resource, addresses, [f for f, _ in self.forwards()])
            try:
                self._apply(router, rule)
            except Exception:
                self._withdraw(router, rule)
                raise
            return rule

    def _source(self, resource: str, router: VpcRouter, source_cidr: str | None,
                source_vswitch_id: str | None) -> tuple[str, ipaddress.IPv4Network]:
        vpc_cidr = router.cidr()
        if source_vswitch_id:
            net = VSwitch(router, source_vswitch_id).cidr()
            if net is None:
                raise ValidationError(resource, "source_vswitch_id", f"{source_vswitch_id} is not a vSwitch of VPC "
                                                                     f"{router.vpc_id} (the NAT gateway's)")
            return "source_vswitch_id", net
        return "source_cidr", model.check_source_cidr(resource, source_cidr, vpc_cidr)

    def _leg_tables(self) -> dict[str, int]:
        """EIP address → its leg's table, from one dump of the gateway's links."""
        with self.namespace.ipr() as ipr:
            return {parse_alias(link.get("IFLA_IFALIAS")).get("ip", ""): model.leg_table(link["index"])
                    for link in ipr.get_links() if (link.get("ifname") or "").startswith("eip-")}

    def _leg_table(self, address: ipaddress.IPv4Address) -> int | None:
        return self._leg_tables().get(str(address))

    def _legs(self, rule: model.SnatRule) -> dict[ipaddress.IPv4Address, int]:
        """The leg table of each of the entry's addresses (all must be plugged)."""
        tables = self._leg_tables()
        missing = [str(a) for a in rule.snat_ips if str(a) not in tables]
        if missing:
            raise LabError(f"NAT gateway {self.ngw_id}: no leg carries {', '.join(missing)}")
        return {a: tables[str(a)] for a in rule.snat_ips}

    def _ensure_mark_rule(self, table: int) -> None:
        """A leg's ``fwmark`` rule (shared by its DNAT entries and the SNAT pools using it): once, not twice."""
        _ip(self.namespace, [_mark_line("del", table)], tolerant=True)
        _ip(self.namespace, [_mark_line("add", table)])

    def _apply(self, router: VpcRouter, rule: model.SnatRule) -> None:
        """The gateway's rules, then the router's: nothing reaches the gateway that cannot leave. One EIP: the source's
        rule to its leg. A pool: the mark picks the leg (the legs' mark rules, shared with DNAT)."""
        legs = self._legs(rule)
        if rule.pool:
            _nft(self.namespace, model.dnat_chains_text())  # its ``replies`` rule leaves the pool's replies alone
            for table in legs.values():
                self._ensure_mark_rule(table)
            _nft(self.namespace, model.add_rule_text(rule, legs))
        else:
            _nft(self.namespace, model.add_rule_text(rule))
            _ip(self.namespace, [_rule_line("add", rule.source, legs[rule.snat_ips[0]], model.LEG_RULE_PRIORITY)])
        _ip(router.namespace, [_rule_line("add", rule.source, self.table, model.ROUTER_RULE_PRIORITY)])

    def remove_entry(self, entry_id: str) -> None:
        with lab_lock(self.lab):
            state = self.read()
            rule = next((r for r, _ in self.entries() if r.entry_id == entry_id), None)
            if state is None or rule is None:
                return
            self._withdraw(VpcRouter(self.lab, state.vpc_id), rule)

    def _withdraw(self, router: VpcRouter, rule: model.SnatRule) -> None:
        """Remove whatever of an entry exists, router first: no traffic reaches the gateway that cannot leave. A pool's
        leg mark rules stay while the legs do (``unplug_leg`` removes them)."""
        _ip(router.namespace, [_rule_line("del", rule.source, self.table, model.ROUTER_RULE_PRIORITY)], tolerant=True)
        if not rule.pool:
            table = self._leg_table(rule.snat_ips[0])
            if table is not None:
                _ip(self.namespace, [_rule_line("del", rule.source, table, model.LEG_RULE_PRIORITY)], tolerant=True)
        text = "".join(model.delete_rule_text(h, chain) for chain in ("pools", "postrouting")
                       for comment, h in self._comments(chain) if comment.split()[:1] == [rule.entry_id])
        if text:
            _nft(self.namespace, text)

    # -- DNAT (forward) entries --

    def forwards(self) -> list[tuple[model.DnatRule, int]]:
        """The DNAT entries, each with its nftables rule handle (from the rules' comments)."""
        parsed = [(model.DnatRule.parse(comment), handle) for comment, handle in self._comments("prerouting")]
        return [(rule, handle) for rule, handle in parsed if rule is not None]

    def forward(self, entry_id: str) -> model.DnatRule | None:
        """An entry as the kernel holds it: its rule in the gateway and its replies' rule in the router (else
        drifted)."""
        state = self.read()
        rule = next((r for r, _ in self.forwards() if r.entry_id == entry_id), None)
        if state is None or rule is None:
            return None
        return rule if self._replies_routed(VpcRouter(self.lab, state.vpc_id), rule.internal_ip) else None

    def _replies_routed(self, router: VpcRouter, internal_ip: ipaddress.IPv4Address) -> bool:
        return any(r.get("src") == str(internal_ip) and r.get("srclen", 32) == 32
                   and r.get("priority") == model.ROUTER_DNAT_RULE_PRIORITY
                   for r in _rules_of_table(router.namespace, self.table))

    def add_forward(self, resource: str, rule: model.DnatRule) -> model.DnatRule:
        """Check the entry (from ``model.forward_rule``) against the gateway, its VPC, its EIPs and its other entries,
        then make it; nothing is left on failure. A retried create (its id already there) changes nothing."""
        with lab_lock(self.lab):
            return self._add_forward_locked(resource, rule)

    def _add_forward_locked(self, resource: str, rule: model.DnatRule) -> model.DnatRule:
        state = self.read()
        if state is None:
            raise NotFoundError(f"{resource}: forward_table_id: NAT gateway {self.ngw_id} does not exist in lab "
                                f"{self.lab}")
        router = VpcRouter(self.lab, state.vpc_id)
        model.check_external_ip(resource, rule.external_ip, self.eips(), self.ngw_id)
        model.check_internal_ip(resource, rule.internal_ip, router.cidr())
        existing = [r for r, _ in self.forwards()]
        if any(r.entry_id == rule.entry_id for r in existing):
            return rule
        model.check_forward_conflicts(resource, rule, existing, [r for r, _ in self.entries()])
        try:
            self._apply_forward(router, rule)
        except Exception:
            self._withdraw_forward(router, rule)
            raise
        return rule

    def _apply_forward(self, router: VpcRouter, rule: model.DnatRule) -> None:
        """The leg's mark rule, the DNAT rule, then the router's rule for the replies: the way back exists before
        anything is forwarded."""
        table = self._leg_table(rule.external_ip)
        if table is None:
            raise LabError(f"NAT gateway {self.ngw_id}: no leg carries {rule.external_ip}")
        self._ensure_mark_rule(table)
        _nft(self.namespace, model.dnat_chains_text() + model.add_forward_text(rule, table))
        if not self._replies_routed(router, rule.internal_ip):
            _ip(router.namespace, [_rule_line("add", ipaddress.IPv4Network(f"{rule.internal_ip}/32"), self.table,
                                              model.ROUTER_DNAT_RULE_PRIORITY)])

    def _withdraw_forward(self, router: VpcRouter, rule: model.DnatRule) -> None:
        """Remove whatever of an entry exists: its DNAT rule, then the router's rule unless another entry of the gateway
        forwards to the same address. The leg's mark rule stays while the leg does (``unplug_leg`` removes it)."""
        handles = [h for r, h in self.forwards() if r.entry_id == rule.entry_id]
        if handles:
            _nft(self.namespace, "".join(model.delete_rule_text(h, "prerouting") for h in handles))
        if not any(r.internal_ip == rule.internal_ip for r, _ in self.forwards()):
            _ip(router.namespace, [_rule_line("del", ipaddress.IPv4Network(f"{rule.internal_ip}/32"), self.table,
                                              model.ROUTER_DNAT_RULE_PRIORITY)], tolerant=True)

    def remove_forward(self, entry_id: str) -> None:
        with lab_lock(self.lab):
            state = self.read()
            rule = next((r for r, _ in self.forwards() if r.entry_id == entry_id), None)
            if state is None or rule is None:
                return
            self._withdraw_forward(VpcRouter(self.lab, state.vpc_id), rule)

    def replace_forward(self, resource: str, rule: model.DnatRule) -> model.DnatRule:
        """An in-place change of an entry (its ports, protocol, address): the old rules go and the new ones come under
        one hold of the lab's lock, checked as a new entry; on failure the old entry is put back."""
        with lab_lock(self.lab):
            old = next((r for r, _ in self.forwards() if r.entry_id == rule.entry_id), None)
            state = self.read()
            if old is not None and state is not None:
                self._withdraw_forward(VpcRouter(self.lab, state.vpc_id), old)
            try:
                return self._add_forward_locked(resource, rule)
            except Exception:
                if old is not None:
                    self._add_forward_locked(resource, old)
                raise


def nat_gateways(lab: str) -> list[NatGateway]:
    prefix = mark(lab) + "ngw-"
    return [NatGateway(lab, ns.name[len(mark(lab)):]) for ns in list_namespaces(prefix)]

