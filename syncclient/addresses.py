"""Server address lists: parse, shuffle, and rotate with jittered backoff
(the client's reconnect policy over runtime.backoff)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable, Sequence

from runtime.backoff import Backoff
from runtime.hostport import BadAddress, parse_hostports
from syncclient.errors import ConfigError

DEFAULT_PORT = 5473


def parse_addresses(
    addresses: str | Sequence[str], *, listen: bool = False
) -> list[tuple[str, int]]:
    """'h:p,h:p' or a sequence of 'h:p' -> [(host, port)]; a missing port is
    5473.  With `listen`, port 0 (any free port) is allowed.  Raises
    ConfigError."""
    try:
        found = parse_hostports(addresses, default_port=DEFAULT_PORT, port_zero=listen)
    except BadAddress as exc:
        what = "listen address" if listen else "server address"
        raise ConfigError(f"bad {what} {exc}") from None
    return [(a.host, a.port) for a in found]


class ReconnectBackoff(Backoff):
    """The client's reconnect delays: they grow with every connection that
    ends, and start again from `initial` only after a connection that stayed
    in sync for `healthy_after` seconds.  (A server that accepts the hello
    and then fails must not be hammered at the initial rate.)"""

    def __init__(
        self,
        initial: float,
        maximum: float,
        healthy_after: float,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(initial, maximum, rng=rng)
        self.healthy_after = healthy_after

    def after_connection(self, in_sync_since: float | None, now: float) -> float:
        """The delay before the next attempt, given when the connection that
        just ended reached sync (None: it never did) and the time now."""
        if in_sync_since is not None and now - in_sync_since >= self.healthy_after:
            self.reset()
        return self.delay()


class AddressRotation:
    """Yields addresses in a per-client shuffled order, round and round."""

    def __init__(self, addresses: list[tuple[str, int]], rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._addresses = list(addresses)
        self._rng.shuffle(self._addresses)
        self._i = 0

    def all(self) -> list[tuple[str, int]]:
        """Every (host, port), in this client's order."""
        return list(self._addresses)

    def next(self) -> tuple[str, int]:
        """The next (host, port) to try."""
        addr = self._addresses[self._i % len(self._addresses)]
        self._i += 1
        return addr


# (host, port, rng) -> every address of host, in the order to try them.
Resolver = Callable[[str, int, random.Random], Awaitable[list[str]]]


async def resolve_all(host: str, port: int, rng: random.Random) -> list[str]:
    """Every address of `host`, shuffled: a headless Service's DNS name has
    one A record per replica, and a fleet that always took the first would
    all land on one replica."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
    rng.shuffle(ips)
    return ips
