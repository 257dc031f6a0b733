"""Data sources about the account rather than its network, which ACK programs call before they make anything:
``kms.get_keys`` (the ACK examples encrypt the cluster's Secrets with ``keys[0].key_id``) and
``resourcemanager.get_resource_groups`` (``groups[0].id`` as every resource's ``resource_group_id``).

The lab has no KMS and no resource groups: each answers one deterministic, documented stand-in, so that such
programs run unmodified. Nothing is encrypted with the key (``cs.ManagedKubernetes`` keeps
``encryption_provider_key`` as state only, as docs/provider.md lists); the group is a name in the state.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from acklab.provider.config import ProviderConfig
from acklab.provider.index import Function, arguments, data_id
from acklab.provider.sdk import result
from netns.model.errors import ValidationError

GET_KEYS = "alicloud:kms/getKeys:getKeys"
GET_RESOURCE_GROUPS = "alicloud:resourcemanager/getResourceGroups:getResourceGroups"
ACCOUNT_ID = "1000000000000000"  # the lab's one account (no credentials are ever used)
CREATED = "2026-01-01T00:00:00Z"  # fixed: answers are deterministic


def _lab_key(region: str) -> dict[str, Any]:
    """The one key: an enabled, user-made AES-256 key for ENCRYPT/DECRYPT, what the ACK examples filter for."""
    key_id = f"key-acklab{zlib.crc32(region.encode()):08x}"
    return {"id": key_id, "key_id": key_id, "arn": f"acs:kms:{region}:{ACCOUNT_ID}:key/{key_id}",
            "description": "acklab: the lab has no KMS; this key encrypts nothing", "status": "Enabled",
            "key_spec": "Aliyun_AES_256", "key_usage": "ENCRYPT/DECRYPT", "creator": ACCOUNT_ID,
            "creation_date": CREATED, "origin": "Aliyun_KMS", "protection_level": "SOFTWARE",
            "automatic_rotation": "Disabled", "primary_key_version": "1", "delete_date": "",
            "last_rotation_date": "", "material_expire_time": "", "next_rotation_date": "", "rotation_interval": ""}


# KMS ListKeys filter keys → the key's field (CreatorType: "User" for a key a user made, as this one is)
_FILTER_FIELDS = {"KeyState": "status", "KeySpec": "key_spec", "KeyUsage": "key_usage",
                  "ProtectionLevel": "protection_level"}


def _filters(text: str | None) -> list[dict[str, Any]]:
    """``filters`` as KMS takes it: a JSON list of ``{"Key": ..., "Values": [...]}``."""
    if not text:
        return []
    try:
        found = json.loads(text)
    except ValueError as exc:
        raise ValidationError("kms.get_keys", "filters", f"is not JSON ({exc})") from None
    if not isinstance(found, list) or not all(isinstance(f, dict) and "Key" in f for f in found):
        raise ValidationError("kms.get_keys", "filters", 'is not a list of {"Key": ..., "Values": [...]}')
    return found


def _key_matches(key: dict[str, Any], args: dict[str, Any]) -> bool:
    for item in _filters(args.get("filters")):
        values = item.get("Values") or []
        if item["Key"] == "CreatorType":
            if "User" not in values:
                return False
        elif item["Key"] in _FILTER_FIELDS and key[_FILTER_FIELDS[item["Key"]]] not in values:
            return False
    pattern = args.get("description_regex")
    return ((args.get("status") in (None, key["status"])) and (not args.get("ids") or key["id"] in args["ids"])
            and (pattern is None or re.search(pattern, key["description"]) is not None))


def get_keys(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """One stand-in key (the lab has no KMS; nothing is encrypted with it): enabled, user-made, Aliyun_AES_256,
    ENCRYPT/DECRYPT, so the ACK examples' `keys[0].key_id` works; the filters (`status`, `ids`,
    `description_regex`, `filters`) apply."""
    module = "pulumi_alicloud.kms.get_keys"
    args = arguments(module, "GetKeysResult", wire_args)
    key = _lab_key(config.region)
    items = [key] if _key_matches(key, args) else []
    ids = [i["id"] for i in items]
    return result(module, "GetKeysResult", {
        **args, "id": data_id(ids), "ids": ids,
        "keys": [result("pulumi_alicloud.kms.outputs", "GetKeysKeyResult", i) for i in items]})


def get_resource_groups(config: ProviderConfig, wire_args: dict[str, Any], lab: str | None) -> dict[str, Any]:
    """The account's default resource group (`rg-acklab…`, named `default`), as every Alibaba account has: a name
    the lab keeps in the state; `ids`, `name_regex` and `status` apply."""
    module = "pulumi_alicloud.resourcemanager.get_resource_groups"
    args = arguments(module, "GetResourceGroupsResult", wire_args)
    group_id = f"rg-acklab{zlib.crc32(ACCOUNT_ID.encode()):08x}"
    group = {"id": group_id, "name": "default", "resource_group_name": "default", "display_name": "default resource "
             "group", "account_id": ACCOUNT_ID, "status": "OK", "region_statuses": []}
    pattern = args.get("name_regex")
    wanted = ((args.get("status") in (None, "OK")) and (not args.get("ids") or group_id in args["ids"])
              and (pattern is None or re.search(pattern, "default") is not None))
    items = [group] if wanted else []
    ids = [i["id"] for i in items]
    return result(module, "GetResourceGroupsResult", {
        **args, "id": data_id(ids), "ids": ids, "names": [i["name"] for i in items],
        "groups": [result("pulumi_alicloud.resourcemanager.outputs", "GetResourceGroupsGroupResult", i)
                   for i in items]})


FUNCTIONS: dict[str, Function] = {GET_KEYS: get_keys, GET_RESOURCE_GROUPS: get_resource_groups}
