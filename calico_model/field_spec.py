"""A typed field's constraints, checked against a JSON value (used for the
FelixConfiguration table; a small schema language, not a general one)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

# A Go time.Duration as time.ParseDuration reads it.
_GO_DURATION = re.compile(r"^[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+\Z")
_GO_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# The pattern Calico's CRD puts on most FelixConfiguration durations.  Its
# `\\.` is a literal backslash, so a fraction ("1.5s") never matches: Calico
# refuses fractions in those fields, and so do we.
CRD_DURATION = r"^([0-9]+(\\.[0-9]+)?(ms|s|m|h))*$"
_IFACE_FILTER = re.compile(r"^[a-zA-Z0-9:._+-]{1,15}\Z")
_INTERFACE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}\Z")
_PROMETHEUS_HOST = re.compile(r"^[a-zA-Z0-9:._+-]{1,64}\Z")
_KEY_VALUE = re.compile(r"^\s*(\w+)=(.*)\Z", re.ASCII)
_HEALTH_NAME = re.compile(r"^[a-zA-Z0-9_ -]+\Z")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
# Constructs Python's `re` compiles and Go's RE2 refuses: lookaround,
# backreferences, atomic groups, possessive quantifiers.
_NOT_RE2 = re.compile(r"\(\?(?:[=!]|<[=!]|P=|>)|\\[1-9]|[*+?}][+]")
ROUTE_TABLE_MAX = 0xFFFFFFFF
ROUTE_TABLES_MAX = 0xFFFF


def go_duration_seconds(v: Any) -> float:
    """A Go duration string (`90s`, `1m30s`, `-1.5h`, `10ns`) in seconds;
    ValueError for anything time.ParseDuration refuses."""
    if v == "0":
        return 0.0
    if not isinstance(v, str) or not _GO_DURATION.match(v):
        raise ValueError(f"{v!r:.30} is not a duration such as 90s, 1m30s or 500ms")
    sign = -1.0 if v.startswith("-") else 1.0
    body = v.lstrip("+-")
    return sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in _GO_DURATION_PART.findall(body))


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
            if not _int(v):
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
        if k in _SPECIAL_STRINGS:
            return self._string(v) or _special(k, v)
        if k in _SPECIAL_OTHERS:
            return _special_lists(k, v)
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
        if not _int(port) or not 0 <= port <= 65535:
            return f"port {port!r:.20} is not in 0-65535"
        net = pp.get("net")
        if net not in (None, "") and _cidr_problem(net) is not None:
            return f"net {net!r:.60} is not a CIDR"
    return None


def _ip_problem(v: Any, family: int) -> str | None:
    """Why `v` is not a bare IPv`family` address (as Go's net.ParseIP reads
    it: no prefix, no zone; an IPv4-mapped IPv6 address is IPv4)."""
    try:
        addr = ipaddress.ip_address(v) if isinstance(v, str) and "%" not in v else None
    except ValueError:
        addr = None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr is None or addr.version != family:
        return f"{v!r:.60} is not an IPv{family} address"
    return None


def _cidr_problem(v: Any) -> str | None:
    """Why `v` is neither an address nor a CIDR (host bits allowed)."""
    try:
        if isinstance(v, str) and "%" not in v:
            ipaddress.ip_network(v, strict=False)
            return None
    except ValueError:
        pass
    return f"{v!r:.60} is not a CIDR or address"


def _regexp_problem(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be a string"
    if _NOT_RE2.search(v):
        return f"{v[:60]!r} uses a construct Go regular expressions lack"
    try:
        re.compile(v)
    except re.error as exc:
        return f"{v[:60]!r} is not a regular expression: {exc}"
    return None


def _strings(v: Any) -> list[str] | None:
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


def _special(k: FieldKind, v: Any) -> str | None:
    """The checks of the kinds beyond plain JSON types."""
    if k is FieldKind.IPV4 or k is FieldKind.IPV6:
        return None if v == "" else _ip_problem(v, 4 if k is FieldKind.IPV4 else 6)
    if k is FieldKind.REGEXP:
        return _regexp_problem(v)
    if k is FieldKind.INTERFACE:
        ok = isinstance(v, str) and (v in ("", "*") or _INTERFACE.match(v) is not None)
        return None if ok else f"{v!r:.30} is not an interface name or *"
    if k is FieldKind.IFACE_FILTER:
        ok = isinstance(v, str) and (v == "" or _IFACE_FILTER.match(v) is not None)
        return None if ok else f"{v!r:.30} is not an interface name or prefix (name+)"
    if k is FieldKind.PROMETHEUS_HOST:
        ok = isinstance(v, str) and (v == "" or _PROMETHEUS_HOST.match(v) is not None)
        return None if ok else f"{v!r:.70} is not a host name or address"
    if k is FieldKind.OPENSTACK_REGION:
        # It becomes part of a namespace name, "openstack-region-<region>".
        if not isinstance(v, str) or len(v) > 63 - len("openstack-region-"):
            return "must be a string of at most 46 characters"
        return None if v == "" or _DNS_LABEL.match(v) else f"{v!r} is not a DNS label"
    if k is FieldKind.KEY_VALUE_LIST:
        if not isinstance(v, str):
            return "must be a string"
        bad = [i for i in v.split(",") if i and v.strip() and not _KEY_VALUE.match(i)]
        return f"{bad[0][:40]!r} is not key=value" if bad else None
    return None


def _special_lists(k: FieldKind, v: Any) -> str | None:
    if k is FieldKind.INTERFACE_MAP:
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            return "must be an object of strings"
        bad = [n for n in v if not _INTERFACE.match(n)]
        return f"{bad[0][:30]!r} is not an interface name" if bad else None
    if k is FieldKind.HEALTH_TIMEOUTS:
        return _health_timeouts(v)
    if k is FieldKind.ROUTE_TABLE_RANGES:
        return _route_table_ranges(v)
    values = _strings(v)
    if values is None:
        return "must be a list of strings"
    if k is FieldKind.IFACE_FILTERS:
        bad = [n for n in values if not _IFACE_FILTER.match(n)]
        return f"{bad[0][:30]!r} is not an interface name or prefix (name+)" if bad else None
    problems = [p for p in map(_cidr_problem, values) if p]
    if problems:
        return problems[0]
    if k is FieldKind.IPV4_CIDRS:
        bad = [n for n in values if ipaddress.ip_network(n, strict=False).version != 4]
        return f"{bad[0][:60]!r} is not IPv4" if bad else None
    return None


def _health_timeouts(v: Any) -> str | None:
    if not isinstance(v, list):
        return "must be a list of {name, timeout}"
    for item in v:
        if not isinstance(item, dict):
            return "must be a list of {name, timeout}"
        name = item.get("name")
        if not isinstance(name, str) or not _HEALTH_NAME.match(name):
            return f"name {name!r:.40} must match {_HEALTH_NAME.pattern}"
        try:
            if go_duration_seconds(item.get("timeout")) < 0:
                return "a timeout must not be negative"
        except ValueError as exc:
            return str(exc)
    return None


def _route_table_ranges(v: Any) -> str | None:
    if not isinstance(v, list):
        return "must be a list of {min, max}"
    total = 0
    for r in v:
        lo: Any = r.get("min") if isinstance(r, dict) else None
        hi: Any = r.get("max") if isinstance(r, dict) else None
        if not (_int(lo) and _int(hi) and 1 <= lo <= hi <= ROUTE_TABLE_MAX):
            return f"each range must be {{min, max}} with 1 <= min <= max <= {ROUTE_TABLE_MAX}"
        total += hi - lo + 1
    if total > ROUTE_TABLES_MAX:
        return f"the ranges designate {total} tables, more than {ROUTE_TABLES_MAX}"
    return None


_SPECIAL_STRINGS = frozenset(
    {
        FieldKind.IPV4,
        FieldKind.IPV6,
        FieldKind.REGEXP,
        FieldKind.IFACE_FILTER,
        FieldKind.INTERFACE,
        FieldKind.KEY_VALUE_LIST,
        FieldKind.PROMETHEUS_HOST,
        FieldKind.OPENSTACK_REGION,
    }
)
_SPECIAL_OTHERS = frozenset(
    {
        FieldKind.CIDRS,
        FieldKind.IPV4_CIDRS,
        FieldKind.IFACE_FILTERS,
        FieldKind.INTERFACE_MAP,
        FieldKind.HEALTH_TIMEOUTS,
        FieldKind.ROUTE_TABLE_RANGES,
    }
)
