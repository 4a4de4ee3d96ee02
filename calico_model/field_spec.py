"""A typed field's constraints, checked against a JSON value (used for the
FelixConfiguration table; a small schema language, not a general one)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))*\Z")


class FieldKind(Enum):
    """The JSON shapes a field may take."""

    BOOL = "bool"
    INT = "int"
    DURATION = "duration"
    STRING = "string"
    STRINGS = "strings"
    STRING_MAP = "string_map"
    PORT = "port"
    PORTS = "ports"
    PROTOPORTS = "protoports"
    ROUTE_TABLE_RANGE = "route_table_range"
    ANY = "any"


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def port_problem(v: Any) -> str | None:
    """Why `v` is not a port or port range `a:b` (1-65535), or None."""
    if _int(v):
        return None if 1 <= v <= 65535 else f"port {v} is not in 1-65535"
    if not isinstance(v, str):
        return f"{v!r} is not a port"
    lo, sep, hi = v.partition(":")
    nums = [lo, hi] if sep else [lo]
    if not all(0 < len(n) <= 5 and n.isascii() and n.isdigit() for n in nums):
        return f"{v[:20]!r} is not a port or port range"
    a, b = int(lo), int(hi if sep else lo)
    if not 1 <= a <= b <= 65535:
        return f"port range {v!r} is not within 1-65535 with start <= end"
    return None


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What one field accepts."""

    kind: FieldKind
    enum: tuple[str, ...] = ()
    nocase: bool = False
    lo: int | None = None
    hi: int | None = None
    pattern: str = ""
    max_length: int | None = None

    def problem(self, v: Any) -> str | None:
        """Why `v` is not acceptable here, or None."""
        k = self.kind
        if v is None:
            return None
        if k is FieldKind.BOOL:
            return None if isinstance(v, bool) else "must be true or false"
        if k is FieldKind.INT:
            if not _int(v):
                return "must be an integer"
            if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
                return f"{v} is out of range [{self.lo}, {self.hi}]"
            return None
        if k is FieldKind.DURATION:
            ok = isinstance(v, str) and DURATION.match(v) is not None
            return None if ok else "must be a duration such as 90s, 1m30s or 500ms"
        if k is FieldKind.STRING:
            return self._string(v)
        if k is FieldKind.STRINGS:
            ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
            return None if ok else "must be a list of strings"
        if k is FieldKind.STRING_MAP:
            ok = isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
            return None if ok else "must be an object of strings"
        if k is FieldKind.PORT:
            return port_problem(v)
        if k is FieldKind.PORTS:
            if not isinstance(v, list) or len(v) > 7:
                return "must be a list of at most 7 ports or ranges"
            return next((p for p in map(port_problem, v) if p), None)
        if k is FieldKind.PROTOPORTS:
            return _protoports(v)
        if k is FieldKind.ROUTE_TABLE_RANGE:
            lo, hi = (v.get("min"), v.get("max")) if isinstance(v, dict) else (None, None)
            if isinstance(lo, int) and isinstance(hi, int) and _int(lo) and 1 <= lo <= hi <= 250:
                return None
            return "must be {min, max} with 1 <= min <= max <= 250"
        return None

    def _string(self, v: Any) -> str | None:
        if not isinstance(v, str):
            return "must be a string"
        if self.max_length is not None and len(v) > self.max_length:
            return f"longer than {self.max_length} characters"
        if self.enum and v:
            allowed = [e.lower() for e in self.enum] if self.nocase else list(self.enum)
            if (v.lower() if self.nocase else v) not in allowed:
                return f"{v[:40]!r} is not one of {', '.join(self.enum)}"
        if self.pattern and not re.match(self.pattern, v):
            return f"{v[:40]!r} does not match {self.pattern}"
        return None


def _protoports(v: Any) -> str | None:
    if not isinstance(v, list):
        return "must be a list of {protocol, port}"
    for pp in v:
        if not isinstance(pp, dict):
            return "must be a list of {protocol, port}"
        if pp.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
            return f"protocol {pp.get('protocol')!r} must be TCP, UDP or SCTP"
        if (problem := port_problem(pp.get("port"))) is not None:
            return problem
    return None
