"""Pods on the kernel: a namespace per pod plumbed from its node's namespace, per datapath; the node's agent.

Everything is made from the node's side: the veth pair is created in the node's namespace with its peer put
straight into the pod's namespace (renamed ``eth0``), as a CNI plugin does. What a pod is (namespace, name,
labels, ports, node, address) is recorded in ``/run/acklab/<lab>/k8s/pods/<pod id>.json``; the kernel decides
whether it still exists (its namespace and its host-side veth).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from acklab.k8s.model import ipam
from acklab.k8s.model.ingress import is_controller_pod
from acklab.k8s.model.objects import Pod
from acklab.k8s.model.pod_network import CIDR_DATAPATHS, EXCLUSIVE_ENI, Network, Node, Placement
from acklab.k8s.realize.pod_agent import AgentHandle, k8s_dir
from netns.kernel import netlink, netns_etc
from netns.kernel import rules as netfilter
from netns.kernel.files import write_json
from netns.kernel.link import index_of, unless_exists
from netns.kernel.namespace import Namespace, end_processes, processes_in
from netns.model.errors import LabError
from netns.model.names import pod_id, pod_netns_name
from netns.realize import file_lock

if TYPE_CHECKING:
    from pyroute2 import IPRoute

BRIDGE = "cni0"
IP_MASQ_CHAIN = "IP-MASQ-AGENT"  # vpc-route: ip-masq-agent's chain and default exemptions
IP_MASQ_EXEMPT = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
VXLAN_DEV = "flannel.1"
VXLAN_VNI = 1
VXLAN_PORT = 8472
TERWAY_GATEWAY = "169.254.1.1"
TO_POD_PRIORITY = 512  # Terway: traffic to a pod is looked up in main (its /32 veth route)
FROM_POD_PRIORITY = 2048  # Terway: traffic from a pod leaves through its ENI's table
ENI_TABLE_BASE = 1000  # Terway: an ENI's table is 1000 + its interface index
# Return path for connections that entered through the primary ENI and were forwarded to a pod (NodePort and
# SLB traffic with externalTrafficPolicy: Local, whose client address is kept): the pod's reply must leave the
# way the request came, through the main table and eth0, not through the pod ENI's table (whose vSwitch port
# would drop a source that is the node's primary address). The connection is marked as it enters eth0; the
# mark is restored on the replies, and a rule sends marked packets to the main table.
RETURN_PATH_MARK = 0x10
RETURN_PATH_PRIORITY = 1024  # after TO_POD, before FROM_POD
RETURN_PATH_CHAIN = "ACKLAB-PRIMARY-ENI"
ENOENT, ESRCH = 2, 3
HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"  # Terway/Calico: every host-side veth of a routed pod has this MAC
LOOPBACK_INDEX = 1  # lo is always the first interface of a namespace
# Terway's exclusive ENI mode: the pod's ENI is its eth0; ``veth1`` (the same address) leads to the node for
# Services and the node's own traffic, and the node masquerades everything it sends on (Terway's policy
# container), so that replies to Service traffic come back through the node, not to the pod's ENI.
EXCLUSIVE_VETH = "veth1"
TERWAY_MASQ_CHAIN = "terway-masq"
ONLINK = 4  # RTNH_F_ONLINK


def host_ifname(namespace: str, name: str) -> str:
    """The node-side veth of a pod: ``cali`` + 11 hex digits of a hash of the pod (Terway's naming, 15 chars)."""
    return "cali" + hashlib.sha1(f"{namespace}.{name}".encode()).hexdigest()[:11]


def k8s_lock(lab: str) -> AbstractContextManager[None]:
    """Serializes the Kubernetes side of a lab (nodes converge one at a time: one consistent plan)."""
    return file_lock(k8s_dir(lab) / "lock")


# --- records ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PodRecord:
    pod: Pod
    node: str
    ip: str
    netns: str
    host_ifname: str
    datapath: str
    node_netns: str = ""  # where the host veth is, so the pod can be removed even after its node left
    eni: str = ""  # terway-eni: the pod's ENI's device name in the node, where it goes back when the pod goes

    def to_dict(self) -> dict:
        data = {"pod": self.pod.to_dict(), "node": self.node, "ip": self.ip, "netns": self.netns,
                "host_ifname": self.host_ifname, "datapath": self.datapath, "node_netns": self.node_netns}
        return {**data, "eni": self.eni} if self.eni else data

    @staticmethod
    def from_dict(data: dict) -> PodRecord:
        return PodRecord(Pod.from_dict(data["pod"]), data["node"], data["ip"], data["netns"], data["host_ifname"],
                         data["datapath"], data.get("node_netns", ""), data.get("eni", ""))


def _records_dir(lab: str) -> Path:
    return k8s_dir(lab) / "pods"


def load_records(lab: str) -> dict[str, PodRecord]:
    """Every pod the lab recorded, by key."""
    folder = _records_dir(lab)
    records = {}
    for path in sorted(folder.glob("pod-*.json")) if folder.is_dir() else ():
        try:
            record = PodRecord.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:  # removed since the listing (another node's pod leaving): it is gone
            continue
        except (json.JSONDecodeError, KeyError):
            continue
        records[record.pod.key] = record
    return records


def _save_record(lab: str, record: PodRecord) -> None:
    write_json(_records_dir(lab) / f"{pod_id(record.pod.namespace, record.pod.name)}.json", record.to_dict(),
               indent=None)


def _drop_record(lab: str, pod: Pod) -> None:
    (_records_dir(lab) / f"{pod_id(pod.namespace, pod.name)}.json").unlink(missing_ok=True)


# --- netlink helpers (idempotent) ---------------------------------------------------------------------------

def _ignore_missing(call, *args, **kwargs) -> None:
    try:
        call(*args, **kwargs)
    except netlink.NetlinkError as exc:
        if exc.code not in (ENOENT, ESRCH, 19):
            raise


def _rules(ipr: IPRoute) -> set[tuple[int, str, str, int]]:
    """(priority, src, dst, table) of the node's policy rules."""
    found = set()
    for rule in ipr.get_rules(family=2):
        src = f"{rule.get('FRA_SRC')}/{rule['src_len']}" if rule.get("FRA_SRC") else ""
        dst = f"{rule.get('FRA_DST')}/{rule['dst_len']}" if rule.get("FRA_DST") else ""
        found.add((rule.get("FRA_PRIORITY", 0), src, dst, rule.get("FRA_TABLE", rule["table"])))
    return found


def _batch_netns(verb: str, names: list[str]) -> None:
    """``ip netns add|delete`` for many namespaces in one process (the lab's own names only)."""
    if not names:
        return
    lines = "".join(f"netns {verb} {name}\n" for name in names if name.startswith("acklab-"))
    result = subprocess.run(["ip", "-force", "-batch", "-"], input=lines, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise LabError(f"ip netns {verb}: {result.stderr.strip()}")


# --- a node ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeNetwork:
    """The pod network of one node, for one datapath."""

    network: Network
    node: Node

    @property
    def lab(self) -> str:
        return self.network.lab

    @property
    def namespace(self) -> Namespace:
        return Namespace(self.node.netns)

    @property
    def agent(self) -> AgentHandle:
        return AgentHandle(self.lab, self.node.name, self.node.netns)

    def underlay_mtu(self) -> int:
        with self.namespace.ipr() as ipr:
            return ipr.link("get", ifname="eth0")[0].get("IFLA_MTU", 1500)

    # base ----------------------------------------------------------------------------------------------------
    def _base_fingerprint(self) -> str:
        others = sorted((n.name, n.ip, n.pod_cidr or "") for n in self.network.nodes if n.name != self.node.name)
        return json.dumps({"datapath": self.network.datapath, "node": [self.node.ip, self.node.pod_cidr,
                           self.node.eni_ifname, self.node.eni_gateway], "cluster": self.network.cluster_cidr,
                           "others": others, "inode": self.namespace.inode(), "return_path": 1, "ip_masq": 1},
                          sort_keys=True)

    def _base_file(self) -> Path:
        return k8s_dir(self.lab) / f"{self.node.name}.base"

    def ensure_base(self) -> bool:
        """The node's datapath (bridge, VXLAN device, ENI table). Returns True if anything changed."""
        fingerprint = self._base_fingerprint()
        base = self._base_file()
        with self.namespace.ipr() as ipr:
            present = index_of(ipr, BRIDGE if self.network.datapath in CIDR_DATAPATHS else "lo") is not None
            if self.network.datapath == "vxlan":
                present = present and index_of(ipr, VXLAN_DEV) is not None
        if present and base.exists() and base.read_text() == fingerprint:
            return False
        self.namespace.sysctl("net.ipv4.ip_forward", 1)
        if self.network.datapath in CIDR_DATAPATHS:
            self._ensure_bridge()
        if self.network.datapath == "vxlan":
            self._ensure_vxlan()
        if self.network.datapath == "vpc-route":
            self._ensure_ip_masq()
        if self.network.datapath == "terway-eniip" and self._has_eni():  # (else it comes with the first ENI)
            self._ensure_eni_table()
        if self.network.datapath == EXCLUSIVE_ENI:
            self._ensure_terway_masq()
        base.parent.mkdir(parents=True, exist_ok=True)
        base.write_text(fingerprint)
        return True

    def _ensure_bridge(self) -> None:
        block = ipaddress.IPv4Network(self.node.pod_cidr)
        mtu = ipam.overlay_mtu(self.underlay_mtu()) if self.network.datapath == "vxlan" else self.underlay_mtu()
        with self.namespace.ipr() as ipr:
            if index_of(ipr, BRIDGE) is None:
                ipr.link("add", ifname=BRIDGE, kind="bridge")
            index = index_of(ipr, BRIDGE)
            ipr.link("set", index=index, mtu=mtu, state="up")
            gateway = str(ipam.bridge_gateway(block))
            unless_exists(ipr.addr, "add", index=index, address=gateway, prefixlen=block.prefixlen)
            # a node given another block (it left the cluster and joined again): the old block's address goes,
            # where flannel's bridge plugin would fail with "cni0 already has an IP address different from ..."
            for addr in ipr.get_addr(family=socket.AF_INET, index=index):
                old = (addr.get_attr("IFA_ADDRESS"), addr["prefixlen"])
                if old != (gateway, block.prefixlen):
                    _ignore_missing(ipr.addr, "del", index=index, address=old[0], prefixlen=old[1])

    def _ensure_vxlan(self) -> None:
        """flannel.1: VNI 1, UDP 8472, no learning; per other node a route, a neighbour and an FDB entry."""
        mtu = ipam.overlay_mtu(self.underlay_mtu())
        with self.namespace.ipr() as ipr:
            old = index_of(ipr, VXLAN_DEV)
            if old is not None:  # peers changed: rebuild (its routes, neighbours and FDB go with it)
                ipr.link("del", index=old)
            ipr.link("add", ifname=VXLAN_DEV, kind="vxlan", vxlan_id=VXLAN_VNI, vxlan_local=self.node.ip,
                     vxlan_port=VXLAN_PORT, vxlan_learning=0, vxlan_link=index_of(ipr, "eth0"),
                     address=ipam.vtep_mac(self.node.ip), mtu=mtu)
            index = index_of(ipr, VXLAN_DEV)
            own = ipaddress.IPv4Network(self.node.pod_cidr).network_address
            ipr.addr("add", index=index, address=str(own), prefixlen=32)
            ipr.link("set", index=index, state="up")
            for other in self.network.nodes:
                if other.name == self.node.name:
                    continue
                block = ipaddress.IPv4Network(other.pod_cidr)
                vtep = str(block.network_address)
                mac = ipam.vtep_mac(other.ip)
                ipr.neigh("replace", dst=vtep, lladdr=mac, ifindex=index, state="permanent")
                ipr.fdb("replace", ifindex=index, lladdr=mac, dst=other.ip, state="permanent", flags=2)  # NTF_SELF
                ipr.route("replace", dst=str(block), gateway=vtep, oif=index, flags=4)  # RTNH_F_ONLINK
        # flannel --ip-masq: pods reach the rest of the world with the node's address
        cluster = self.network.cluster_cidr
        rules = ("*nat\n:FLANNEL-POSTRTG - [0:0]\n-F FLANNEL-POSTRTG\n"
                 f"-A FLANNEL-POSTRTG -s {cluster} -d {cluster} -j RETURN\n"
                 f"-A FLANNEL-POSTRTG -s {cluster} ! -d 224.0.0.0/4 -j MASQUERADE --random-fully\nCOMMIT\n")
        netfilter.iptables_restore(self.namespace, rules, f"node {self.node.name}: the flannel rules", noflush=True)
        jump = ["POSTROUTING", "-j", "FLANNEL-POSTRTG"]
        if self.namespace.run(["iptables", "-t", "nat", "-C", *jump], check=False).returncode != 0:
            self.namespace.run(["iptables", "-t", "nat", "-A", *jump])

    def _ensure_ip_masq(self) -> None:
        """VPC-route (ACK's Flannel): pods keep their address inside the VPC (the VPC routes their blocks), and
        leave with the node's towards anything else, as ip-masq-agent's default non-masquerade ranges do (RFC 1918
        and Alibaba's 100.64.0.0/10): so a NAT gateway's SNAT entry for the node vSwitch takes pods to the
        internet too (ACK gives Flannel clusters entries for the node vSwitches only)."""
        cluster = self.network.cluster_cidr
        if not cluster:
            return
        kept = dict.fromkeys([*IP_MASQ_EXEMPT, cluster])
        rules = (f"*nat\n:{IP_MASQ_CHAIN} - [0:0]\n-F {IP_MASQ_CHAIN}\n"
                 + "".join(f"-A {IP_MASQ_CHAIN} -d {block} -j RETURN\n" for block in kept)
                 + f"-A {IP_MASQ_CHAIN} -j MASQUERADE\nCOMMIT\n")
        netfilter.iptables_restore(self.namespace, rules, f"node {self.node.name}: the ip-masq rules", noflush=True)
        jump = ["POSTROUTING", "-s", cluster, "-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", IP_MASQ_CHAIN]
        if self.namespace.run(["iptables", "-t", "nat", "-C", *jump], check=False).returncode != 0:
            self.namespace.run(["iptables", "-t", "nat", "-A", *jump])

    def _has_eni(self) -> bool:
        with self.namespace.ipr() as ipr:
            return index_of(ipr, self.node.eni_ifname) is not None

    def _ensure_terway_masq(self) -> None:
        """Terway's exclusive ENI mode: everything the node sends on is masqueraded (its policy container's
        ``terway-masq``), so that Service and NodePort traffic it forwarded to a pod is answered through it."""
        chain = TERWAY_MASQ_CHAIN
        rules = f"*nat\n:{chain} - [0:0]\n-F {chain}\n-A {chain} -j MASQUERADE\nCOMMIT\n"
        netfilter.iptables_restore(self.namespace, rules, f"node {self.node.name}: the terway-masq rules",
                                   noflush=True)
        jump = ["POSTROUTING", "!", "-o", "lo", "-j", TERWAY_MASQ_CHAIN]
        if self.namespace.run(["iptables", "-t", "nat", "-C", *jump], check=False).returncode != 0:
            self.namespace.run(["iptables", "-t", "nat", "-A", *jump])

    def eni_table(self, ipr: IPRoute, ifname: str | None = None) -> int:
        """The table of a pod ENI (the node's configured one unless ``ifname``: Terway's live IPAM spreads pods
        over several ENIs, and a pod's traffic leaves through the ENI that holds its address)."""
        ifname = ifname or self.node.eni_ifname
        index = index_of(ipr, ifname)
        if index is None:
            raise LabError(f"node {self.node.name}: no secondary ENI {ifname} in {self.node.netns}")
        return ENI_TABLE_BASE + index

    def ensure_eni(self, ifname: str, gateway: str = "") -> None:
        """Another pod ENI's table and return path (an ENI Terway attached after the node started; ``gateway``: its
        vSwitch's, when it is another pod vSwitch than the node's configured one)."""
        self._ensure_eni_table(ifname, gateway)

    def _ensure_eni_table(self, ifname: str | None = None, gateway: str = "") -> None:
        ifname = ifname or self.node.eni_ifname
        self.namespace.sysctl(f"net.ipv4.neigh.{ifname}.proxy_delay", 0)
        with self.namespace.ipr() as ipr:
            index = index_of(ipr, ifname)
            table = self.eni_table(ipr, ifname)
            ipr.link("set", index=index, state="up")
            ipr.route("replace", dst="0.0.0.0/0", gateway=gateway or self.node.eni_gateway, oif=index, flags=4,
                      table=table)
            # Terway: the node itself reaches the pod vSwitch through its primary ENI and the VPC, like any
            # other VPC address; the ENI's connected route would send the node's own (and its NAT'd, e.g.
            # NodePort reply) traffic out of the pod ENI with a source that is not the ENI's.
            for route in ipr.get_routes(family=socket.AF_INET, table=254, oif=index):
                if route.get("proto") == 2 and route.get("dst_len", 0) > 0:  # RTPROT_KERNEL
                    _ignore_missing(ipr.route, "del", dst=route.get_attr("RTA_DST"), dst_len=route["dst_len"],
                                    oif=index, table=254, scope=route["scope"], proto=route["proto"])
            marked = [r for r in ipr.get_rules(family=socket.AF_INET)
                      if r.get("FRA_PRIORITY") == RETURN_PATH_PRIORITY and r.get("FRA_FWMARK") == RETURN_PATH_MARK]
            if not marked:
                ipr.rule("add", fwmark=RETURN_PATH_MARK, fwmask=RETURN_PATH_MARK, table=254,
                         priority=RETURN_PATH_PRIORITY)
        mark = f"{RETURN_PATH_MARK:#x}/{RETURN_PATH_MARK:#x}"
        rules = (f"*mangle\n:{RETURN_PATH_CHAIN} - [0:0]\n-F {RETURN_PATH_CHAIN}\n"
                 f"-A {RETURN_PATH_CHAIN} -i eth0 -j CONNMARK --set-xmark {mark}\n"
                 f"-A {RETURN_PATH_CHAIN} ! -i eth0 -m connmark --mark {mark} "
                 f"-j CONNMARK --restore-mark --nfmask {RETURN_PATH_MARK:#x} --ctmask {RETURN_PATH_MARK:#x}\n"
                 "COMMIT\n")
        netfilter.iptables_restore(self.namespace, rules, f"node {self.node.name}: the return-path rules",
                                   noflush=True)
        jump = ["PREROUTING", "-j", RETURN_PATH_CHAIN]
        if self.namespace.run(["iptables", "-t", "mangle", "-C", *jump], check=False).returncode != 0:
            self.namespace.run(["iptables", "-t", "mangle", "-A", *jump])

    # pods ----------------------------------------------------------------------------------------------------
    def link_names(self) -> set[str]:
        with self.namespace.ipr() as ipr:
            return {link.get("ifname") for link in ipr.get_links()}

    def pod_realized(self, placement: Placement, record: PodRecord | None, links: set[str]) -> bool:
        """Recorded as planned, its namespace present and its host veth among the node's ``links``."""
        if record is None or record != self._record(placement):
            return False
        return Namespace(record.netns).exists() and record.host_ifname in links

    def _record(self, placement: Placement) -> PodRecord:
        pod = placement.pod
        eni = placement.extra.get("eni", "") if self.network.datapath == EXCLUSIVE_ENI else ""
        return PodRecord(pod, placement.node, placement.ip, pod_netns_name(self.lab, pod.namespace, pod.name),
                         host_ifname(pod.namespace, pod.name), self.network.datapath, self.node.netns, eni)

    def ensure_pod(self, placement: Placement) -> PodRecord:
        return self.ensure_pods([placement])[0]

    def ensure_pods(self, placements: list[Placement]) -> list[PodRecord]:
        """Create (or repair) pods' namespaces and plumbing; a failure removes what was made for them.

        The node's side is done over one netlink socket.
        """
        records = [self._record(p) for p in placements]
        try:
            for record in records:  # made without forking (lo comes up in _plumb)
                Namespace(record.netns).create(loopback_up=False)
            with self.namespace.ipr() as node_ipr:
                routed = self.network.datapath == "terway-eniip"
                rules = _rules(node_ipr) if routed else set()
                links = {link.get("ifname") for link in node_ipr.get_links()}
                bridge = None if routed else index_of(node_ipr, BRIDGE)
                for record, placement in zip(records, placements, strict=True):
                    if self.network.datapath == EXCLUSIVE_ENI:
                        self._plumb_exclusive(node_ipr, record, placement)
                    else:
                        self._plumb(node_ipr, rules, record, placement, links, bridge)
                    _save_record(self.lab, record)
        except Exception:
            self.remove_pods(records)
            raise
        return records

    def _plumb(self, ipr: IPRoute, rules: set, record: PodRecord, placement: Placement,
               links: set[str] | None = None, bridge: int | None = None) -> None:
        """One pod's veth and addressing. Netlink calls are few on purpose (each costs ~1-2 ms in pyroute2):
        a new veth is created already up, on the bridge, with Terway's fixed host MAC."""
        routed = self.network.datapath == "terway-eniip"
        pod_ns = Namespace(record.netns)
        if links is not None and record.host_ifname not in links:
            extra = {"address": HOST_VETH_MAC} if routed else {"master": bridge}
            ipr.link("add", ifname=record.host_ifname, kind="veth", mtu=placement.mtu, state="up",
                     peer={"ifname": "eth0", "net_ns_fd": pod_ns.name, "mtu": placement.mtu}, **extra)
            host_mac = HOST_VETH_MAC
            host = index_of(ipr, record.host_ifname) if routed else None
        else:  # repair: the veth may exist in any state
            if index_of(ipr, record.host_ifname) is None:
                ipr.link("add", ifname=record.host_ifname, kind="veth", mtu=placement.mtu,
                         peer={"ifname": "eth0", "net_ns_fd": pod_ns.name, "mtu": placement.mtu})
            host = index_of(ipr, record.host_ifname)
            if not routed:
                ipr.link("set", index=host, master=index_of(ipr, BRIDGE))
            ipr.link("set", index=host, state="up")
            host_mac = ipr.get_links(host)[0].get("IFLA_ADDRESS")
        if routed:
            ipr.route("replace", dst=f"{record.ip}/32", oif=host, scope=253)
            if (TO_POD_PRIORITY, "", f"{record.ip}/32", 254) not in rules:
                ipr.rule("add", dst=record.ip, dst_len=32, table=254, priority=TO_POD_PRIORITY)
            table = self.eni_table(ipr, placement.extra.get("eni"))
            if (FROM_POD_PRIORITY, f"{record.ip}/32", "", table) not in rules:
                ipr.rule("add", src=record.ip, src_len=32, table=table, priority=FROM_POD_PRIORITY)
        with pod_ns.ipr() as pod:
            pod.link("set", index=LOOPBACK_INDEX, state="up")
            eth0 = pod.link("get", ifname="eth0")[0]["index"]
            unless_exists(pod.addr, "add", index=eth0, address=record.ip, prefixlen=placement.prefixlen)
            pod.link("set", index=eth0, state="up")
            if routed:  # Terway: the gateway is a link-local address the host's veth answers for statically
                pod.neigh("replace", dst=TERWAY_GATEWAY, lladdr=host_mac, ifindex=eth0, state="permanent")
                pod.route("replace", dst=f"{TERWAY_GATEWAY}/32", oif=eth0, scope=253)
            pod.route("replace", dst="0.0.0.0/0", gateway=placement.gateway, oif=eth0)

    def _plumb_exclusive(self, ipr: IPRoute, record: PodRecord, placement: Placement) -> None:
        """Terway's exclusive ENI: the ENI's device moves into the pod as eth0 (its primary address as /32, the
        vSwitch's gateway on link as the default route); a veth (``cali…`` on the node, ``veth1`` in the pod, with
        the pod's address too) carries the Service CIDR and the node's own address through the node."""
        pod_ns = Namespace(record.netns)
        eni = index_of(ipr, record.eni)
        if eni is not None:  # else moved already (a repair)
            ipr.link("set", index=eni, state="down")
            ipr.link("set", index=eni, net_ns_fd=pod_ns.name)
        if index_of(ipr, record.host_ifname) is None:
            ipr.link("add", ifname=record.host_ifname, kind="veth", mtu=placement.mtu, address=HOST_VETH_MAC,
                     peer={"ifname": EXCLUSIVE_VETH, "net_ns_fd": pod_ns.name, "mtu": placement.mtu})
        host = index_of(ipr, record.host_ifname)
        ipr.link("set", index=host, state="up")
        ipr.route("replace", dst=f"{record.ip}/32", oif=host, scope=253)
        with pod_ns.ipr() as pod:
            pod.link("set", index=LOOPBACK_INDEX, state="up")
            if index_of(pod, record.eni) is not None:
                pod.link("set", index=index_of(pod, record.eni), ifname="eth0")
            eth0 = index_of(pod, "eth0")
            if eth0 is None:
                raise LabError(f"pod {record.pod.key}: the device {record.eni} of its ENI is gone")
            unless_exists(pod.addr, "add", index=eth0, address=record.ip, prefixlen=32)
            pod.link("set", index=eth0, state="up")
            pod.route("replace", dst="0.0.0.0/0", gateway=placement.gateway, oif=eth0, flags=ONLINK)
            veth = index_of(pod, EXCLUSIVE_VETH)
            unless_exists(pod.addr, "add", index=veth, address=record.ip, prefixlen=32)
            pod.link("set", index=veth, state="up")
            pod.neigh("replace", dst=TERWAY_GATEWAY, lladdr=HOST_VETH_MAC, ifindex=veth, state="permanent")
            pod.route("replace", dst=f"{TERWAY_GATEWAY}/32", oif=veth, scope=253)
            via_node = [self.network.service_cidr, f"{self.node.ip}/32"]
            for block in filter(None, via_node):
                pod.route("replace", dst=block, gateway=TERWAY_GATEWAY, oif=veth, flags=ONLINK)

    def _return_enis(self, records: list[PodRecord]) -> None:
        """Exclusive ENIs go back to the node under their own name before their pods' namespaces go (a deleted
        namespace would take the device, and with it the ENI's vSwitch port)."""
        for record in records:
            pod_ns = Namespace(record.netns)
            if record.datapath != EXCLUSIVE_ENI or not record.eni or not pod_ns.exists():
                continue
            with pod_ns.ipr() as pod:
                device = index_of(pod, "eth0") or index_of(pod, record.eni)  # (not renamed yet: a failed plumb)
                if device is None:
                    continue
                pod.link("set", index=device, state="down")
                pod.link("set", index=device, ifname=record.eni)
                pod.link("set", index=device, net_ns_fd=self.node.netns)

    def remove_pod(self, record: PodRecord) -> None:
        self.remove_pods([record])

    def remove_pods(self, records: list[PodRecord]) -> None:
        """Remove pods: their host veths (routes go with them), Terway's rules, their namespaces (one ``ip -batch``),
        then their processes (by namespace inode, one scan of /proc), their ``/etc/netns`` folders and records.

        The processes end after the namespaces' names are gone: a process started meanwhile by path (the ingress
        controller's nginx, ``acklab exec``) could otherwise enter a namespace already swept and outlive the pod."""
        inodes = {Namespace(r.netns).inode() for r in records} - {None}
        if self.namespace.exists() and records:
            self._return_enis(records)
            with self.namespace.ipr() as ipr:
                for record in records:
                    index = index_of(ipr, record.host_ifname)
                    if index is not None:
                        _ignore_missing(ipr.link, "del", index=index)
                ips = {f"{r.ip}/32" for r in records if r.datapath == "terway-eniip"}
                for prio, src, dst, table in _rules(ipr) if ips else ():
                    if (prio == TO_POD_PRIORITY and dst in ips) or (prio == FROM_POD_PRIORITY and src in ips):
                        address = (dst or src).split("/")[0]
                        kwargs = {"dst": address, "dst_len": 32} if dst else {"src": address, "src_len": 32}
                        _ignore_missing(ipr.rule, "del", priority=prio, table=table, **kwargs)
        _batch_netns("delete", [r.netns for r in records if Namespace(r.netns).exists()])
        if inodes:
            end_processes(processes_in(inodes))  # type: ignore[arg-type]
        for record in records:
            netns_etc.remove(record.netns)  # its resolv.conf (the node agent's): ip netns delete leaves it
            _drop_record(self.lab, record.pod)

    def agent_pods(self, records: list[PodRecord]) -> list[dict]:
        """What the agent serves: every pod's TCP/UDP ports, except ingress controller pods' (nginx serves them)."""
        return [{"key": r.pod.key, "name": r.pod.name, "netns": r.netns, "inode": Namespace(r.netns).inode(),
                 "ports": [] if is_controller_pod(r.pod.namespace, r.pod.labels) else
                 [[p.port, p.protocol] for p in r.pod.ports if p.protocol in ("TCP", "UDP")]}
                for r in sorted(records, key=lambda r: r.pod.key)]


# --- converging ----------------------------------------------------------------------------------------------

def current_placements(lab: str) -> dict[str, tuple[str, str]]:
    """Running pods (recorded, namespace present) → (node, ip)."""
    return {key: (r.node, r.ip) for key, r in load_records(lab).items() if Namespace(r.netns).exists()}


def converge_node(network: Network, node_name: str, placements: dict[str, Placement]) -> list[str]:
    """Make one node run exactly the pods ``placements`` puts on it (a pod plan: the kernel tests' and benches'
    way to build pods without an API server). Returns what changed (empty: nothing)."""
    node = NodeNetwork(network, network.node(node_name))
    changes: list[str] = []
    if node.ensure_base():
        changes.append(f"node {node_name}: {network.datapath} datapath")
    changes += _forget_departed_nodes(network)
    records = load_records(network.lab)
    mine = {k: p for k, p in placements.items() if p.node == node_name}
    moved = [r for k, r in records.items() if r.node != node_name and k in mine]  # nodeName changed
    for record in moved:
        _node_of(network, record).remove_pod(record)
        changes.append(f"pod {record.pod.key}: removed from {record.node}")
    records = {k: r for k, r in records.items() if r not in moved}
    kept: list[PodRecord] = []
    todo: list[Placement] = []
    links = node.link_names()
    for key, placement in sorted(mine.items()):
        record = records.get(key)
        if node.pod_realized(placement, record, links):
            kept.append(record)  # type: ignore[arg-type]
            continue
        if record is not None and record.node == node_name and (
                record.ip != placement.ip or not Namespace(record.netns).exists()):
            node.remove_pod(record)  # readdressed, or its namespace was deleted: the old veth goes too
        todo.append(placement)
        changes.append(f"pod {key}: {placement.ip} on {node_name}")
    kept += node.ensure_pods(todo)
    gone = [r for k, r in records.items() if r.node == node_name and k not in mine]
    desired_agent = node.agent_pods(kept)
    if node.agent.pid() is None or node.agent.desired() != desired_agent:
        status = node.agent.configure(desired_agent)
        if status.get("errors"):
            raise LabError(f"pod agent of node {node_name}: {'; '.join(status['errors'])}")
        changes.append(f"node {node_name}: pod agent serves {len(kept)} pod(s)")
    node.remove_pods(gone)
    changes += [f"pod {record.pod.key}: removed from {node_name}" for record in gone]
    return changes


def _node_of(network: Network, record: PodRecord) -> NodeNetwork:
    """The node a recorded pod is plumbed from (perhaps one that left the cluster)."""
    node = Node(record.node, record.node_netns or "acklab-none", "")
    return NodeNetwork(Network(network.lab, record.datapath, (node,)), node)


def _forget_departed_nodes(network: Network) -> list[str]:
    """Nodes that left the cluster: stop their agents and remove the pods they ran (the scheduler places
    the ones still wanted elsewhere)."""
    known = {n.name for n in network.nodes}
    changes = []
    for pidfile in sorted(k8s_dir(network.lab).glob("*.agent.json")):
        name = pidfile.name.removesuffix(".agent.json")
        if name not in known:
            AgentHandle(network.lab, name, "").stop()  # first: its sockets keep the pods' namespaces alive
            changes.append(f"node {name}: left the cluster, pod agent stopped")
    departed = [r for r in load_records(network.lab).values() if r.node not in known]
    for record in departed:
        _node_of(network, record).remove_pod(record)
        changes.append(f"pod {record.pod.key}: removed from departed node {record.node}")
    return changes


def start_iperf3(lab: str, netns: str, port: int = 5201, timeout: float = 5.0) -> int:
    """An iperf3 server in a pod (or any namespace of the lab), on demand; returns its PID.

    Daemonized with a pidfile under ``/run/acklab/<lab>/k8s/``; it ends with the pod (processes are found by
    namespace inode when the pod goes) or with ``stop_iperf3``.
    """
    if not netns.startswith(f"acklab-{lab}-"):
        raise LabError(f"{netns} is not a namespace of lab {lab}")
    pidfile = k8s_dir(lab) / f"iperf3-{netns}-{port}.pid"
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.unlink(missing_ok=True)
    Namespace(netns).run(["iperf3", "-s", "-D", "-p", str(port), "--pidfile", str(pidfile)])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int(pidfile.read_text().strip("\0\n "))
        except (FileNotFoundError, ValueError):
            time.sleep(0.02)
            continue
        listening = Namespace(netns).run(["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip()
        if listening:  # (a probe connection would count as a failed test on the server)
            return pid
        time.sleep(0.02)
    raise LabError(f"iperf3 did not start in {netns} within {timeout}s")


def stop_iperf3(lab: str, netns: str, port: int = 5201) -> None:

    pidfile = k8s_dir(lab) / f"iperf3-{netns}-{port}.pid"
    try:
        pid = int(pidfile.read_text().strip("\0\n "))
    except (FileNotFoundError, ValueError):
        return
    if pid in Namespace(netns).pids():  # only the server we started, still in that namespace
        os.kill(pid, signal.SIGTERM)
    pidfile.unlink(missing_ok=True)
