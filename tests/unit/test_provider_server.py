"""The alicloud plugin's gRPC service, called as the engine calls it (protobuf requests), without a kernel:
plugin info, configuration, Check failures by wire name, data sources, the SDK's names and outputs."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import provider_pb2 as pb

from acklab.provider import sdk, server
from acklab.provider.wire import UNKNOWN, Urn, from_struct, to_struct

STACK_URN = "urn:pulumi:lab1::proj::{}::{}"


class Aborted(Exception):
    pass


class FakeContext:
    """What a servicer method gets from gRPC: only ``abort`` is used."""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(details)


def call(method: str, request):
    return getattr(server.AlicloudProvider(), method)(request, FakeContext())


def test_plugin_info_is_the_sdks_version():
    assert sdk.version() == "4.0.0"
    assert call("GetPluginInfo", empty_pb2.Empty()).version == "4.0.0"


def test_every_kind_uses_the_sdks_names():
    for token, kind in server.KINDS.items():
        names = kind.schema.inputs
        for field in (*kind.replace_on, *kind.computed, *kind.defaults, *kind.lab_required, *kind.unsupported):
            assert field in names, (token, field)
        assert kind.schema.required == tuple(kind.schema.required)
    assert server.KINDS["alicloud:ecs/securityGroupRule:SecurityGroupRule"].schema.required == (
        "ip_protocol", "security_group_id", "type")
    schema = json.loads(call("GetSchema", pb.GetSchemaRequest()).schema)
    assert schema["version"] == "4.0.0"
    assert schema["resources"]["alicloud:ecs/securityGroupRule:SecurityGroupRule"]["requiredInputs"] == [
        "ipProtocol", "securityGroupId", "type"]


def test_state_has_every_output_of_the_sdk():
    kind = server.KINDS["alicloud:ecs/instance:Instance"]
    wire = kind.schema.to_wire(kind.state({"private_ip": "10.0.0.1"}))
    assert {"privateIp", "primaryIpAddress", "cpu", "memory", "osName", "networkInterfaceId", "publicIp"} <= set(wire)
    assert set(wire) == set(kind.schema.outputs.values())


def test_check_reports_failures_by_wire_name_with_the_programs_argument():
    urn = STACK_URN.format("alicloud:vpc/switch:Switch", "bad")
    news = {"vpcId": "vpc-0123abcd", "cidrBlock": "10.0.0.0/8", "zoneId": "cn-hangzhou-b"}
    response = call("Check", pb.CheckRequest(urn=urn, type="alicloud:vpc/switch:Switch", news=to_struct(news)))
    assert [(f.property, f.reason.split(":")[0]) for f in response.failures] == [("cidrBlock", "cidr_block")]
    assert "prefix length /8" in response.failures[0].reason


def test_check_refuses_a_stack_that_is_no_lab_name():
    urn = "urn:pulumi:Bad_Stack::proj::alicloud:vpc/network:Network::vpc"
    response = call("Check", pb.CheckRequest(urn=urn, news=to_struct({"cidrBlock": "10.0.0.0/16"})))
    assert "must be 1-16 lower-case letters and digits" in response.failures[0].reason


def test_check_passes_unknowns_and_fills_defaults():
    urn = STACK_URN.format("alicloud:ecs/securityGroup:SecurityGroup", "g")
    response = call("Check", pb.CheckRequest(urn=urn, news=to_struct({"vpcId": UNKNOWN})))
    assert list(response.failures) == []
    assert from_struct(response.inputs) == {"vpcId": UNKNOWN, "securityGroupType": "normal",
                                            "innerAccessPolicy": "Accept"}


def test_check_config_validates_the_region_and_configure_uses_it():
    provider = server.AlicloudProvider()
    urn = "urn:pulumi:lab1::proj::pulumi:providers:alicloud::default_4_0_0"
    bad = provider.CheckConfig(pb.CheckRequest(urn=urn, news=to_struct({"region": "mars-1"})), FakeContext())
    assert [f.property for f in bad.failures] == ["region"]
    assert provider.stack == "lab1"
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "SK"}
    response = provider.Configure(pb.ConfigureRequest(args=to_struct({"region": "cn-beijing", "secretKey": secret})),
                                  FakeContext())
    assert not response.acceptSecrets and not response.supportsPreview
    zones = provider.Invoke(pb.InvokeRequest(tok="alicloud:index/getZones:getZones", args=to_struct({})),
                            FakeContext())
    assert from_struct(getattr(zones, "return"))["ids"][0] == "cn-beijing-a"


def test_unimplemented_types_and_functions_say_what_is_implemented():
    with pytest.raises(Aborted, match="alicloud:slb/loadBalancer:LoadBalancer: not implemented by acklab"):
        call("Check", pb.CheckRequest(urn=STACK_URN.format("alicloud:slb/loadBalancer:LoadBalancer", "lb"),
                                      news=to_struct({})))
    with pytest.raises(Aborted, match="alicloud:index/getRegions:getRegions: data source not implemented"):
        call("Invoke", pb.InvokeRequest(tok="alicloud:index/getRegions:getRegions", args=to_struct({})))


def test_urn_of_a_child_resource():
    urn = Urn.parse("urn:pulumi:lab1::proj::my:component$alicloud:vpc/network:Network::a::b")
    assert (urn.stack, urn.type, urn.name) == ("lab1", "alicloud:vpc/network:Network", "a::b")


def test_diff_config_changes_the_provider_and_replaces_nothing():
    olds, news = to_struct({"region": "cn-hangzhou", "version": "4.0.0"}), to_struct({"region": "cn-beijing",
                                                                                      "version": "4.0.0"})
    response = call("DiffConfig", pb.DiffRequest(olds=olds, old_inputs=olds, news=news))
    assert response.changes == pb.DiffResponse.DIFF_SOME
    assert list(response.diffs) == ["region"] and list(response.replaces) == []
    assert call("DiffConfig", pb.DiffRequest(olds=olds, news=olds)).changes == pb.DiffResponse.DIFF_NONE


def test_timings_off_by_default_and_one_line_per_create_update_delete(monkeypatch, tmp_path):
    kind = server.KINDS["alicloud:vpc/network:Network"]
    calls = []
    monkeypatch.setattr(kind, "create", lambda ctx, inputs: (calls.append("create"), ("vpc-1", {}))[1])
    monkeypatch.setattr(kind, "delete", lambda ctx, id_, state: calls.append("delete"))
    urn = STACK_URN.format("alicloud:vpc/network:Network", "vpc")
    create = pb.CreateRequest(urn=urn, type="alicloud:vpc/network:Network", properties=to_struct({}))
    timings = tmp_path / "timings.jsonl"

    monkeypatch.delenv(server.TIMINGS, raising=False)
    assert call("Create", create).id == "vpc-1"
    assert not timings.exists()

    monkeypatch.setenv(server.TIMINGS, str(timings))
    assert call("Create", create).id == "vpc-1"
    call("Delete", pb.DeleteRequest(urn=urn, id="vpc-1", properties=to_struct({})))  # type from the URN
    with pytest.raises(Aborted, match="not implemented"):  # a failed call is timed too, and still fails
        call("Update", pb.UpdateRequest(urn=STACK_URN.format("alicloud:nas/fileSystem:FileSystem", "fs"), id="x"))
    lines = [json.loads(line) for line in timings.read_text().splitlines()]
    assert calls == ["create", "create", "delete"]
    assert [(t["type"], t["method"], t["ok"]) for t in lines] == [
        ("alicloud:vpc/network:Network", "Create", True), ("alicloud:vpc/network:Network", "Delete", True),
        ("alicloud:nas/fileSystem:FileSystem", "Update", False)]
    assert all(t["seconds"] >= 0 and t["start"] > 0 and t["urn"].startswith("urn:pulumi:lab1::") for t in lines)
