"""host:port, read one way everywhere: listen addresses, server lists, the
replicas' side ports.

Accepted: `host:port`, `[ipv6]:port`, and, where the caller gives a default
port, `host`, `[ipv6]` or a bare IPv6 address (`fd00::1`).  A bare IPv6
address followed by a port is ambiguous (`fd00::1:5473` is itself an IPv6
address) and is read as an address; write `[fd00::1]:5473`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runtime.errors import BadAddress

__all__ = ["BadAddress", "HostPort", "parse_hostport", "parse_hostports"]


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host and port to listen on or connect to."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_hostport(
    text: str,
    *,
    default_port: int | None = None,
    default_host: str | None = None,
    port_zero: bool = False,
) -> HostPort:
    """One address.  Without `default_port` the port is required; without
    `default_host` the host is; `port_zero` allows port 0 (any free port,
    for listening).  Raises BadAddress."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise BadAddress(f"{text!r}: missing ']'")
        if rest and not rest.startswith(":"):
            raise BadAddress(f"{text!r}: expected ':' after ']'")
        port_s = rest[1:]
    elif text.count(":") == 1:
        host, _, port_s = text.partition(":")
    else:
        host, port_s = text, ""
    if not host:
        if default_host is None:
            raise BadAddress(f"{text!r}: no host")
        host = default_host
    if not port_s:
        if default_port is None:
            raise BadAddress(f"{text!r}: expected HOST:PORT ([HOST]:PORT for IPv6)")
        return HostPort(host, default_port)
    if not port_s.isascii() or not port_s.isdigit() or len(port_s) > 5:
        raise BadAddress(f"{text!r}: port {port_s!r} is not a number")
    port = int(port_s)
    if not (0 if port_zero else 1) <= port <= 65535:
        raise BadAddress(f"{text!r}: port {port} out of range")
    return HostPort(host, port)


def parse_hostports(
    items: str | Iterable[str],
    *,
    default_port: int | None = None,
    port_zero: bool = False,
) -> list[HostPort]:
    """A comma-separated list (or a sequence) of addresses, each with a
    host, read by `parse_hostport`; empty items are skipped, an empty list
    refused.  Raises BadAddress."""
    parts = items.split(",") if isinstance(items, str) else list(items)
    out = [
        parse_hostport(p, default_port=default_port, port_zero=port_zero)
        for p in parts
        if p.strip()
    ]
    if not out:
        raise BadAddress("no address given")
    return out
