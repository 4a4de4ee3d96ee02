"""Compact IP networks: what the calculation keeps per endpoint, pool and block.

`ipaddress` networks carry a `__dict__`, cached properties and address
objects: several hundred bytes each, and parsing one costs microseconds on
the path every endpoint takes.  A `Net` is a tuple of the canonical text (the
form the kernel and the IP sets use), the family, the network as an integer
and the prefix length.

`parse_net` reads exactly what `ipaddress.ip_network(text, strict=False)`
reads, with two refusals of ours: an address zone (`fd00::1%eth0`, which
Calico and nft do not accept) and a non-string.  Canonical text, the common
case, is read without `ipaddress`: IPv4 by a pattern, IPv6 written in hex
groups by the C library (`inet_pton` reads those as `ipaddress` does, and
`inet_ntop` writes the canonical form `ipaddress` writes, bar the dotted
forms, which are left to it); everything else goes through `ipaddress`,
which decides.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import NamedTuple

# Canonical IPv4 (no leading zeros, prefix 0-32 written without one): the
# fast path.  Anything else is left to `ipaddress`, which decides.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_V4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(3[0-2]|[12][0-9]|[0-9]))?\Z")

_V6_PREFIX = re.compile(r"(12[0-8]|1[01][0-9]|[1-9][0-9]|[0-9])\Z")
_V6_HEX = re.compile(r"[0-9a-fA-F:]+\Z")
_V6_HOSTS = [(1 << (128 - p)) - 1 for p in range(129)]

_MAX_PREFIX = {4: 32, 6: 128}


class Net(NamedTuple):
    """An IP network with its host bits cleared.  Compare and hash as values;
    `text` is canonical (`10.0.0.1/32`, `fd00::/64`)."""

    text: str
    version: int
    value: int  # the network address as an integer
    prefixlen: int

    def __str__(self) -> str:
        return self.text

    @property
    def max_prefixlen(self) -> int:
        """32 or 128."""
        return _MAX_PREFIX[self.version]

    @property
    def address(self) -> str:
        """The network address alone, as text (`10.0.0.1`)."""
        return self.text.partition("/")[0]

    @property
    def single(self) -> bool:
        """True for a single address (/32, /128)."""
        return self.prefixlen == _MAX_PREFIX[self.version]

    def within(self, outer: Net) -> bool:
        """This network lies inside `outer` (False across families)."""
        if self.version != outer.version or self.prefixlen < outer.prefixlen:
            return False
        shift = _MAX_PREFIX[self.version] - outer.prefixlen
        return self.value >> shift == outer.value >> shift

    def contains_address(self, value: int, version: int) -> bool:
        """The address `value` (an integer of IPv`version`) is in this network."""
        shift = _MAX_PREFIX[self.version] - self.prefixlen
        return version == self.version and value >> shift == self.value >> shift


def parse_net(text: object) -> Net | None:
    """`text` as a network (host bits dropped), or None if it is not one."""
    if not isinstance(text, str) or "%" in text:
        return None
    m = _V4.match(text)
    if m is not None:
        a, b, c, d, plen = m.groups()
        value = int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)
        prefix = 32 if plen is None else int(plen)
        mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
        if value & ~mask == 0:
            return Net(text if plen is not None else f"{text}/32", 4, value, prefix)
    if ":" in text and (net := _hex_v6(text)) is not None:
        return net
    try:
        # Straight to the family: ip_network tries IPv4 first, and the
        # exception it raises for every IPv6 text costs more than the parse.
        if ":" in text:
            return from_ipaddress(ipaddress.IPv6Network(text, strict=False))
        return from_ipaddress(ipaddress.IPv4Network(text, strict=False))
    except ValueError:
        return None


def _hex_v6(text: str) -> Net | None:
    """`text` as a network if it is IPv6 in hex groups with a prefix written
    without leading zeros (None: let `ipaddress` decide)."""
    addr, slash, plen = text.partition("/")
    if _V6_HEX.match(addr) is None or (slash and _V6_PREFIX.match(plen) is None):
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, addr)
    except OSError:
        return None
    prefix = int(plen) if slash else 128
    value = int.from_bytes(packed, "big")
    host = value & _V6_HOSTS[prefix]
    if host:
        value ^= host
        packed = value.to_bytes(16, "big")
    canonical = socket.inet_ntop(socket.AF_INET6, packed)
    if "." in canonical:
        return None
    return Net(f"{canonical}/{prefix}", 6, value, prefix)


def from_ipaddress(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Net:
    """The `Net` equal to an `ipaddress` network."""
    return Net(str(net), net.version, int(net.network_address), net.prefixlen)


def address_value(text: str) -> tuple[int, int] | None:
    """(integer, version) of a bare address, or None if `text` is not one."""
    net = parse_net(text)
    if net is None or "/" in text or not net.single:
        return None
    return net.value, net.version
