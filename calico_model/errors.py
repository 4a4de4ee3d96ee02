"""Errors raised by the Calico domain model.

CalicoModelError              base of everything below
├── SelectorError             a label selector that does not parse (names the position)
└── InvalidValue              a datastore value that is not a valid Calico resource
                              (carries a short `reason`, used as a metric label)

Both describe data that came from outside (the datastore, a policy author), so
both are also `snapshot.errors.RemoteError`: the server skips such a value and
counts it; the agent treats a rule it cannot honour as matching nothing.
"""

from __future__ import annotations

from snapshot.errors import RemoteError


class CalicoModelError(RemoteError):
    """Base class for domain model errors."""


class SelectorError(CalicoModelError):
    """A Calico label selector that does not parse."""

    def __init__(self, text: str, position: int, message: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"bad selector {shown!r} at {position}: {message}")
        self.text = text
        self.position = position
        self.message = message


class InvalidValue(CalicoModelError):
    """A value the server must not serve: `reason` is a short label, `detail`
    says what is wrong, for the log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
