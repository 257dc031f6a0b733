"""The alicloud plugin's data sources without a kernel: images and instance types from the catalog (filters,
order, deterministic answers in the SDK's wire names), the lab's VPCs, vSwitches and groups of a lab that has none;
and the records that import and the data sources read (secrets never written)."""

from __future__ import annotations

import pytest
from pulumi.runtime.proto import provider_pb2 as pb

from acklab.provider import records, sdk, server
from acklab.provider.account import get_keys, get_resource_groups
from acklab.provider.config import ProviderConfig
from acklab.provider.ecs import get_images, get_instance_types, get_security_groups
from acklab.provider.vpc import (
    get_enhanced_nat_available_zones,
    get_forward_entries,
    get_nat_gateways,
    get_networks,
    get_snat_entries,
    get_switches,
    name_matches,
    tags_match,
)
from netns.model.errors import ValidationError
from tests.unit.test_provider_server import Aborted, FakeContext

HANGZHOU = ProviderConfig("cn-hangzhou")


def test_images_newest_first_and_the_sdks_example_filter():
    answer = get_images(HANGZHOU, {"nameRegex": "^ubuntu_[0-9]+_[0-9]+_x64*", "owners": "system"}, None)
    assert answer["ids"] == ["ubuntu_24_04_x64_20G_alibase_20240812.vhd", "ubuntu_22_04_x64_20G_alibase_20240101.vhd",
                             "ubuntu_20_04_x64_20G_alibase_20231221.vhd"]
    image = answer["images"][0]
    assert (image["id"], image["osType"], image["architecture"], image["imageOwnerAlias"]) == (
        answer["ids"][0], "linux", "x86_64", "system")
    assert image["diskDeviceMappings"] == [{"device": "/dev/xvda", "size": "20", "snapshotId": ""}]
    assert set(image) == set(sdk.output_type_names("pulumi_alicloud.ecs.outputs", "GetImagesImageResult").values())
    newest = get_images(HANGZHOU, {"nameRegex": "^ubuntu", "mostRecent": True}, None)
    assert newest["ids"] == [answer["ids"][0]] and newest["mostRecent"] is True  # arguments come back
    assert get_images(HANGZHOU, {"owners": "self"}, None)["images"] == []  # the lab has system images only
    assert get_images(HANGZHOU, {"osType": "windows"}, None)["ids"] == [
        "win2022_21H2_x64_dtc_en-us_40G_alibase_20240101.vhd"]
    assert get_images(HANGZHOU, {"architecture": "arm64"}, None)["ids"] == [
        "ubuntu_22_04_arm64_20G_alibase_20240101.vhd"]
    assert get_images(HANGZHOU, {}, None) == get_images(HANGZHOU, {}, None)  # deterministic, id included


def test_instance_types_filters_and_families_the_catalog_lacks():
    answer = get_instance_types(HANGZHOU, {"availabilityZone": "cn-hangzhou-a", "cpuCoreCount": 2,
                                           "memorySize": 4}, None)
    assert answer["ids"] == ["ecs.c6.large", "ecs.c7.large", "ecs.n4.large"]
    item = answer["instanceTypes"][0]
    assert (item["family"], item["cpuCoreCount"], item["memorySize"], item["eniQuantity"]) == ("ecs.c6", 2, 4.0, 3)
    assert item["availabilityZones"][0] == "cn-hangzhou-a" and item["gpus"] == [{"amount": "0", "category": ""}]
    family = get_instance_types(HANGZHOU, {"instanceTypeFamily": "ecs.sn1ne"}, None)
    assert family["ids"] == ["ecs.sn1ne.large", "ecs.sn1ne.xlarge", "ecs.sn1ne.2xlarge", "ecs.sn1ne.4xlarge"]
    assert get_instance_types(HANGZHOU, {"availabilityZone": "cn-beijing-a"}, None)["ids"] == []
    assert get_instance_types(HANGZHOU, {"gpuAmount": 1}, None)["ids"] == []
    assert get_instance_types(HANGZHOU, {"eniAmount": 4, "cpuCoreCount": 4}, None)["ids"][0] == "ecs.c7.xlarge"
    by_memory = get_instance_types(HANGZHOU, {"sortedBy": "Memory"}, None)["instanceTypes"]
    assert [t["memorySize"] for t in by_memory] == sorted(t["memorySize"] for t in by_memory)


def test_lab_data_sources_answer_every_field_when_there_is_nothing():
    for function, items in ((get_networks, "vpcs"), (get_switches, "vswitches"), (get_security_groups, "groups"),
                            (get_nat_gateways, "gateways"), (get_snat_entries, "entries"),
                            (get_forward_entries, "entries")):
        answer = function(HANGZHOU, {"nameRegex": "^web"}, None)  # no lab known: nothing
        assert answer[items] == [] and answer["ids"] == [] and answer["nameRegex"] == "^web"
        assert answer["id"] == function(HANGZHOU, {}, None)["id"]  # the id depends on what was found
    assert get_networks(HANGZHOU, {}, "nolabhere")["vpcs"] == []  # a lab without objects
    for table in ("stb-1234abcd", "stb-x!", "vtb-1234abcd", ""):  # no such gateway, not an id, another kind
        assert get_snat_entries(HANGZHOU, {"snatTableId": table}, "nolabhere")["entries"] == []


def test_filters_as_the_real_provider_applies_them():
    assert name_matches("tf-example-1", "example") and not name_matches(None, "x") and name_matches(None, None)
    assert tags_match({"a": "1", "b": "2"}, {"a": "1"}) and not tags_match({}, {"a": "1"})


def test_a_result_with_a_field_the_sdk_does_not_read_is_a_bug_here():
    with pytest.raises(KeyError, match="no fields"):
        sdk.result("pulumi_alicloud.vpc.outputs", "GetNetworksVpcResult", {"vpc_naem": "x"})


def test_records_never_hold_secrets(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "state_dir", lambda lab: tmp_path / lab)
    records.put("lab1", "i-0123abcd", {"instance_name": "web", "password": "pw", "kms_encrypted_password": "x",
                                       "user_data": "echo secret", "image_id": None})
    assert records.get("lab1", "i-0123abcd") == {"instance_name": "web"}
    records.drop("lab1", "i-0123abcd")
    assert records.get("lab1", "i-0123abcd") == {} and not (tmp_path / "lab1" / "provider").exists()


def test_slb_zones_as_the_sdks_example_asks_for_them():
    from acklab.provider.slb import get_zones

    answer = get_zones(HANGZHOU, {"availableSlbAddressType": "vpc"}, None)
    assert answer["ids"][:2] == ["cn-hangzhou-a", "cn-hangzhou-b"] and len(answer["ids"]) == 11
    assert (answer["zones"][0]["masterZoneId"], answer["zones"][0]["slaveZoneId"]) == ("cn-hangzhou-a",
                                                                                       "cn-hangzhou-b")
    assert get_zones(HANGZHOU, {"availableSlbAddressIpVersion": "ipv6"}, None)["zones"] == []  # IPv4 only
    assert get_zones(HANGZHOU, {"masterZoneId": "cn-hangzhou-c"}, None)["ids"] == ["cn-hangzhou-c"]


def test_enhanced_nat_zones_are_the_regions_zones():
    answer = get_enhanced_nat_available_zones(HANGZHOU, {}, None)
    assert answer["ids"][0] == "cn-hangzhou-a" and len(answer["ids"]) == len(answer["zones"]) == 11
    assert answer["zones"][0] == {"zoneId": "cn-hangzhou-a", "localName": "cn-hangzhou zone A"}
    assert get_enhanced_nat_available_zones(ProviderConfig("eu-central-1"), {}, None)["ids"][0] == "eu-central-1-a"
    assert answer == get_enhanced_nat_available_zones(HANGZHOU, {}, None)  # deterministic, id included


# the SDK's cs.ManagedKubernetes example: kms.get_keys(filters=...) then encryption_provider_key=keys[0].key_id
ACK_KEY_FILTERS = ('[{"Key":"KeyState","Values":["Enabled"]},{"Key":"KeySpec","Values":["Aliyun_AES_256"]},'
                   '{"Key":"KeyUsage","Values":["ENCRYPT/DECRYPT"]},{"Key":"CreatorType","Values":["User"]}]')


def test_kms_keys_answer_one_stand_in_the_ack_example_finds():
    answer = get_keys(HANGZHOU, {"filters": ACK_KEY_FILTERS}, None)
    key = answer["keys"][0]
    assert key["keyId"] == key["id"] == answer["ids"][0] and key["keyId"].startswith("key-acklab")
    assert "encrypts nothing" in key["description"] and key["arn"].startswith("acs:kms:cn-hangzhou:")
    assert set(key) == set(sdk.output_type_names("pulumi_alicloud.kms.outputs", "GetKeysKeyResult").values())
    assert get_keys(HANGZHOU, {"status": "Enabled"}, None)["ids"] == answer["ids"]
    assert get_keys(HANGZHOU, {"status": "Disabled"}, None)["keys"] == []
    assert get_keys(HANGZHOU, {"filters": '[{"Key":"KeySpec","Values":["RSA_2048"]}]'}, None)["keys"] == []
    with pytest.raises(ValidationError, match="filters: is not JSON"):
        get_keys(HANGZHOU, {"filters": "KeyState=Enabled"}, None)


def test_resource_groups_answer_the_default_group():
    answer = get_resource_groups(HANGZHOU, {}, None)
    assert answer["names"] == ["default"] and answer["groups"][0]["id"].startswith("rg-")
    assert get_resource_groups(HANGZHOU, {"nameRegex": "^prod"}, None)["groups"] == []


def test_a_data_source_the_lab_lacks_says_so():
    request = pb.InvokeRequest(tok="alicloud:kms/getAliases:getAliases")
    with pytest.raises(Aborted, match="kms/getAliases:getAliases: data source not implemented by acklab"):
        server.AlicloudProvider().Invoke(request, FakeContext())
