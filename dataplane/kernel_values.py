"""The only way a datastore value reaches the kernel: one renderer per type.

Every interface name, address, network, port, protocol and log text that
ends up in an nftables statement or a netlink request goes through one of
these functions, which parse it into a typed value and print that value
back in canonical form.  Anything else raises `UnsafeValue`: a string that
is not exactly what its type allows never reaches nft's parser, so a value
can neither inject statements (`x" : accept }; flush table ...`) nor make
a whole transaction fail (an address with a zone, a name with a newline).
"""

from __future__ import annotations

import ipaddress
import re
import socket

from dataplane.errors import UnsafeValue

# Linux accepts almost any byte in an interface name; Calico (and this
# agent) only these, which also need no quoting anywhere.
_IFNAME = re.compile(r"[A-Za-z0-9_.\-]{1,15}")
_LOG_TEXT = re.compile(r"[A-Za-z0-9 _.,:/@=+\-]*")
# nftables keeps 127 characters of a log prefix; Felix's end with ": ".
LOG_TEXT_MAX = 125


def ifname(text: object) -> str:
    """An interface name: 1-15 of `A-Z a-z 0-9 _ . -`, not `.` or `..`."""
    if not isinstance(text, str) or not _IFNAME.fullmatch(text) or text in (".", ".."):
        raise UnsafeValue(f"interface name {text!r:.40} is not 1-15 of [A-Za-z0-9_.-]")
    return text


def address(text: object) -> str:
    """A single IPv4 or IPv6 address, canonical (`fd00::1`, as nft prints it
    back), no zone.  The C parser, strict (no zone, no octal, no spaces),
    and ten times quicker than `ipaddress` on the path every IP set member
    takes."""
    if not isinstance(text, str):
        raise UnsafeValue(f"address {text!r:.60} is not a string")
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        raise UnsafeValue(
            f"address {text!r:.60} is not an address (zones are not allowed)"
        ) from None


def network(text: object) -> str:
    """A network (`10.0.0.0/8`, host bits dropped; a bare address is /32 or
    /128), canonical, no zone."""
    if not isinstance(text, str) or "%" in text:
        raise UnsafeValue(f"network {text!r:.60} is not a CIDR (zones are not allowed)")
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise UnsafeValue(f"network {text!r:.60} is not a CIDR") from None


def family_of(text: str) -> int:
    """4 or 6, for an address or network already rendered by this module."""
    return 6 if ":" in text else 4


def _port_number(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise UnsafeValue(f"port {text!r:.20} is not a number")
    n = int(text, 10)  # "010" is 10, as Calico reads it; nft would read it as octal
    if not 0 <= n <= 65535:
        raise UnsafeValue(f"port {n} is outside 0-65535")
    return n


def port_range(text: object) -> str:
    """A port (`"80"`, `80`) or an inclusive range (`"8080:8090"`), printed
    in decimal as nft reads it (`80`, `8080-8090`)."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        raise UnsafeValue(f"port {text!r:.20} is not a port or range")
    lo_text, sep, hi_text = text.partition(":")
    lo = _port_number(lo_text)
    if not sep:
        return str(lo)
    hi = _port_number(hi_text)
    if hi < lo:
        raise UnsafeValue(f"port range {text!r:.20} ends before it starts")
    return str(lo) if lo == hi else f"{lo}-{hi}"


def byte(value: object, what: str) -> str:
    """A number 0-255 (a protocol, an ICMP type or code), in decimal."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
        raise UnsafeValue(f"{what} {value!r:.20} is not 0-255")
    return str(value)


def log_text(text: str) -> str:
    """Text for a log prefix: only characters that need no escaping, the
    rest replaced by `_`, at most LOG_TEXT_MAX characters."""
    text = text[:LOG_TEXT_MAX]
    if _LOG_TEXT.fullmatch(text):
        return text
    return "".join(c if _LOG_TEXT.fullmatch(c) else "_" for c in text)
