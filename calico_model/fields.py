"""Field checks shared by every kind's validation.  Each raises InvalidValue
with a reason from `Reason` and a detail that starts with the field's path
(`spec.ingress[0].destination.ports[1]: ...`)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, TypeVar

from calico_model.addresses import Net, parse_net
from calico_model.errors import InvalidValue, Reason, SelectorError
from calico_model.field_spec import port_problem
from calico_model.protocols import protocol_number
from calico_model.selector import Selector
from calico_model.selector import parse as parse_selector
from calico_model.value_checks import DNS_LABEL as DNS_LABEL  # the validators take these here
from calico_model.value_checks import INTERFACE as INTERFACE
from calico_model.value_checks import ip_problem
from calico_model.value_checks import is_int as is_int

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
SUBDOMAIN = re.compile(f"^{_LABEL}(\\.{_LABEL})*\\Z")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")
_PORT_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}\Z")
_ENDPOINT_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DIGITS = re.compile(r"^[0-9]+\Z")
_RANGE = re.compile(r"^[0-9]+:[0-9]+\Z")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")


def fail(reason: Reason, path: str, message: str) -> InvalidValue:
    """The error for field `path`."""
    return InvalidValue(reason, f"{path}: {message}")


def obj(v: Any, path: str, reason: Reason = Reason.BAD_FIELD) -> dict[str, Any]:
    """`v` as an object; None counts as empty."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise fail(reason, path, "must be an object")
    return v


def items(v: Any, path: str, reason: Reason = Reason.BAD_FIELD) -> list[Any]:
    """`v` as a list; None counts as empty."""
    if v is None:
        return []
    if not isinstance(v, list):
        raise fail(reason, path, "must be a list")
    return v


def string(v: Any, path: str) -> str:
    """`v` as a string; None counts as empty."""
    if v is None:
        return ""
    if not isinstance(v, str):
        raise fail(Reason.BAD_FIELD, path, "must be a string")
    return v


# Strings already found valid, per check: names, label keys and values repeat
# across thousands of endpoints (node, namespace, profile, `app`), and every
# endpoint is checked on the server and again on each agent.  Bounded: a set
# that fills up is emptied and refills with what is current.
_KNOWN_CAP = 1 << 15


def _remember(known: set[str], v: str) -> None:
    if len(known) >= _KNOWN_CAP:
        known.clear()
    known.add(v)


_known_names: dict[tuple[re.Pattern[str], int], set[str]] = {}
_known_label_keys: set[str] = set()
_known_label_values: set[str] = set()
_known_port_names: set[str] = set()


def name(v: Any, path: str, pattern: re.Pattern[str] = SUBDOMAIN, max_len: int = 253) -> None:
    """A resource name: lower-case DNS subdomain (or the stricter `pattern`)."""
    known = _known_names.get((pattern, max_len))
    if known is None:
        known = _known_names[(pattern, max_len)] = set()
    if v.__class__ is str and v in known:
        return
    _name(v, path, pattern, max_len)
    _remember(known, v)


def _name(v: Any, path: str, pattern: re.Pattern[str], max_len: int) -> None:
    if not isinstance(v, str) or not v:
        raise fail(Reason.BAD_NAME, path, "must be a non-empty string")
    if len(v) > max_len:
        raise fail(Reason.BAD_NAME, path, f"longer than {max_len} characters")
    if not pattern.match(v):
        shown = v[:60]
        raise fail(Reason.BAD_NAME, path, f"{shown!r} does not match {pattern.pattern}")


def label_key(k: str, path: str) -> None:
    """A Kubernetes qualified name: `[prefix/]name`, name at most 63 characters."""
    if (problem := qualified_name_problem(k)) is not None:
        raise fail(Reason.BAD_LABEL, path, f"label {problem}")


def qualified_name_problem(k: str) -> str | None:
    """Why `k` is not a Kubernetes qualified name, or None."""
    prefix, sep, nm = k.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not SUBDOMAIN.match(prefix)):
        return f"key prefix {prefix[:60]!r} is not a DNS subdomain"
    if not nm or len(nm) > 63 or not _QUALIFIED_NAME.match(nm):
        return f"key {k[:80]!r} is not a qualified name"
    return None


def labels(v: Any, path: str) -> None:
    """A label map: qualified-name keys, values of at most 63 characters."""
    keys, values = _known_label_keys, _known_label_values
    for k, val in obj(v, path, Reason.BAD_LABEL).items():
        if k not in keys:
            label_key(k, f"{path}[{k[:60]!r}]")
            _remember(keys, k)
        if val.__class__ is str and val in values:
            continue
        if not isinstance(val, str) or len(val) > 63 or not _LABEL_VALUE.match(val):
            raise fail(Reason.BAD_LABEL, f"{path}[{k[:60]!r}]", f"bad label value {val!r:.80}")
        _remember(values, val)


# Kubernetes' limit on the summed size of an object's annotation keys and values.
ANNOTATIONS_MAX_BYTES = 256 * 1024


def annotation_map(v: Any, path: str) -> None:
    """An annotation map: keys that are qualified names once lower-cased (as
    Calico checks them), string values, at most 256 KiB of keys and values."""
    total = 0
    for k, val in obj(v, path, Reason.BAD_METADATA).items():
        where = f"{path}[{k[:60]!r}]"
        if not isinstance(val, str):
            raise fail(Reason.BAD_METADATA, where, "must be a string")
        if (problem := qualified_name_problem(k.lower())) is not None:
            raise fail(Reason.BAD_METADATA, where, f"annotation {problem}")
        total += len(k.encode()) + len(val.encode())
    if total > ANNOTATIONS_MAX_BYTES:
        raise fail(Reason.BAD_METADATA, path, f"{total} bytes, more than {ANNOTATIONS_MAX_BYTES}")


T = TypeVar("T")


def _address(parse: Callable[[str], T], v: Any, path: str) -> T:
    if not isinstance(v, str):
        raise fail(Reason.BAD_CIDR, path, "must be a string")
    if "%" in v:
        # Python reads `fd00::1%eth0` as an address with a zone; Calico does
        # not, and nft refuses it: one such value would fail every transaction.
        raise fail(Reason.BAD_CIDR, path, f"{v[:60]!r}: an address zone (%...) is not allowed")
    try:
        return parse(v)
    except ValueError as exc:
        raise fail(Reason.BAD_CIDR, path, str(exc)) from None


def cidr(
    v: Any, path: str, *, strict: bool = False
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR (or a bare address); `strict`: host bits must be zero."""
    return _address(lambda text: ipaddress.ip_network(text, strict=strict), v, path)


def net(v: Any, path: str) -> Net:
    """A CIDR or a bare address, as its network (host bits dropped): what
    `cidr` accepts, read by `parse_net` (which reads exactly that text; `cidr`
    only words a refusal)."""
    n = parse_net(v)
    if n is None:
        cidr(v, path)
        raise fail(Reason.BAD_CIDR, path, f"{v!r:.60} is not a network")
    return n


def ip(v: Any, path: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A bare IP address."""
    return _address(ipaddress.ip_address, v, path)


def ip_of(v: Any, path: str, family: int) -> None:
    """A bare address of IPv`family`, as Go's net.ParseIP reads it."""
    if (problem := ip_problem(v, family)) is not None:
        raise fail(Reason.BAD_CIDR, path, problem)


def masked(v: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or a CIDR with no host bits (Calico's `net`)."""
    try:
        return _address(lambda text: ipaddress.ip_network(text, strict=True), v, path)
    except InvalidValue:
        cidr(v, path)  # a well-formed CIDR gets the clearer message below
        raise fail(Reason.BAD_CIDR, path, f"{v!r:.60} has host bits set") from None


def interface_cidr(v: Any, path: str) -> Net:
    """An address with its prefix length (`192.168.0.7/24`), as its subnet.
    `ipaddress.ip_interface` reads the same text as `parse_net` (it splits
    and parses as `ip_network(strict=False)` does), so parse_net decides and
    ip_interface only words the refusal."""
    n = parse_net(v)
    if n is None:
        _address(ipaddress.ip_interface, v, path)
        raise fail(Reason.BAD_CIDR, path, f"{v!r:.60} is not an address")
    return n


def selector(v: Any, path: str) -> Selector | None:
    """A selector that parses, parsed; None when absent or empty (Calico
    reads an empty selector as not given)."""
    if v is None:
        return None
    if not isinstance(v, str):
        raise fail(Reason.BAD_SELECTOR, path, "must be a string")
    try:
        parsed = parse_selector(v)
    except SelectorError as exc:
        raise fail(Reason.BAD_SELECTOR, path, str(exc)) from None
    return parsed if v else None


def protocol(v: Any, path: str) -> None:
    """A protocol name Calico knows, or a number 1-255 (as a number or, as
    Calico's int-or-string reads it, a string of digits)."""
    if v is None or protocol_number(v) is not None:
        return
    raise fail(
        Reason.BAD_PROTOCOL,
        path,
        f"{v!r:.40} is not TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255",
    )


def port(v: Any, path: str) -> bool:
    """A port (1-65535), a range `a:b`, or a port name; True if it is a name."""
    if isinstance(v, str) and not _DIGITS.match(v) and not _RANGE.match(v):
        if not _PORT_NAME.match(v):
            raise fail(Reason.BAD_PORT, path, f"{v[:20]!r} is not a port, range or port name")
        return True
    if (problem := port_problem(v)) is not None:
        raise fail(Reason.BAD_PORT, path, problem)
    return False


def mac(v: Any, path: str) -> None:
    """A MAC address in colon form (`ee:ee:ee:ee:ee:ee`); absent or "" is unset."""
    if v is None or v == "":
        return
    if not isinstance(v, str) or not _MAC.match(v):
        raise fail(Reason.BAD_FIELD, path, f"{v!r:.30} is not a MAC address")


def endpoint_port_name(v: Any, path: str) -> None:
    """A Kubernetes port name: at most 15 characters of [a-z0-9-], a letter
    among them, no leading, trailing or doubled '-'."""
    if v.__class__ is str and v in _known_port_names:
        return
    ok = (
        isinstance(v, str)
        and 0 < len(v) <= 15
        and _ENDPOINT_PORT_NAME.match(v) is not None
        and any(c.isalpha() for c in v)
        and "--" not in v
    )
    if not ok:
        raise fail(Reason.BAD_PORT, path, f"{v!r:.20} is not a valid port name")
    _remember(_known_port_names, v)
