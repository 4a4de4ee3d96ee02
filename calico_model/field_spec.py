"""A typed field's constraints, checked against a JSON value (used for the
FelixConfiguration table; a small schema language, not a general one)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from calico_model import value_checks as C
from calico_model.value_checks import go_duration_seconds


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
    ROUTE_TABLE_RANGES = "route_table_ranges"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    CIDRS = "cidrs"
    IPV4_CIDRS = "ipv4_cidrs"
    REGEXP = "regexp"
    IFACE_FILTER = "iface_filter"
    IFACE_FILTERS = "iface_filters"
    INTERFACE = "interface"
    INTERFACE_MAP = "interface_map"
    KEY_VALUE_LIST = "key_value_list"
    PROMETHEUS_HOST = "prometheus_host"
    OPENSTACK_REGION = "openstack_region"
    HEALTH_TIMEOUTS = "health_timeouts"
    ANY = "any"


def port_problem(v: Any) -> str | None:
    """Why `v` is not a port or port range `a:b` (1-65535), or None."""
    if C.is_int(v):
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
    # False where Calico's Go type is a pointer: "" is then a value it
    # checks (and an enumeration refuses), not an absent field.
    blank: bool = True

    def problem(self, v: Any) -> str | None:
        """Why `v` is not acceptable here, or None."""
        k = self.kind
        if v is None:
            return None
        if k is FieldKind.BOOL:
            return None if isinstance(v, bool) else "must be true or false"
        if k is FieldKind.INT:
            if not C.is_int(v):
                return "must be an integer"
            if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
                return f"{v} is out of range [{self.lo}, {self.hi}]"
            return None
        if k is FieldKind.DURATION:
            try:
                go_duration_seconds(v)
            except ValueError as exc:
                return str(exc)
            return self._string(v)
        if k is FieldKind.STRING:
            return self._string(v)
        if k in _STRING_CHECKS:
            return self._string(v) or _STRING_CHECKS[k](v)
        if k in _CHECKS:
            return _CHECKS[k](v)
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
            if (
                isinstance(lo, int)
                and isinstance(hi, int)
                and C.is_int(lo)
                and 1 <= lo <= hi <= 250
            ):
                return None
            return "must be {min, max} with 1 <= min <= max <= 250"
        return None

    def _string(self, v: Any) -> str | None:
        if not isinstance(v, str):
            return "must be a string"
        if self.max_length is not None and len(v) > self.max_length:
            return f"longer than {self.max_length} characters"
        if self.enum and (v or not self.blank):
            allowed = [e.lower() for e in self.enum] if self.nocase else list(self.enum)
            if (v.lower() if self.nocase else v) not in allowed:
                return f"{v[:40]!r} is not one of {', '.join(self.enum)}"
        if self.pattern and not re.match(self.pattern, v):
            return f"{v[:40]!r} does not match {self.pattern}"
        return None


def _protoports(v: Any) -> str | None:
    """Failsafe ports: a protocol, a port 0-65535 (a uint16, so 0 too) and
    optionally a net."""
    if not isinstance(v, list):
        return "must be a list of {protocol, port}"
    for pp in v:
        if not isinstance(pp, dict):
            return "must be a list of {protocol, port}"
        if pp.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
            return f"protocol {pp.get('protocol')!r} must be TCP, UDP or SCTP"
        port = pp.get("port", 0)
        if not C.is_int(port) or not 0 <= port <= 65535:
            return f"port {port!r:.20} is not in 0-65535"
        net = pp.get("net")
        if net not in (None, "") and C.cidr_problem(net) is not None:
            return f"net {net!r:.60} is not a CIDR"
    return None


# The kinds Calico checks by code: strings (length, enumeration and pattern
# apply first), then the others.
_STRING_CHECKS: dict[FieldKind, Callable[[Any], str | None]] = {
    FieldKind.IPV4: lambda v: C.ip_problem(v, 4),
    FieldKind.IPV6: lambda v: C.ip_problem(v, 6),
    FieldKind.REGEXP: C.regexp_problem,
    FieldKind.IFACE_FILTER: C.iface_filter_problem,
    FieldKind.INTERFACE: C.interface_problem,
    FieldKind.KEY_VALUE_LIST: C.key_value_list_problem,
    FieldKind.PROMETHEUS_HOST: C.prometheus_host_problem,
    FieldKind.OPENSTACK_REGION: C.openstack_region_problem,
}
_CHECKS: dict[FieldKind, Callable[[Any], str | None]] = {
    FieldKind.CIDRS: C.cidrs_problem,
    FieldKind.IPV4_CIDRS: C.ipv4_cidrs_problem,
    FieldKind.IFACE_FILTERS: C.iface_filters_problem,
    FieldKind.INTERFACE_MAP: C.interface_map_problem,
    FieldKind.HEALTH_TIMEOUTS: C.health_timeouts_problem,
    FieldKind.ROUTE_TABLE_RANGES: C.route_table_ranges_problem,
}
