"""The pinned pulumi-alicloud SDK as the plugin's schema: its version, and per type token the argument and
output names (Python ↔ wire), and which arguments it requires.

Reading them from the SDK installed beside the plugin (rather than from a copy) keeps the plugin true to what
programs send: every input the SDK can send is known, every output the SDK resolves is returned.
"""

from __future__ import annotations

import importlib
import inspect
import json
import warnings
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from pulumi import _types

PACKAGE = "alicloud"


@cache
def version() -> str:
    """The plugin version the SDK asks the engine for: its ``pulumi-plugin.json`` (what the language host reads)."""
    meta = json.loads(resources.files("pulumi_alicloud").joinpath("pulumi-plugin.json").read_text())
    return meta["version"]


@dataclass(frozen=True)
class Schema:
    """One resource of the SDK: Python names → wire (schema) names."""

    token: str
    inputs: dict[str, str]
    outputs: dict[str, str]  # every property of the resource's state, inputs included
    required: tuple[str, ...]
    wire_to_py: dict[str, str] = field(default_factory=dict)

    def to_python(self, values: dict) -> dict:
        return {self.wire_to_py.get(key, key): value for key, value in values.items()}

    def to_wire(self, values: dict) -> dict:
        names = {**self.outputs, **self.inputs}
        return {names.get(key, key): value for key, value in values.items()}


def _import(module_name: str):
    # The SDK's modules announce their deprecated resources when imported: not the program's concern here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(module_name)


def _module_and_class(token: str) -> tuple[str, str]:
    """``alicloud:vpc/network:Network`` → (``pulumi_alicloud.vpc.network``, ``Network``)."""
    package, module, name = token.split(":")
    if package != PACKAGE:
        raise ValueError(f"not a token of package {PACKAGE}: {token}")
    folder, _, file = module.partition("/")
    parts = ["pulumi_alicloud"] + ([] if folder == "index" else [folder])
    return ".".join([*parts, snake(file)]), name


def snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


@cache
def resource_schema(token: str) -> Schema:
    module_name, class_name = _module_and_class(token)
    module = _import(module_name)
    resource_cls, args_cls = getattr(module, class_name), getattr(module, f"{class_name}Args")
    inputs = _types.input_type_py_to_pulumi_names(args_cls)
    outputs = _types.resource_py_to_pulumi_names(resource_cls)
    # The SDK's Args class takes its required arguments without a default (the resource raises
    # "Missing required property" for them): the same set the schema's requiredInputs lists.
    params = inspect.signature(args_cls.__init__).parameters.values()
    required = tuple(p.name for p in params if p.default is inspect.Parameter.empty and p.name != "__self__")
    wire_to_py = {wire: py for py, wire in {**outputs, **inputs}.items()}
    return Schema(token, inputs, outputs, required, wire_to_py)


@cache
def output_type_names(module_name: str, class_name: str) -> dict[str, str]:
    """Python → wire names of an output type of the SDK (a data source's result, or an item of it)."""
    cls = getattr(_import(module_name), class_name)
    return _types._py_to_pulumi_names_from_py_properties(cls)


def wire(module_name: str, class_name: str, values: dict) -> dict:
    names = output_type_names(module_name, class_name)
    return {names.get(key, key): value for key, value in values.items()}


def result(module_name: str, class_name: str, values: dict) -> dict:
    """A data source's answer (or one item of it) in wire names, with every field the SDK declares present (None
    where the lab has no value): the SDK reads each field of its result type."""
    names = output_type_names(module_name, class_name)
    unknown = set(values) - set(names)
    if unknown:  # a typo here would silently be an extra key the SDK never reads
        raise KeyError(f"{class_name} has no fields {sorted(unknown)}")
    return {wire_name: values.get(py) for py, wire_name in names.items()}


@cache
def input_type_names(module_name: str, class_name: str) -> dict[str, str]:
    """Python → wire names of an input type of the SDK (an item of a list argument, a nested block)."""
    return _types.input_type_py_to_pulumi_names(getattr(_import(module_name), class_name))


def nested_to_python(module_name: str, class_name: str, value: dict) -> dict:
    """A nested argument (e.g. one of slb.BackendServer's ``backend_servers``) as the engine sends it (wire names)
    in Python names, without the keys left out (None)."""
    to_py = {wire_name: py for py, wire_name in input_type_names(module_name, class_name).items()}
    return {to_py.get(k, k): v for k, v in value.items() if v is not None}
