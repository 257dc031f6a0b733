"""EIPs on the real kernel: an address on the lab's internet NATed 1:1 to an instance (client address kept on the
way in, the EIP as source on the way out), no internet for instances without one, one EIP per instance, nothing
half-made on bad input, and nothing left after disassociating and releasing."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from netns.kernel.namespace import Namespace
from netns.model import eip as model
from netns.model.errors import LabError, NotFoundError, ValidationError
from netns.model.names import mark
from netns.realize.eip import ElasticIp
from netns.realize.instance import EcsInstance
from netns.realize.slb import InternetSegment
from netns.realize.vpc import VpcRouter, VSwitch
from tests.labtools import ProbeServer

pytestmark = pytest.mark.kernel


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
    vswitch = VSwitch(router, "vsw-0000000a")
    vswitch.create(ipaddress.IPv4Network("192.168.1.0/24"), "cn-hangzhou-a", "vsw")
    for n in (1, 2):
        EcsInstance(lab, f"i-0000000{n}", f"eni-0000000{n}").create(vswitch, f"192.168.1.1{n}", f"web-{n}")
    return router


def test_an_eip_nats_one_instance_to_the_internet_and_back(lab, vpc):
    internet = mark(lab) + "internet"
    web1, web2 = (EcsInstance(lab, f"i-0000000{n}", "").namespace.name for n in (1, 2))
    eip = ElasticIp(lab, "eip-00000001")
    address = eip.create(None, "ecs.EipAddress 'eip'")
    assert address == "203.0.113.10" and ipaddress.IPv4Address(address) in InternetSegment(lab).used_addresses()
    assert greeting(internet, address, 80) is None  # not associated: nothing answers

    state = eip.associate("i-00000001", "ecs.EipAssociation 'a'")
    assert (state.instance_id, state.private_ip, state.vpc_id) == ("i-00000001", "192.168.1.11", "vpc-00000001")
    # the failed probe above left the internet an INCOMPLETE/FAILED entry for the EIP; the association's
    # gratuitous ARP has already replaced it with the leg's MAC (no wait of up to 3 s, no "no route to host")
    neighbour = Namespace(internet).run(["ip", "neigh", "show", address]).stdout
    leg = Namespace(mark(lab) + vpc.vpc_id).run(["ip", "-o", "link", "show", "dev", "eip-00000001"]).stdout
    leg_mac = leg.split("link/ether ")[1].split()[0]
    assert f"lladdr {leg_mac}" in neighbour, neighbour
    with ProbeServer(web1, tcp=(80,), udp=()), ProbeServer(internet, tcp=(9000,), udp=()):
        assert greeting(internet, address, 80) == "hello 203.0.113.1"  # in: DNAT, the client's address kept
        assert greeting(web1, "203.0.113.1", 9000) == f"hello {address}"  # out: SNAT to the EIP
        assert greeting(web2, "203.0.113.1", 9000) is None  # no EIP: no route to the internet
    assert eip.associate("i-00000001", "again") == state  # idempotent

    other = ElasticIp(lab, "eip-00000002")
    assert other.create("203.0.113.77", "ecs.EipAddress 'other'") == "203.0.113.77"
    with pytest.raises(ValidationError, match="instance_id: i-00000001 already has EIP eip-00000001"):
        other.associate("i-00000001", "ecs.EipAssociation 'b'")
    with pytest.raises(NotFoundError, match="instance_id: i-0000dead is not an ECS instance"):
        other.associate("i-0000dead", "ecs.EipAssociation 'c'")
    with pytest.raises(ValidationError, match=r"ip_address: 203\.0\.113\.77 is already used"):
        ElasticIp(lab, "eip-00000003").create("203.0.113.77", "ecs.EipAddress 'dup'")
    assert other.read().instance_id == "" and ElasticIp(lab, "eip-00000003").read() is None  # nothing half-made
    with pytest.raises(LabError, match="disassociate it first"):
        eip.delete("ecs.EipAddress 'eip'")

    eip.disassociate()
    with ProbeServer(web1, tcp=(80,), udp=()):
        assert greeting(internet, address, 80) is None
    listing = Namespace(mark(lab) + vpc.vpc_id).run(["nft", "list", "table", "ip", model.TABLE]).stdout
    assert "192.168.1.11" not in listing and address not in listing
    rules = Namespace(mark(lab) + vpc.vpc_id).run(["ip", "rule"]).stdout
    assert "192.168.1.11" not in rules
    for e in (eip, other):
        e.delete("release")
    assert not InternetSegment(lab).namespace.exists()  # the last port of the lab's internet gone


def test_an_eip_bound_to_an_intranet_slb_is_another_frontend_of_its_layer4_listener(lab, vpc):
    """ACK's API server endpoint: the EIP's clients reach the SLB's backend through its layer-4 listener with their
    own address; the VIP still serves the VPC; unbinding takes the EIP out of the listener's rules."""
    from netns.model import slb as slb_model
    from netns.realize import slb

    internet, router = mark(lab) + "internet", Namespace(mark(lab) + vpc.vpc_id)
    web1, web2 = (EcsInstance(lab, f"i-0000000{n}", "").namespace.name for n in (1, 2))
    lb = "lb-0000000a"
    vip = slb.SlbInstance(lab, lb).create("intranet", VSwitch(vpc, "vsw-0000000a"), None, "slb 'api'", "api")
    slb.put_backend_servers(lab, lb, (slb_model.BackendRef("i-00000001"),), "slb 'api'")
    args = {"protocol": "tcp", "frontend_port": 6443, "backend_port": 80, "bandwidth": -1, "scheduler": "wrr",
            "health_check": "off"}
    slb.put_listener(lab, slb_model.parse_listener("slb 'api'", lb, args), args, "slb 'api'")
    eip = ElasticIp(lab, "eip-00000001")
    address = eip.create(None, "ecs.EipAddress 'api'")
    with pytest.raises(NotFoundError, match="instance_id: lb-0000dead is not an SLB"):
        ElasticIp(lab, "eip-00000001").associate("lb-0000dead", "ecs.EipAssociation 'x'")
    assert eip.read().instance_id == ""  # nothing half-made
    state = eip.associate(lb, "ecs.EipAssociation 'api'")
    assert (state.instance_id, state.private_ip, state.vpc_id) == (lb, vip, vpc.vpc_id)
    assert eip.associate(lb, "again") == state  # idempotent
    with ProbeServer(web1, tcp=(80,), udp=()):
        assert greeting(internet, address, 6443) == "hello 203.0.113.1"  # the client's address kept
        assert greeting(web2, vip, 6443) == "hello 192.168.1.12"  # the VIP still serves the VPC
        assert greeting(internet, address, 80) is None  # only the listener's port
    other = ElasticIp(lab, "eip-00000002")
    other.create(None, "ecs.EipAddress 'other'")
    with pytest.raises(ValidationError, match=f"instance_id: {lb} already has EIP eip-00000001"):
        other.associate(lb, "ecs.EipAssociation 'b'")
    other.delete("release")

    eip.disassociate()
    with ProbeServer(web1, tcp=(80,), udp=()):
        assert greeting(internet, address, 6443) is None
        assert greeting(web2, vip, 6443) == "hello 192.168.1.12"
    assert address not in router.run(["nft", "list", "table", "ip", "slb_lb_0000000a"]).stdout
    assert "0x4549" not in router.run(["ip", "rule"]).stdout and "eip-00000001" not in router.run(
        ["ip", "-o", "link"]).stdout
    eip.delete("release")
    slb.delete_slb(lab, lb)
    assert not InternetSegment(lab).namespace.exists()
