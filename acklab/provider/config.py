"""The provider's configuration, as the SDK's (``alicloud:region``, credentials, ``profile``, ...).

Only the region means something in a lab: it names the zones (see ``index.zones``) and every ``region_id``.
Credentials and profiles are accepted so that programs written for Alibaba Cloud run unchanged, and dropped
here: they are never stored, used or logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The region when neither the configuration nor the environment names one. Alibaba's provider has no default;
# a lab picks the region its own examples use (zones cn-hangzhou-a ... cn-hangzhou-k).
DEFAULT_REGION = "cn-hangzhou"
REGION_ENV = ("ALICLOUD_REGION", "ALIBABA_CLOUD_REGION")  # what the real provider reads, in this order

# Public regions of Alibaba Cloud; the real provider refuses another unless skip_region_validation is set.
REGIONS = (
    "cn-qingdao", "cn-beijing", "cn-zhangjiakou", "cn-huhehaote", "cn-wulanchabu", "cn-hangzhou", "cn-shanghai",
    "cn-nanjing", "cn-fuzhou", "cn-shenzhen", "cn-heyuan", "cn-guangzhou", "cn-chengdu", "cn-hongkong",
    "ap-northeast-1", "ap-northeast-2", "ap-southeast-1", "ap-southeast-3", "ap-southeast-5", "ap-southeast-6",
    "ap-southeast-7", "us-east-1", "us-west-1", "eu-west-1", "eu-central-1", "me-east-1", "me-central-1",
    "na-south-1",
)


@dataclass(frozen=True)
class ProviderConfig:
    region: str = DEFAULT_REGION


def _flag(value: Any) -> bool:
    """Stack configuration reaches a default provider as strings: "true" as well as True."""
    return value is True or str(value).lower() == "true"


def region_problem(inputs: Mapping[str, Any], env: Mapping[str, str] | None = None) -> str | None:
    """Why the configured region cannot be used, or None."""
    region = resolve(inputs, env).region
    if _flag(inputs.get("skipRegionValidation")) or region in REGIONS:
        return None
    return (f"{region!r} is not an Alibaba Cloud region ({', '.join(REGIONS[:3])}, ...); "
            "set alicloud:skipRegionValidation to true to use it anyway")


def resolve(inputs: Mapping[str, Any], env: Mapping[str, str] | None = None) -> ProviderConfig:
    """The configuration from the provider's inputs (wire names) and the environment the engine started us in."""
    env = os.environ if env is None else env
    region = inputs.get("region") or next((env[k] for k in REGION_ENV if env.get(k)), None)
    return ProviderConfig(region=str(region) if region else DEFAULT_REGION)


def from_variables(variables: Mapping[str, str]) -> dict[str, Any]:
    """The deprecated ``variables`` form of Configure (``alicloud:config:region``) as inputs."""
    prefix = "alicloud:config:"
    return {key.removeprefix(prefix): value for key, value in variables.items() if key.startswith(prefix)}
