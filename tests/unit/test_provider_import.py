"""`pulumi import` through the plugin's Read: an object found by its id alone comes back with inputs (the engine
refuses an import without them) that pass the kind's own Check; a refresh keeps the program's inputs; a program's
``import_`` of what the plugin made finds no difference (the engine refuses an import whose inputs differ)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pulumi.runtime.proto import provider_pb2 as pb

from acklab.provider import ecs, records, server, slb
from acklab.provider.base import Context, Kind
from acklab.provider.ecs import EcsNetworkInterface, Instance, SecurityGroup
from acklab.provider.vpc import Network, Switch
from acklab.provider.wire import from_struct, to_struct
from netns.realize.eip import EipState
from netns.realize.network_interface import EniState
from netns.realize.slb import SlbState
from tests.unit.test_provider_server import FakeContext

TOKEN = "alicloud:vpc/network:Network"


class FoundNetwork(Network):
    """A VPC as the kernel and the records hold it (no kernel here)."""

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        return self.state({**state, "cidr_block": "10.1.0.0/16", "vpc_name": "lab", "name": "lab",
                           "route_table_id": "vtb-0123abcd", "status": "Available"})


def read(monkeypatch, request: pb.ReadRequest) -> pb.ReadResponse:
    monkeypatch.setitem(server.KINDS, TOKEN, FoundNetwork())
    return server.AlicloudProvider().Read(request, FakeContext())


def test_import_gets_inputs_from_what_was_read(monkeypatch):
    urn = f"urn:pulumi:lab1::proj::{TOKEN}::vpc"
    response = read(monkeypatch, pb.ReadRequest(id="vpc-0123abcd", urn=urn, type=TOKEN))
    assert response.id == "vpc-0123abcd"
    assert from_struct(response.inputs) == {"cidrBlock": "10.1.0.0/16", "vpcName": "lab"}  # no alias, no outputs
    assert from_struct(response.properties)["routeTableId"] == "vtb-0123abcd"


def test_refresh_keeps_the_programs_inputs(monkeypatch):
    urn = f"urn:pulumi:lab1::proj::{TOKEN}::vpc"
    inputs = to_struct({"cidrBlock": "10.1.0.0/16", "name": "lab"})
    response = read(monkeypatch, pb.ReadRequest(id="vpc-0123abcd", urn=urn, type=TOKEN, inputs=inputs,
                                                properties=inputs))
    assert from_struct(response.inputs) == {"cidrBlock": "10.1.0.0/16", "name": "lab"}


def test_imported_inputs_pass_check():
    ctx = Context(lab="lab1", name="x", region="cn-hangzhou", label="x")
    states = {
        Switch(): {"vpc_id": "vpc-0123abcd", "cidr_block": "10.1.0.0/24", "zone_id": "cn-hangzhou-a",
                   "availability_zone": "cn-hangzhou-a", "name": "a", "vswitch_name": "a", "status": "Available"},
        SecurityGroup(): {"vpc_id": "vpc-0123abcd", "security_group_type": "normal", "inner_access_policy": "Drop",
                          "inner_access": False, "name": "g", "security_group_name": "g"},
        Instance(): {"vswitch_id": "vsw-0123abcd", "private_ip": "10.1.0.1", "network_interface_id": "eni-0123abcd",
                     "security_groups": ["sg-0123abcd"], "status": "Running", "instance_name": "web",
                     "user_data": "echo hi", "cpu": 2, "vpc_id": "vpc-0123abcd"},
        EcsNetworkInterface(): {"vswitch_id": "vsw-0123abcd", "primary_ip_address": "10.1.0.2",
                                "private_ip": "10.1.0.2", "security_group_ids": [], "security_groups": []},
    }
    for kind, state in states.items():
        inputs = kind.inputs_of(kind.state(state))
        assert kind.check(ctx, inputs)[1] == [], (kind.label, inputs)
        assert not set(inputs) & set(kind.not_imported)
        assert "cpu" not in inputs and "create_time" not in inputs  # outputs only


# --- import_ of an SLB, its listener, an ENI and an EIP: made by the plugin, then found by id alone --------------

class FakeSlb:
    """netns/realize/slb.py's SlbInstance, without a kernel: an internet SLB named as it was made."""

    names: ClassVar[dict[str, str]] = {}

    def __init__(self, lab: str, lb_id: str) -> None:
        self.lb_id = lb_id

    def create(self, kind: str, vswitch: object, address: str | None, resource: str, name: str) -> str:
        FakeSlb.names[self.lb_id] = name
        return "203.0.113.50"

    def read(self) -> SlbState | None:
        return SlbState("203.0.113.50", "internet", None, None, FakeSlb.names.get(self.lb_id, ""))


class FakeEip:
    def __init__(self, lab: str, eip_id: str) -> None:
        pass

    def create(self, address: str | None, resource: str) -> str:
        return "203.0.113.90"

    def read(self) -> EipState:
        return EipState("203.0.113.90", "", "", "")


class FakeEni:
    def __init__(self, lab: str, eni_id: str) -> None:
        pass

    def read(self) -> EniState:
        return EniState("10.1.0.7", ("10.1.0.8",), "vsw-0123abcd", ("sg-0123abcd",), "", "")


@pytest.fixture
def lab_records(monkeypatch, tmp_path):
    """The plugin's records in a folder of the test's, and the realizations above."""
    monkeypatch.setattr(records, "state_dir", lambda lab: tmp_path / lab)
    monkeypatch.setattr(slb.realize, "SlbInstance", FakeSlb)
    monkeypatch.setattr(slb.realize, "listener_args", lambda lab, lb, protocol, port: {
        "frontend_port": port, "protocol": protocol, "backend_port": 8080, "bandwidth": -1, "scheduler": "wrr"})
    monkeypatch.setattr(slb.realize, "put_listener", lambda *args: None)
    monkeypatch.setattr(slb, "_require_lb", lambda *args: None)
    monkeypatch.setattr(ecs, "ElasticIp", FakeEip)
    monkeypatch.setattr(ecs, "NetworkInterface", FakeEni)
    return tmp_path


def imported_without_difference(kind: Kind, news: dict[str, Any], id_: str | None = None) -> dict[str, Any]:
    """Make the object with the program's arguments (unless ``id_`` names one made otherwise), then import it by id
    as the engine does for ``import_``: Read with no state, then Check and Diff of the program's own arguments
    against what was read, which must find no difference; and the inputs Read gives `pulumi import` pass Check."""
    ctx = Context(lab="lab1", name="x", region="cn-hangzhou", label=f"{kind.label} 'x'")
    inputs, failures = kind.check(ctx, news)
    assert failures == []
    if id_ is None:
        id_, _ = kind.create(ctx, inputs)
    urn = f"urn:pulumi:lab1::proj::{kind.token}::x"
    response = server.AlicloudProvider().Read(pb.ReadRequest(id=id_, urn=urn, type=kind.token), FakeContext())
    assert response.id == id_
    read = kind.schema.to_python(from_struct(response.properties))
    diff = kind.diff(read, kind.check(ctx, news)[0])
    assert diff.changed == (), (kind.label, diff, read)
    given = kind.schema.to_python(from_struct(response.inputs))
    assert kind.check(ctx, given)[1] == [], (kind.label, given)
    return read


def test_import_of_an_slb_and_its_listener(lab_records):
    read = imported_without_difference(slb.ApplicationLoadBalancer(), {
        "load_balancer_name": "web", "address_type": "internet", "load_balancer_spec": "slb.s2.small",
        "internet_charge_type": "PayByBandwidth", "bandwidth": 10})
    assert read["address"] == "203.0.113.50" and read["master_zone_id"] == "cn-hangzhou-a"
    listener = {"load_balancer_id": "lb-0123abcd", "frontend_port": 80, "backend_port": 8080, "protocol": "http",
                "bandwidth": -1, "health_check_uri": "/healthz"}
    imported_without_difference(slb.Listener(), listener)
    # made by another tool (no record): the arguments the SLB keeps
    read = imported_without_difference(slb.Listener(), {**listener, "frontend_port": 81, "health_check_uri": None},
                                       id_="lb-0123abcd:http:81")
    assert read["frontend_port"] == 81 and read["backend_port"] == 8080


def test_import_of_an_eip_and_an_eni(lab_records):
    read = imported_without_difference(ecs.EipAddress(), {"address_name": "nat", "bandwidth": "10",
                                                          "internet_charge_type": "PayByTraffic"})
    assert read["ip_address"] == "203.0.113.90" and read["status"] == "Available"
    imported_without_difference(ecs.EipAddress(), {}, id_="eip-0123abcd")  # no record: the SDK's defaults
    eni = {"vswitch_id": "vsw-0123abcd", "security_group_ids": ["sg-0123abcd"], "primary_ip_address": "10.1.0.7",
           "private_ip_addresses": ["10.1.0.8"], "description": "pods", "network_interface_name": "pods"}
    records.put("lab1", "eni-0123abcd", ecs.EcsNetworkInterface().state(
        ecs.EcsNetworkInterface().check(Context("lab1", "x", "cn-hangzhou", "x"), eni)[0]))
    read = imported_without_difference(ecs.EcsNetworkInterface(), eni, id_="eni-0123abcd")
    assert read["private_ip"] == "10.1.0.7" and read["description"] == "pods"


# --- server groups and ACLs: their SLB and name from the kernel's record; servers and entries left to the program --

def test_a_server_group_and_an_acl_are_found_by_id_alone(monkeypatch):
    ctx = Context(lab="lab1", name="x", region="cn-hangzhou", label="x")
    monkeypatch.setattr(slb.realize, "server_group", lambda lab, id_: {
        "load_balancer_id": "lb-0123abcd", "name": "web", "servers": [{"server_id": "i-0123abcd", "port": 80}]})
    monkeypatch.setattr(slb.realize, "acl", lambda lab, id_: {"name": "office", "entries": {"10.0.0.0/8": ""}})
    group, acl = slb.ServerGroup(), slb.Acl()
    imported = group.inputs_of(group.read(ctx, "rsp-0123abcd", {}))
    assert imported == {"load_balancer_id": "lb-0123abcd", "name": "web"}  # no servers: attachments may own them
    assert group.check(ctx, imported)[1] == []
    assert acl.inputs_of(acl.read(ctx, "acl-0123abcd", {})) == {"name": "office", "ip_version": "ipv4"}
    refreshed = group.read(ctx, "rsp-0123abcd", group.state({"load_balancer_id": "lb-0123abcd", "name": "web",
                                                            "servers": [{"server_id": "i-0123abcd"}]}))
    assert refreshed["servers"] == [{"server_id": "i-0123abcd"}]  # a refresh keeps what the program gave
    monkeypatch.setattr(slb.realize, "acl", lambda lab, id_: None)
    assert acl.read(ctx, "acl-0123abcd", {}) is None  # gone
