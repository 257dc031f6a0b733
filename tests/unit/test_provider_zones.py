"""The alicloud plugin's data sources and configuration: zones from the region, deterministic; the region from
the stack's configuration or the environment; credentials accepted and dropped."""

from __future__ import annotations

from acklab.provider import catalog, config
from acklab.provider.config import ProviderConfig
from acklab.provider.index import get_zones


def test_zones_of_a_region():
    answer = get_zones(ProviderConfig("cn-hangzhou"), {"availableResourceCreation": "VSwitch"})
    assert answer["ids"] == [f"cn-hangzhou-{c}" for c in "abcdefghijk"]
    assert [z["id"] for z in answer["zones"]] == answer["ids"]
    first = answer["zones"][0]
    assert set(first) == {"id", "localName", "availableInstanceTypes", "availableDiskCategories",
                          "availableResourceCreations", "multiZoneIds", "slbSlaveZoneIds"}  # the SDK's wire names
    assert first["slbSlaveZoneIds"] == ["cn-hangzhou-b"]
    assert answer["availableResourceCreation"] == "VSwitch"  # the arguments come back, as from the real one
    again = get_zones(ProviderConfig("cn-hangzhou"), {})
    assert again == get_zones(ProviderConfig("cn-hangzhou"), {}) and again["id"] == answer["id"]  # deterministic
    assert get_zones(ProviderConfig("eu-central-1"), {})["ids"][0] == "eu-central-1-a"


def test_filters_the_lab_does_not_offer_find_no_zone():
    for args in ({"availableInstanceType": "no-such-type"}, {"availableDiskCategory": "floppy"},
                 {"availableResourceCreation": "Mainframe"}, {"multi": True}):
        assert get_zones(ProviderConfig("cn-hangzhou"), args)["zones"] == [], args
    assert len(get_zones(ProviderConfig("cn-hangzhou"), {"availableInstanceType": "ecs.n4.large",
                                                          "availableDiskCategory": "cloud_efficiency"})["zones"]) == 11


def test_instance_types_and_images():
    assert catalog.instance_type("ecs.g7.large") == catalog.InstanceType("ecs.g7.large", 2, 8192)
    assert catalog.instance_type("ecs.c7.4xlarge").cpu == 16
    assert catalog.instance_type("m1.small") is None
    assert catalog.image("ubuntu_22_04_x64_20G_alibase_20240101.vhd").os_name == "Ubuntu 22.04 64 bit"
    assert catalog.image("win2022_21H2_x64_dtc_en-us_40G_alibase_20240101.vhd").os_type == "windows"


def test_region_from_config_then_environment_then_the_lab_default():
    assert config.resolve({"region": "cn-beijing"}, {"ALICLOUD_REGION": "cn-shanghai"}).region == "cn-beijing"
    assert config.resolve({}, {"ALICLOUD_REGION": "cn-shanghai"}).region == "cn-shanghai"
    assert config.resolve({}, {"ALIBABA_CLOUD_REGION": "us-west-1"}).region == "us-west-1"
    assert config.resolve({}, {}).region == config.DEFAULT_REGION
    assert config.resolve(config.from_variables({"alicloud:config:region": "cn-qingdao"}), {}).region == "cn-qingdao"


def test_unknown_region_is_refused_unless_validation_is_skipped():
    assert "not an Alibaba Cloud region" in config.region_problem({"region": "cn-hangzou"}, {})
    assert config.region_problem({"region": "cn-hangzou", "skipRegionValidation": "true"}, {}) is None
    assert config.region_problem({"region": "cn-hangzhou"}, {}) is None


def test_credentials_are_not_kept():
    resolved = config.resolve({"region": "cn-beijing", "accessKey": "AK", "secretKey": "SK", "profile": "p"}, {})
    assert "SK" not in repr(resolved) and "AK" not in repr(resolved)
