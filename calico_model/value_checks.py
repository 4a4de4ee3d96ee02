"""Checks of single JSON values that Calico's validator makes by code
rather than by schema: Go durations and regular expressions, addresses of
one family, CIDR lists, interface names and filters, `key=value` lists,
route table ranges, health timeouts.  Each `*_problem` returns why a value
is refused, or None."""

from __future__ import annotations

import ipaddress
import re
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
INTERFACE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}\Z")
_PROMETHEUS_HOST = re.compile(r"^[a-zA-Z0-9:._+-]{1,64}\Z")
_KEY_VALUE = re.compile(r"^\s*(\w+)=(.*)\Z", re.ASCII)
_HEALTH_NAME = re.compile(r"^[a-zA-Z0-9_ -]+\Z")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
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


def ip_problem(v: Any, family: int) -> str | None:
    """Why `v` is not a bare IPv`family` address (as Go's net.ParseIP reads
    it: no prefix, no zone; an IPv4-mapped IPv6 address is IPv4); "" is unset."""
    if v == "":
        return None
    try:
        addr = ipaddress.ip_address(v) if isinstance(v, str) and "%" not in v else None
    except ValueError:
        addr = None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr is None or addr.version != family:
        return f"{v!r:.60} is not an IPv{family} address"
    return None


def cidr_problem(v: Any) -> str | None:
    """Why `v` is neither an address nor a CIDR (host bits allowed)."""
    try:
        if isinstance(v, str) and "%" not in v:
            ipaddress.ip_network(v, strict=False)
            return None
    except ValueError:
        pass
    return f"{v!r:.60} is not a CIDR or address"


def regexp_problem(v: Any) -> str | None:
    """Why `v` is not a regular expression Go's RE2 compiles (approximated:
    Python's `re` must compile it, without the constructs RE2 lacks)."""
    if not isinstance(v, str):
        return "must be a string"
    if _NOT_RE2.search(v):
        return f"{v[:60]!r} uses a construct Go regular expressions lack"
    try:
        re.compile(v)
    except re.error as exc:
        return f"{v[:60]!r} is not a regular expression: {exc}"
    return None


def interface_problem(v: Any) -> str | None:
    """An interface name, or "*" (any)."""
    ok = isinstance(v, str) and (v in ("", "*") or INTERFACE.match(v) is not None)
    return None if ok else f"{v!r:.30} is not an interface name or *"


def iface_filter_problem(v: Any) -> str | None:
    """An interface name or prefix (`name+`, as iptables writes one)."""
    ok = isinstance(v, str) and (v == "" or _IFACE_FILTER.match(v) is not None)
    return None if ok else f"{v!r:.30} is not an interface name or prefix (name+)"


def prometheus_host_problem(v: Any) -> str | None:
    """A host name or address to listen on."""
    ok = isinstance(v, str) and (v == "" or _PROMETHEUS_HOST.match(v) is not None)
    return None if ok else f"{v!r:.70} is not a host name or address"


def openstack_region_problem(v: Any) -> str | None:
    """A DNS label that fits in a namespace name, `openstack-region-<region>`."""
    if not isinstance(v, str) or len(v) > 63 - len("openstack-region-"):
        return "must be a string of at most 46 characters"
    return None if v == "" or DNS_LABEL.match(v) else f"{v!r} is not a DNS label"


def key_value_list_problem(v: Any) -> str | None:
    """A comma-separated list of `key=value` (empty items allowed)."""
    if not isinstance(v, str):
        return "must be a string"
    bad = [i for i in v.split(",") if i and v.strip() and not _KEY_VALUE.match(i)]
    return f"{bad[0][:40]!r} is not key=value" if bad else None


def interface_map_problem(v: Any) -> str | None:
    """An object of strings keyed by interface names."""
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        return "must be an object of strings"
    bad = [n for n in v if not INTERFACE.match(n)]
    return f"{bad[0][:30]!r} is not an interface name" if bad else None


def _strings(v: Any) -> list[str] | None:
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


def iface_filters_problem(v: Any) -> str | None:
    """A list of interface names or prefixes."""
    values = _strings(v)
    if values is None:
        return "must be a list of strings"
    bad = [n for n in values if not _IFACE_FILTER.match(n)]
    return f"{bad[0][:30]!r} is not an interface name or prefix (name+)" if bad else None


def cidrs_problem(v: Any) -> str | None:
    """A list of addresses or CIDRs."""
    values = _strings(v)
    if values is None:
        return "must be a list of strings"
    return next((p for p in map(cidr_problem, values) if p), None)


def ipv4_cidrs_problem(v: Any) -> str | None:
    """A list of IPv4 addresses or CIDRs."""
    if (problem := cidrs_problem(v)) is not None:
        return problem
    bad = [n for n in v if ipaddress.ip_network(n, strict=False).version != 4]
    return f"{bad[0][:60]!r} is not IPv4" if bad else None


def health_timeouts_problem(v: Any) -> str | None:
    """A list of {name, timeout}: a name of [a-zA-Z0-9_ -], a duration not negative."""
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


def route_table_ranges_problem(v: Any) -> str | None:
    """A list of {min, max} table ranges, 1 <= min <= max <= 2^32-1, at most
    65535 tables in all."""
    if not isinstance(v, list):
        return "must be a list of {min, max}"
    total = 0
    for r in v:
        lo: Any = r.get("min") if isinstance(r, dict) else None
        hi: Any = r.get("max") if isinstance(r, dict) else None
        if not (is_int(lo) and is_int(hi) and 1 <= lo <= hi <= ROUTE_TABLE_MAX):
            return f"each range must be {{min, max}} with 1 <= min <= max <= {ROUTE_TABLE_MAX}"
        total += hi - lo + 1
    if total > ROUTE_TABLES_MAX:
        return f"the ranges designate {total} tables, more than {ROUTE_TABLES_MAX}"
    return None


def is_int(v: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)
