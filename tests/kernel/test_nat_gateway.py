"""NAT gateways on the real kernel: a vSwitch's egress to the lab's internet through the gateway's namespace, SNATed
to an EIP bound to it; no internet for other vSwitches; an instance's own EIP wins; nothing half-made on bad input;
nothing left after deleting the entry, unbinding, deleting the gateway and cleaning the lab."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from netns.kernel.namespace import Namespace, list_namespaces
from netns.model import nat_gateway as model
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import mark
from netns.realize import cleanup
from netns.realize.eip import ElasticIp
from netns.realize.instance import EcsInstance
from netns.realize.nat_gateway import EipInUse, NatGateway
from netns.realize.vpc import VpcRouter, VSwitch
from tests.labtools import ProbeServer

pytestmark = pytest.mark.kernel

SERVER = "203.0.113.1"  # a client address of the lab's internet namespace


def greeting(netns: str, address: str, port: int) -> str | None:
    """The probe server's greeting (``hello <the client address it saw>``), or None if no connection."""
    s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect((address, port))
        return s.recv(100).decode().strip()
    except OSError:
        return None
    finally:
        s.close()


@pytest.fixture
def vpc(lab):
    router = VpcRouter(lab, "vpc-00000001")
    router.create(ipaddress.IPv4Network("192.168.0.0/16"))
    for n, block in ((1, "192.168.1.0/24"), (2, "192.168.2.0/24")):
        VSwitch(router, f"vsw-0000000{n}").create(ipaddress.IPv4Network(block), "cn-hangzhou-a", "vsw")
    one, two = VSwitch(router, "vsw-00000001"), VSwitch(router, "vsw-00000002")
    for n, (vswitch, ip) in enumerate(((one, "192.168.1.11"), (one, "192.168.1.12"), (two, "192.168.2.11")), 1):
        EcsInstance(lab, f"i-0000000{n}", f"eni-0000000{n}").create(vswitch, ip, f"ecs-{n}")
    return router


def ecs(lab: str, n: int) -> str:
    return EcsInstance(lab, f"i-0000000{n}", "").namespace.name


def test_snat_gives_a_vswitch_egress_from_the_eip(lab, vpc, root_unchanged):
    internet = mark(lab) + "internet"
    gateway = NatGateway(lab, "ngw-00000001")
    address = gateway.create(VSwitch(vpc, "vsw-00000001"), "vpc.NatGateway 'ngw'")
    assert address == "192.168.1.1" and ipaddress.IPv4Address(address) in VSwitch(vpc, "vsw-00000001").used_addresses()
    eip = ElasticIp(lab, "eip-00000001")
    snat_ip = eip.create(None, "ecs.EipAddress 'eip'")
    state = eip.associate("ngw-00000001", "ecs.EipAssociation 'eip'")
    assert (state.instance_id, state.vpc_id) == ("ngw-00000001", "vpc-00000001")
    assert gateway.eips() == {snat_ip: "eip-00000001"}

    with ProbeServer(internet, tcp=(9000,), udp=()):
        assert greeting(ecs(lab, 1), SERVER, 9000) is None  # a bound EIP alone is no egress
        rule = gateway.add_entry("snat-00000001", "vpc.SnatEntry 's'", snat_ip, source_vswitch_id="vsw-00000001")
        assert rule.source == ipaddress.IPv4Network("192.168.1.0/24")
        assert gateway.add_entry("snat-00000001", "again", snat_ip, source_vswitch_id="vsw-00000001") == rule
        for n in (1, 2):  # both ECS of the vSwitch, seen from the internet as the snat_ip
            assert greeting(ecs(lab, n), SERVER, 9000) == f"hello {snat_ip}"
        assert greeting(ecs(lab, 3), SERVER, 9000) is None  # another vSwitch, no SNAT entry: no internet
        assert gateway.entry("snat-00000001") == rule

        # an instance's own EIP wins over SNAT
        own = ElasticIp(lab, "eip-00000002")
        own_ip = own.create(None, "ecs.EipAddress 'own'")
        own.associate("i-00000002", "ecs.EipAssociation 'own'")
        assert greeting(ecs(lab, 2), SERVER, 9000) == f"hello {own_ip}"
        own.disassociate()
        own.delete("release")

        with pytest.raises(EipInUse, match="snat-00000001"):
            eip.disassociate()  # the entry translates to it
        gateway.remove_entry("snat-00000001")
        gateway.remove_entry("snat-00000001")  # idempotent
        assert greeting(ecs(lab, 1), SERVER, 9000) is None  # egress gone
        assert gateway.entry("snat-00000001") is None
    assert "32800" not in vpc.namespace.run(["ip", "rule"]).stdout

    with pytest.raises(LabError, match="disassociate them first"):
        gateway.delete("vpc.NatGateway 'ngw'")
    eip.disassociate()
    gateway.delete("vpc.NatGateway 'ngw'")
    gateway.delete("vpc.NatGateway 'ngw'")  # idempotent
    assert not gateway.namespace.exists() and eip.read().instance_id == ""
    assert vpc.namespace.run(["ip", "route", "show", "table", str(model.router_table("ngw-00000001"))]).stdout == ""
    eip.delete("release")


def test_a_snat_pool_spreads_connections_over_its_eips(lab, vpc, root_unchanged):
    """Alibaba's SNAT address pool (``snat_ip = "a,b"``): each new connection leaves by one of the EIPs (their legs
    chosen by the connection's mark), replies come back by the EIP it took; a DNAT entry of a pool member still
    answers by its own leg; while in the pool an EIP stays bound; the entry's removal leaves no rule."""
    internet = mark(lab) + "internet"
    gateway = NatGateway(lab, "ngw-00000001")
    gateway.create(VSwitch(vpc, "vsw-00000001"), "vpc.NatGateway 'ngw'")
    eips = [ElasticIp(lab, f"eip-0000000{n}") for n in (1, 2)]
    addresses = [eip.create(None, f"ecs.EipAddress 'eip-{n}'") for n, eip in enumerate(eips, 1)]
    for n, eip in enumerate(eips, 1):
        eip.associate("ngw-00000001", f"ecs.EipAssociation 'eip-{n}'")
    pool = ",".join(addresses)
    try:
        with ProbeServer(internet, tcp=(9000,), udp=()):
            rule = gateway.add_entry("snat-00000001", "vpc.SnatEntry 'pool'", pool, source_vswitch_id="vsw-00000001")
            assert rule.pool and rule.snat_ip == pool and gateway.entry("snat-00000001") == rule
            seen = {greeting(ecs(lab, 1), SERVER, 9000) for _ in range(24)}
            # every connection answered (the replies found their way back), from both EIPs (2^-23 to miss one)
            assert seen == {f"hello {a}" for a in addresses}, seen
            assert greeting(ecs(lab, 3), SERVER, 9000) is None  # not a source of the pool's entry

            # a DNAT entry on a pool member: requests from the internet in by that leg, replies out by it
            # (port 80: above 1024 an EIP shared with SNAT needs port_break, a pool's members too)
            forward = model.forward_rule("vpc.ForwardEntry 'fwd'", "fwd-00000001", addresses[1], "80", "tcp",
                                         "192.168.1.12", "9100")
            gateway.add_forward("vpc.ForwardEntry 'fwd'", forward)
            with ProbeServer(ecs(lab, 2), tcp=(9100,), udp=()):
                assert greeting(internet, addresses[1], 80) == f"hello {SERVER}"
            gateway.remove_forward("fwd-00000001")

            with pytest.raises(EipInUse, match="snat-00000001"):
                eips[1].disassociate()  # a member of the pool
            gateway.remove_entry("snat-00000001")
            assert greeting(ecs(lab, 1), SERVER, 9000) is None
        listed = gateway.namespace.run(["nft", "list", "table", "ip", model.TABLE]).stdout
        assert "snat-00000001" not in listed and "numgen" not in listed
    finally:
        gateway.remove_forward("fwd-00000001")
        gateway.remove_entry("snat-00000001")
        for eip in eips:
            eip.disassociate()
            eip.delete("release")
        gateway.delete("vpc.NatGateway 'ngw'")


def test_bad_entries_leave_nothing(lab, vpc):
    gateway = NatGateway(lab, "ngw-00000002")
    gateway.create(VSwitch(vpc, "vsw-00000002"), "vpc.NatGateway 'ngw'")
    eip = ElasticIp(lab, "eip-00000003")
    snat_ip = eip.create(None, "ecs.EipAddress 'eip'")
    with pytest.raises(ValidationError, match=r"snat_ip: .* is not an EIP bound to NAT gateway ngw-00000002"):
        gateway.add_entry("snat-00000002", "s", snat_ip, source_cidr="192.168.2.0/24")
    eip.associate("ngw-00000002", "a")
    with pytest.raises(ValidationError, match=r"source_cidr: 10\.0\.0\.0/24 is not inside the VPC's cidr_block"):
        gateway.add_entry("snat-00000002", "s", snat_ip, source_cidr="10.0.0.0/24")
    with pytest.raises(ValidationError, match="source_vswitch_id: vsw-0000dead is not a vSwitch of VPC"):
        gateway.add_entry("snat-00000002", "s", snat_ip, source_vswitch_id="vsw-0000dead")
    gateway.add_entry("snat-00000002", "s", snat_ip, source_cidr="192.168.2.0/24")
    with pytest.raises(ValidationError, match=r"source_cidr: 192\.168\.2\.0/24 already has SNAT entry snat-00000002"):
        gateway.add_entry("snat-00000003", "s", snat_ip, source_cidr="192.168.2.0/24")
    assert [r.entry_id for r, _ in gateway.entries()] == ["snat-00000002"]
    with pytest.raises(NotFoundError, match="snat_table_id: NAT gateway ngw-0000dead does not exist"):
        NatGateway(lab, "ngw-0000dead").add_entry("snat-00000004", "s", snat_ip, source_cidr="192.168.2.0/24")
    with pytest.raises(NotFoundError, match="instance_id: ngw-0000dead is not a NAT gateway"):
        spare = ElasticIp(lab, "eip-00000004")
        spare.create(None, "ecs.EipAddress 'spare'")
        spare.associate("ngw-0000dead", "a")
    assert spare.read().instance_id == ""  # nothing half-made
    cleanup.clean_lab(lab)  # entries, a bound EIP and all: clean leaves nothing
    assert list_namespaces(mark(lab)) == []
    assert not gateway.namespace.exists()
