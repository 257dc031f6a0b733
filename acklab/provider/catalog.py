"""The lab's catalog: what a region offers (zones, instance types, disk categories, images), deterministic.

Nothing here is the real inventory of Alibaba Cloud: every region has zones ``<region>-a`` ... ``<region>-k``,
each offering every instance type and disk category below. Facts of an instance type (vCPUs, memory) follow
Alibaba's naming (``ecs.<family>.<size>``), so types the catalog does not list still get plausible numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from netns.model import instance_types

ZONE_LETTERS = "abcdefghijk"
DISK_CATEGORIES = ("cloud_efficiency", "cloud_ssd", "cloud_essd", "cloud_auto", "cloud_essd_entry")
RESOURCE_CREATIONS = ("Instance", "Disk", "VSwitch", "Rds", "KVStore", "FunctionCompute", "Elasticsearch", "Slb")
INSTANCE_TYPES = ("ecs.g7.large", "ecs.g7.xlarge", "ecs.g7.2xlarge", "ecs.c7.large", "ecs.c7.xlarge",
                  "ecs.r7.large", "ecs.g6.large", "ecs.c6.large", "ecs.n4.large", "ecs.n4.xlarge")

# Memory per vCPU by the family's letter (g: general purpose 1:4, c: compute 1:2, r: memory 1:8, n: shared 1:2).
_GIB_PER_CPU = {"g": 4, "c": 2, "r": 8, "n": 2, "t": 2, "s": 2}
_SIZE = re.compile(r"^ecs\.([a-z]+)[a-z0-9-]*\.(small|medium|large|xlarge|(\d+)xlarge)$")
_CPUS = {"small": 1, "medium": 1, "large": 2, "xlarge": 4}


def zones(region: str) -> list[str]:
    return [f"{region}-{letter}" for letter in ZONE_LETTERS]


def zone_local_name(region: str, zone: str) -> str:
    """How the console names a zone (``cn-hangzhou-a`` → ``cn-hangzhou zone A``)."""
    return f"{region} zone {zone.rsplit('-', 1)[-1].upper()}"


def zone_problem(region: str, zone: str) -> str | None:
    """Why ``zone`` is no zone of ``region`` (Alibaba refuses a vSwitch or an ECS in another region's zone)."""
    if zone in zones(region):
        return None
    return f"{zone!r} is not a zone of region {region} ({region}-a ... {region}-{ZONE_LETTERS[-1]})"


@dataclass(frozen=True)
class InstanceType:
    name: str
    cpu: int
    memory_mib: int


def instance_type(name: str) -> InstanceType | None:
    """vCPUs and memory of ``ecs.<family>.<size>``, or None if the name does not read as an instance type."""
    match = _SIZE.match(name or "")
    if not match or match[1][0] not in _GIB_PER_CPU:
        return None
    cpu = int(match[3]) * 4 if match[3] else _CPUS[match[2]]
    return InstanceType(name, cpu, cpu * _GIB_PER_CPU[match[1][0]] * 1024)


@dataclass(frozen=True)
class Image:
    os_type: str
    os_name: str


def image(image_id: str | None) -> Image:
    """What an image id says of its system (``ubuntu_22_04_x64_20G_alibase_20240101.vhd`` → Ubuntu 22.04)."""
    words = (image_id or "").lower().split("_")
    if not words[0]:
        return Image("linux", "")
    if words[0].startswith("win"):
        return Image("windows", " ".join(w.capitalize() for w in words[:3]))
    version = ".".join(w for w in words[1:3] if w.isdigit())
    return Image("linux", f"{_DISTROS.get(words[0], words[0].capitalize())} {version} 64 bit".replace("  ", " "))


_DISTROS = {"ubuntu": "Ubuntu", "centos": "CentOS", "debian": "Debian", "aliyun": "Alibaba Cloud Linux",
            "alinux": "Alibaba Cloud Linux", "rockylinux": "Rocky Linux", "anolisos": "Anolis OS"}


# For types whose quota is not confirmed: the g7 figures of the same vCPUs (an estimate, for data source filters).
_ENIS_BY_CPU = {1: (2, 2), 2: (3, 6), 4: (4, 15), 8: (4, 15), 16: (8, 30)}


def eni_limits(name: str, cpu: int) -> tuple[int, int]:
    """(ENIs per instance, private IPv4 addresses per ENI) of an instance type: the confirmed quota the cluster's
    Terway enforces (``netns.model.instance_types``, one table), else the g7 figures of its vCPUs."""
    quota = instance_types.QUOTAS.get(name)
    return (quota.enis, quota.ips_per_eni) if quota else _ENIS_BY_CPU.get(cpu, (8, 30))


def family(name: str) -> str:
    """``ecs.g7.large`` → ``ecs.g7``."""
    return name.rsplit(".", 1)[0]


_FAMILY = re.compile(r"^ecs\.[a-z]+[a-z0-9-]*$")
_SIZES = ("large", "xlarge", "2xlarge", "4xlarge")


def family_types(name: str) -> list[InstanceType]:
    """The sizes of a family the program asks for, when its name reads as one (``ecs.sn1ne`` → large ...
    4xlarge): programs ask for families the lab's list does not have, and every family is one naming rule."""
    if not _FAMILY.match(name or ""):
        return []
    return [t for t in (instance_type(f"{name}.{size}") for size in _SIZES) if t is not None]


@dataclass(frozen=True)
class SystemImage:
    image_id: str  # a system image's name is its id
    created: str  # from the date in the id, as Alibaba's system images are named
    architecture: str
    size_gib: int
    platform: str


def _system_image(image_id: str) -> SystemImage:
    words = image_id.removesuffix(".vhd").split("_")
    date = words[-1]
    size = next(int(w[:-1]) for w in words if w.endswith("G") and w[:-1].isdigit())
    system = image(image_id)
    return SystemImage(image_id, f"{date[:4]}-{date[4:6]}-{date[6:8]}T00:00:00Z",
                       "arm64" if "arm64" in words else "x86_64", size,
                       "Windows Server 2022" if system.os_type == "windows" else system.os_name.rsplit(" ", 3)[0])


# The system images of every region (the ids Alibaba's examples use), newest first in each distribution.
IMAGES = tuple(_system_image(i) for i in (
    "ubuntu_24_04_x64_20G_alibase_20240812.vhd", "ubuntu_22_04_x64_20G_alibase_20240101.vhd",
    "ubuntu_22_04_arm64_20G_alibase_20240101.vhd", "ubuntu_20_04_x64_20G_alibase_20231221.vhd",
    "ubuntu_18_04_64_20G_alibase_20190624.vhd", "centos_7_9_x64_20G_alibase_20240628.vhd",
    "aliyun_3_x64_20G_alibase_20240528.vhd", "debian_12_6_x64_20G_alibase_20240715.vhd",
    "rockylinux_9_4_x64_20G_alibase_20240709.vhd", "win2022_21H2_x64_dtc_en-us_40G_alibase_20240101.vhd",
))
