"""Errors a person can act on: which resource, which field, what is wrong."""

from __future__ import annotations


class LabError(Exception):
    """Base of every error acklab raises on purpose."""


class ValidationError(LabError, ValueError):
    """Bad input, found before anything is created."""

    def __init__(self, resource: str, field: str, reason: str, hint: str = "") -> None:
        self.resource = resource
        self.field = field
        self.reason = reason
        self.hint = hint  # what to do about it, when that is not obvious from the reason (shown by the CLI)
        super().__init__(f"{resource}: {field}: {reason}")


class NotFoundError(LabError, LookupError):
    """A referenced cloud object does not exist on the kernel."""
