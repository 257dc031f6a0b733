"""What every acklab dynamic provider shares: the lab, input diffs, early (pre-create) validation.

Resource classes validate what they can see as plain values when the program builds them, so a bad
argument stops ``pulumi up`` during its preview, before anything exists. The providers validate again on
the resolved values (``check``) and against the kernel (``create``), where other resources are visible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, DiffResult, ResourceProvider, UpdateResult
from pulumi.output import Unknown

from netns.model.errors import ValidationError
from netns.model.names import check_lab


def current_lab() -> str:
    """The lab is the Pulumi stack: its name becomes the mark on every kernel object."""
    return check_lab(pulumi.get_stack())


def is_known(value: Any) -> bool:
    """True for a plain value: not an Output still to be resolved, nor the placeholder a provider's
    ``check`` sees for it during a preview."""
    return not isinstance(value, pulumi.Output | Unknown)


# Plain facts about resources built by this program, keyed by their `id` Output, so that a resource
# referring to another by `xxx_id=other.id` can be validated against it before anything is created.
_facts: dict[int, dict[str, Any]] = {}


def remember(output: pulumi.Output, **facts: Any) -> None:
    _facts[id(output)] = facts


def recall(value: Any) -> dict[str, Any] | None:
    return _facts.get(id(value))


def all_facts(kind: str) -> Iterable[dict[str, Any]]:
    return (f for f in _facts.values() if f.get("kind") == kind)


class LabProvider(ResourceProvider):
    """Base provider: subclasses list their inputs and which ones force a replacement."""

    inputs: tuple[str, ...] = ()
    replace_on: tuple[str, ...] = ()
    # Inputs the provider fills in when the program leaves them out (e.g. an allocated private_ip):
    # leaving them out again is no change.
    computed_when_absent: tuple[str, ...] = ()
    validators: ClassVar[dict[str, Callable[[str, Any], Any]]] = {}
    kind = "resource"

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        resource = f"{self.kind} {news.get('__name', '')!r}".strip()
        for field, validate in self.validators.items():
            value = news.get(field)
            if value is None:
                continue
            try:
                validate(resource, value)
            except ValidationError as exc:
                failures.append(CheckFailure(field, exc.reason))
        return CheckResult(news, failures)

    def changed_inputs(self, olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
        changed = []
        for key in self.inputs:
            new = news.get(key)
            if new is None and key in self.computed_when_absent:
                continue
            if olds.get(key) != new:
                changed.append(key)
        return changed

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = self.changed_inputs(olds, news)
        return DiffResult(
            changes=bool(changed),
            replaces=[key for key in changed if key in self.replace_on],
            delete_before_replace=True,
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """In-place updates only touch descriptive fields (names, tags): the kernel is unchanged."""
        outs = dict(olds)
        outs.update({key: news.get(key) for key in self.inputs if key not in self.computed_when_absent
                     or news.get(key) is not None})
        return UpdateResult(outs)
