"""Values on the wire: protobuf Structs ↔ plain Python values, URNs, the preview's unknowns.

The plugin tells the engine it accepts no secrets, resources or outputs (see ``server.Configure``), so what
arrives is plain JSON-like data: the engine strips secrets before calling and marks the matching outputs
secret again afterwards. Only one special value is left: the placeholder of a value still unknown during a
preview, a fixed string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format, struct_pb2
from pulumi.runtime import rpc

UNKNOWN = rpc.UNKNOWN
_SIG = "4dabf18193072939515e22adb298388d"  # the key that marks a special value (a secret) in a Struct


def known(value: Any) -> bool:
    """A plain value (possibly None), not the preview's placeholder, nor a list or map holding one."""
    if value == UNKNOWN:
        return False
    if isinstance(value, list):
        return all(known(v) for v in value)
    if isinstance(value, dict):
        return all(known(v) for v in value.values())
    return True


def _plain(value: Any) -> Any:
    """Secrets unwrapped (Configure's ``args`` may carry them even when we accept none); integral numbers as
    ints, since a Struct carries every number as a float."""
    if isinstance(value, dict):
        if value.get(_SIG) == rpc._special_secret_sig:
            return _plain(value.get("value"))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def from_struct(struct: struct_pb2.Struct | None) -> dict[str, Any]:
    if struct is None:
        return {}
    return _plain(json_format.MessageToDict(struct))


def to_struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


@dataclass(frozen=True)
class Urn:
    """``urn:pulumi:<stack>::<project>::<type>::<name>``: the stack is the lab, the name labels errors."""

    stack: str
    project: str
    type: str
    name: str

    @classmethod
    def parse(cls, urn: str) -> Urn:
        head, sep, rest = urn.partition("::")
        parts = rest.split("::", 2)
        if not sep or not head.startswith("urn:pulumi:") or len(parts) != 3:
            raise ValueError(f"not a Pulumi URN: {urn!r}")
        project, qualified_type, name = parts
        return cls(head.removeprefix("urn:pulumi:"), project, qualified_type.rsplit("$", 1)[-1], name)
