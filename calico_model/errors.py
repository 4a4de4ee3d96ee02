"""Errors raised by the Calico domain model.

CalicoModelError              base of everything below
├── SelectorError             a label selector that does not parse (names the position)
└── InvalidValue              a datastore value that is not a valid Calico resource
                              (carries a short `reason` from `Reason`, used as a
                              metric label, and a `detail` naming the field)

Both describe data that came from outside (the datastore, a policy author), so
both are also `snapshot.errors.RemoteError`: the server skips such a value and
counts it; the agent treats a rule it cannot honour as matching nothing.
"""

from __future__ import annotations

from enum import StrEnum

from snapshot.errors import RemoteError


class Reason(StrEnum):
    """Why a datastore value is invalid: the `typha_invalid_values` label."""

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    TOO_DEEP = "too_deep"
    UNPROCESSABLE = "unprocessable"
    KEY_NOT_UTF8 = "key_not_utf8"
    BAD_KEY = "bad_key"
    KIND_MISMATCH = "kind_mismatch"
    NAME_MISMATCH = "name_mismatch"
    NAMESPACE_MISMATCH = "namespace_mismatch"
    BAD_METADATA = "bad_metadata"
    BAD_NAME = "bad_name"
    BAD_LABEL = "bad_label"
    BAD_SPEC = "bad_spec"
    BAD_FIELD = "bad_field"
    UNKNOWN_FIELD = "unknown_field"
    BAD_CIDR = "bad_cidr"
    BLOCK_CIDR_MISMATCH = "block_cidr_mismatch"
    BAD_SELECTOR = "bad_selector"
    BAD_RULE = "bad_rule"
    BAD_ACTION = "bad_action"
    BAD_PROTOCOL = "bad_protocol"
    BAD_PORT = "bad_port"
    BAD_ICMP = "bad_icmp"
    BAD_IP_VERSION = "bad_ip_version"


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

    def __init__(self, reason: Reason | str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
