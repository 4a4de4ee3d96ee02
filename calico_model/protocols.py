"""Calico's protocol names and their IANA numbers."""

from __future__ import annotations

from typing import Any

PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPv6": 58, "SCTP": 132, "UDPLite": 136}
# Lower-case names, as nftables and the named-port set members spell them.
PROTOCOL_NAMES = {n: name.lower() for name, n in PROTOCOL_NUMBERS.items()}


def protocol_number(value: Any) -> int | None:
    """A Calico protocol (name or number 1-255) as its number, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 1 <= value <= 255 else None
    if isinstance(value, str):
        if value in PROTOCOL_NUMBERS:
            return PROTOCOL_NUMBERS[value]
        if value.isascii() and value.isdigit() and 1 <= int(value) <= 255:
            return int(value)
    return None
