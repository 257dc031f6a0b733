"""The pinned pulumi-alicloud SDK as the plugin's schema: its version, and per type token the argument and
output names (Python ↔ wire), and which arguments it requires.

Reading them from the SDK installed beside the plugin (rather than from a copy) keeps the plugin true to what
programs send: every input the SDK can send is known, every output the SDK resolves is returned.

What is read is kept in ``<venv>/share/acklab/pulumi_alicloud-<version>-names.json`` (``names_file``): importing
the SDK's modules costs the plugin ~0.1 s at its first Check of a kind (``ecs.Instance`` alone ~70 ms), and the
engine starts the plugin anew for every preview and twice per ``pulumi up``. The file names the SDK and Pulumi SDK
versions it was read from (a file for others is read anew); a name missing from it is read from the SDK and added.
``python -m acklab.provider.sdk`` writes it anew with every resource the plugin implements (the set-up runs it).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from threading import Lock
from typing import Any

from pulumi import _types

from netns.kernel.files import write_atomic

PACKAGE = "alicloud"


@cache
def version() -> str:
    """The plugin version the SDK asks the engine for: its ``pulumi-plugin.json`` (what the language host reads)."""
    # Found, not imported: the engine's first call (GetPluginInfo) asks for it while the plugin is still starting,
    # and importing the SDK (with the Pulumi runtime under it) then would take ~0.1 s, twice per `pulumi up`.
    spec = importlib.util.find_spec("pulumi_alicloud")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pulumi_alicloud (the pinned SDK) is not installed beside the plugin")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return json.loads((folder / "pulumi-plugin.json").read_text())["version"]


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


# --- the names file -------------------------------------------------------------------------------------------
NAMES_FORMAT = 1  # raise it when what an entry holds changes: files of another format are read anew
_names_lock = Lock()


def names_file() -> Path:
    """Where the names read from the installed SDK are kept: in the environment that holds the SDK."""
    return Path(sys.prefix) / "share" / "acklab" / f"pulumi_alicloud-{version()}-names.json"


_entries: dict[str, Any] | None = None  # the file's entries once read (under the lock: one dict per process)


def _header() -> dict[str, Any]:
    """What the names depend on: the SDK's version and the Pulumi SDK's (whose helpers turn Python names into wire
    names); a file written for others is read anew."""
    return {"format": NAMES_FORMAT, "sdk": version(), "pulumi": importlib.metadata.version("pulumi")}


def _names() -> dict[str, Any]:
    """The names file's entries (empty when it is missing, unreadable or written for another SDK or format)."""
    global _entries
    with _names_lock:
        if _entries is None:
            try:
                data = json.loads(names_file().read_text())
            except (OSError, ValueError):
                data = {}
            _entries = data.get("entries", {}) if {k: data.get(k) for k in _header()} == _header() else {}
        return _entries


def _forget() -> None:
    """Read the file again at the next use (tests; ``main``)."""
    global _entries
    with _names_lock:
        _entries = None


def _remembered(key: str, read: Callable[[], Any]) -> Any:
    """The entry ``key`` of the names file, read from the SDK (and added to the file) when it has none."""
    entries = _names()
    if key not in entries:
        value = read()
        with _names_lock:
            entries[key] = value
            _save(entries)
    return entries[key]


def _save(entries: dict[str, Any]) -> None:
    """Write the whole file anew, atomically, in the SDK's own order (a reader gets the names in the order the SDK
    declares them, as when it reads the SDK). Plugins writing at once may each drop the other's newest entry; it is
    read again next time. A file that cannot be written only costs time."""
    with contextlib.suppress(OSError):
        write_atomic(names_file(), json.dumps({**_header(), "entries": entries}))


# --- resources and types ---------------------------------------------------------------------------------------
def _read_resource(token: str) -> dict[str, Any]:
    module_name, class_name = _module_and_class(token)
    module = _import(module_name)
    resource_cls, args_cls = getattr(module, class_name), getattr(module, f"{class_name}Args")
    # The SDK's Args class takes its required arguments without a default (the resource raises
    # "Missing required property" for them): the same set the schema's requiredInputs lists.
    params = inspect.signature(args_cls.__init__).parameters.values()
    return {"inputs": _types.input_type_py_to_pulumi_names(args_cls),
            "outputs": _types.resource_py_to_pulumi_names(resource_cls),
            "required": [p.name for p in params if p.default is inspect.Parameter.empty and p.name != "__self__"]}


@cache
def resource_schema(token: str) -> Schema:
    names = _remembered(f"resource {token}", lambda: _read_resource(token))
    inputs, outputs = dict(names["inputs"]), dict(names["outputs"])
    wire_to_py = {wire: py for py, wire in {**outputs, **inputs}.items()}
    return Schema(token, inputs, outputs, tuple(names["required"]), wire_to_py)


@cache
def output_type_names(module_name: str, class_name: str) -> dict[str, str]:
    """Python → wire names of an output type of the SDK (a data source's result, or an item of it)."""
    return _remembered(f"output {module_name}.{class_name}", lambda: _types._py_to_pulumi_names_from_py_properties(
        getattr(_import(module_name), class_name)))


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
    return _remembered(f"input {module_name}.{class_name}", lambda: _types.input_type_py_to_pulumi_names(
        getattr(_import(module_name), class_name)))


def nested_to_python(module_name: str, class_name: str, value: dict) -> dict:
    """A nested argument (e.g. one of slb.BackendServer's ``backend_servers``) as the engine sends it (wire names)
    in Python names, without the keys left out (None)."""
    to_py = {wire_name: py for py, wire_name in input_type_names(module_name, class_name).items()}
    return {to_py.get(k, k): v for k, v in value.items() if v is not None}


def main() -> None:
    """Write the names file anew with every resource the plugin implements (the set-up runs this): entries of an
    older reading go. Data sources' result types and nested argument types are added at their first use."""
    from acklab.provider.server import implemented

    global _entries
    with _names_lock:
        _entries = {}
    for f in (resource_schema, output_type_names, input_type_names):
        f.cache_clear()
    for token in sorted(implemented().kinds):
        resource_schema(token)
    print(f"{names_file()}: {len(_names())} entries")


if __name__ == "__main__":
    main()
