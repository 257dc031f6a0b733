"""What every resource kind of the plugin shares: the call's context, Check, Diff and the shape of the state.

A kind works with the SDK's Python argument names (``cidr_block``); the server translates from and to the wire
names (``cidrBlock``) with the SDK's own tables (``sdk.Schema``). Check sees one resource's inputs only, so it
validates what those decide (a block's syntax, a port range); whatever needs another resource (a vSwitch
inside its VPC, a free address) is validated by the realization at create time, under the lab's lock, before
anything is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from acklab.provider import catalog, records, sdk
from acklab.provider.wire import known
from netns.model.errors import ValidationError
from netns.model.names import REFERENCE_FIELDS, check_reference


@dataclass(frozen=True)
class Context:
    """What one call knows besides the inputs: the lab (the stack), the resource's name, the provider's region."""

    lab: str
    name: str
    region: str
    label: str  # how errors name the resource, e.g. "vpc.Network 'vpc'"
    urn: str = ""  # the resource's URN: warnings through the engine's log name it


@dataclass(frozen=True)
class Failure:
    field: str  # the SDK's Python argument name
    reason: str


@dataclass(frozen=True)
class Diff:
    changed: tuple[str, ...]
    replaces: tuple[str, ...]


def problems(*checks: Callable[[], object]) -> list[ValidationError]:
    """Run independent checks; every one that fails is reported (not only the first)."""
    found = []
    for check in checks:
        try:
            check()
        except ValidationError as exc:
            found.append(exc)
    return found


def not_one_of(resource: str, field: str, value: Any, allowed: tuple[Any, ...]) -> None:
    raise ValidationError(resource, field, f"{value!r} is not one of {', '.join(map(str, allowed))}")


def given(value: Any) -> bool:
    """An argument the program set (the SDK may send an empty string or list for one it did not)."""
    return value not in (None, "", [])


def check_zone(ctx: Context, field: str, zone: str) -> None:
    """Alibaba refuses a vSwitch or an instance in a zone of another region."""
    problem = catalog.zone_problem(ctx.region, zone)
    if problem:
        raise ValidationError(ctx.label, field, problem)


def same(old: Any, new: Any) -> bool:
    """Equal inputs; an empty list or map is the same as none (the SDK sends either for "not given")."""
    return old == new or (old in (None, [], {}) and new in (None, [], {}))


def now(minutes_only: bool = False) -> str:
    """A creation time as Alibaba's APIs write it (ECS writes minutes only)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ" if minutes_only else "%Y-%m-%dT%H:%M:%SZ")


def first(*values: Any) -> Any:
    """The first value that is set: for the SDK's deprecated aliases (``name`` for ``vpc_name``, ...)."""
    return next((v for v in values if v is not None), None)


class Kind:
    """One resource type of the SDK. Subclasses set the class attributes and implement the operations."""

    token: ClassVar[str]
    label: ClassVar[str]  # the SDK's module and class, as errors name it ("vpc.Network")
    # Inputs whose change the lab can only apply by making the object anew.
    replace_on: ClassVar[tuple[str, ...]] = ()
    # Inputs the provider fills in when the program leaves them out (an allocated address, an alias of
    # another input): leaving them out again is no change.
    computed: ClassVar[tuple[str, ...]] = ()
    # The SDK's defaults: filled in by Check, so they are inputs like the program's own.
    defaults: ClassVar[dict[str, Any]] = {}
    # Inputs the SDK leaves optional but the lab cannot do without → why.
    lab_required: ClassVar[dict[str, str]] = {}
    # Inputs that would change the network in a way the lab does not realize: refused rather than ignored.
    # field → (a predicate on the value that says it asks for the unsupported thing, why).
    unsupported: ClassVar[dict[str, tuple[Callable[[Any], bool], str]]] = {}
    # Inputs the lab turns into kernel objects (the rest is kept as state only): what docs/provider.md lists.
    realized: ClassVar[tuple[str, ...]] = ()
    # Inputs that a read fills in but a program importing the object should not give back (they would be refused
    # or are aliases of another input): left out of the inputs a Read returns for ``pulumi import``.
    not_imported: ClassVar[tuple[str, ...]] = ()

    @property
    def schema(self) -> sdk.Schema:
        return sdk.resource_schema(self.token)

    # --- Check ---------------------------------------------------------------------------------------------
    def check(self, ctx: Context, news: dict[str, Any]) -> tuple[dict[str, Any], list[Failure]]:
        inputs = {**{k: v for k, v in self.defaults.items() if news.get(k) is None}, **news}
        inputs = self.fill(inputs)
        failures = [Failure(f, "is required") for f in self.schema.required if inputs.get(f) is None]
        failures += [Failure(f, f"is required by acklab: {why}") for f, why in self.lab_required.items()
                     if inputs.get(f) is None]
        failures += [Failure(f, f"{inputs[f]!r}: {why}") for f, (asks, why) in self.unsupported.items()
                     if inputs.get(f) is not None and known(inputs[f]) and asks(inputs[f])]
        failures += [Failure(e.field, e.reason) for e in self.references(ctx, inputs)]
        failures += [Failure(e.field, e.reason) for e in self.validate(ctx, inputs)]
        return inputs, failures

    def fill(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Defaults that depend on other inputs (subclasses)."""
        return inputs

    def references(self, ctx: Context, inputs: dict[str, Any]) -> list[ValidationError]:
        """Inputs naming another object take acklab ids of the right kind: a vSwitch's or an ENI's id names a Linux
        interface, so anything else would fail in the kernel (see netns/model/names.py)."""
        checks = []
        for field, kind in REFERENCE_FIELDS.items():
            value = inputs.get(field) if field in self.schema.inputs else None
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and known(item):
                    checks.append(lambda f=field, i=item, k=kind: check_reference(ctx.label, f, i, k))
        return problems(*checks)

    def validate(self, ctx: Context, inputs: dict[str, Any]) -> Iterable[ValidationError]:
        """Checks on this resource's own inputs (values still unknown in a preview are skipped)."""
        return ()

    # --- Diff ----------------------------------------------------------------------------------------------
    def diff(self, olds: dict[str, Any], news: dict[str, Any]) -> Diff:
        """``olds`` is the recorded state (outputs), ``news`` the checked inputs."""
        changed = []
        for key in self.schema.inputs:
            new = news.get(key)
            if new is None and key in self.computed:
                continue
            if not same(olds.get(key), new):  # an unknown value in a preview differs from any old one
                changed.append(key)
        return Diff(tuple(changed), tuple(k for k in changed if k in self.replace_on))

    # --- state ---------------------------------------------------------------------------------------------
    def state(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """Every output the SDK declares is present (None when the lab has no value for it)."""
        return {**dict.fromkeys(self.schema.outputs), **outputs}

    def inputs_of(self, state: dict[str, Any]) -> dict[str, Any]:
        """The inputs a program would give to make ``state``: what ``pulumi import`` records (and shows as code)."""
        return {k: v for k, v in state.items()
                if k in self.schema.inputs and k not in self.not_imported and v is not None}

    def known_state(self, lab: str, id_: str, state: dict[str, Any]) -> dict[str, Any]:
        """What a read starts from besides the kernel: the recorded state in a refresh; in an import (no state yet)
        the plugin's record of the object over the SDK's defaults, so that a program importing it with the same
        arguments as made it finds no difference (the engine refuses an ``import_`` whose inputs differ)."""
        return state if state else self.fill({**self.defaults, **records.get(lab, id_)})

    def merged(self, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        """The state after an in-place update: the new inputs over the old state; computed values stay. An input
        the program no longer gives is gone (else the next diff would find it changed again, and an update that
        applies the inputs, such as a listener's, would keep it)."""
        outputs = {k: v for k, v in olds.items() if k not in self.schema.inputs or k in self.computed}
        kept = {k: v for k, v in news.items() if not (v is None and k in self.computed)}
        return self.state({**outputs, **kept})

    # --- operations (subclasses) ---------------------------------------------------------------------------
    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def read(self, ctx: Context, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        """The state as the kernel holds it, or None when the object is gone."""
        raise NotImplementedError

    def update(self, ctx: Context, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        """In-place changes only touch what the lab keeps as state (names, tags, billing): the kernel is unchanged."""
        return self.merged(olds, news)

    def delete(self, ctx: Context, id_: str, state: dict[str, Any]) -> None:
        raise NotImplementedError
