"""Data sources of the SDK's top-level module (``alicloud.get_zones``), answered from the lab's catalog."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from acklab.provider import catalog, sdk
from acklab.provider.config import ProviderConfig

GET_ZONES = "alicloud:index/getZones:getZones"
_MODULE = "pulumi_alicloud.get_zones"
_OUTPUTS = "pulumi_alicloud.outputs"

# A data source: the provider's configuration, the arguments (wire names), the lab (None: the provider was not told
# its stack) → the answer (wire names).
Function = Callable[[ProviderConfig, dict[str, Any], str | None], dict[str, Any]]


def _offered(args: dict[str, Any]) -> bool:
    """Whether the lab's zones offer what the filters ask for (every zone offers the same)."""
    wanted_type = args.get("available_instance_type")
    return ((wanted_type is None or catalog.instance_type(wanted_type) is not None)
            and args.get("available_disk_category") in (None, *catalog.DISK_CATEGORIES)
            and args.get("available_resource_creation") in (None, *catalog.RESOURCE_CREATIONS)
            # multi-zone ids are an RDS notion; the lab has none
            and not args.get("multi"))


def _zone(region: str, zone_id: str) -> dict[str, Any]:
    zones = catalog.zones(region)
    return sdk.wire(_OUTPUTS, "GetZonesZoneResult", {
        "id": zone_id,
        "local_name": catalog.zone_local_name(region, zone_id),
        "available_instance_types": list(catalog.INSTANCE_TYPES),
        "available_disk_categories": list(catalog.DISK_CATEGORIES),
        "available_resource_creations": list(catalog.RESOURCE_CREATIONS),
        "multi_zone_ids": [],
        # an SLB's standby zone: the next zone of the region
        "slb_slave_zone_ids": [zones[(zones.index(zone_id) + 1) % len(zones)]],
    })


def data_id(ids: list[str]) -> str:
    """A data source's ``id``: like the real provider's, a hash of what it found (stable for the same answer)."""
    return str(zlib.crc32(",".join(ids).encode()))


def arguments(module_name: str, result_class: str, wire_args: dict[str, Any]) -> dict[str, Any]:
    """A data source's arguments in Python names (its result type repeats each argument)."""
    names = sdk.output_type_names(module_name, result_class)
    return {py: wire_args.get(wire_name) for py, wire_name in names.items() if wire_name in wire_args}


def get_zones(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None = None) -> dict[str, Any]:
    """The zones `<region>-a` ... `<region>-k` of the provider's region, each offering the catalog's instance
    types, disk categories and resource kinds; a filter the catalog does not offer finds none."""
    args = arguments(_MODULE, "GetZonesResult", wire_args)
    ids = catalog.zones(config.region) if _offered(args) else []
    return sdk.wire(_MODULE, "GetZonesResult", {
        **args, "id": data_id(ids), "ids": ids, "zones": [_zone(config.region, z) for z in ids]})


FUNCTIONS: dict[str, Function] = {GET_ZONES: get_zones}
