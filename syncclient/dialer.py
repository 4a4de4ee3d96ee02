"""Where the client connects: the next configured address, each of its IPs
in turn (one just left for being stale last, one a probe found in sync
first), and the search for another replica in sync."""

from __future__ import annotations

import asyncio
import random
import ssl
from dataclasses import dataclass

from syncclient.addresses import AddressRotation, Resolver
from syncclient.probe import Probe
from syncproto import Limits

# (host, ip, port) of a replica.
Target = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class DialOptions:
    """TLS (context and the name to verify, default the host), and how long a
    connect or a probe's answer may take."""

    ssl_context: ssl.SSLContext | None = None
    server_name: str | None = None
    connect_timeout: float = 5.0


class Dialer:
    """Chooses and connects to replicas.  `next()` names the host to try;
    `connect()` opens it; `find_in_sync()` looks for another replica that
    says it is in sync; `move_to()` makes the next connection go there."""

    def __init__(
        self,
        rotation: AddressRotation,
        resolver: Resolver,
        rng: random.Random,
        options: DialOptions,
    ) -> None:
        self._rotation = rotation
        self._resolver = resolver
        self._rng = rng
        self.options = options
        self._avoid: str | None = None  # an IP just left for being stale
        self._prefer: Target | None = None  # a replica a probe found in sync

    def next(self) -> tuple[str, int]:
        """The host and port to connect to next."""
        if self._prefer is not None:
            return self._prefer[0], self._prefer[2]
        return self._rotation.next()

    def move_to(self, found: Target, leaving_ip: str) -> None:
        """Connect to `found` next; try `leaving_ip` last."""
        self._avoid = leaving_ip
        self._prefer = found

    async def connect(
        self, host: str, port: int
    ) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
        """Try every address of `host` (shuffled; one just left for being
        stale goes last, one found in sync first) until one connects.
        Raises OSError (or TimeoutError) if none does."""
        ips = await self._resolver(host, port, self._rng)
        if self._avoid is not None and len(ips) > 1 and self._avoid in ips:
            ips.remove(self._avoid)
            ips.append(self._avoid)  # only if every other address fails
        preferred = self._prefer[1] if self._prefer is not None else None
        if preferred in ips:
            ips.remove(preferred)
            ips.insert(0, preferred)
        self._avoid = self._prefer = None
        opts = self.options
        last_error: OSError | None = None
        for ip in ips:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        ip,
                        port,
                        ssl=opts.ssl_context,
                        server_hostname=(opts.server_name or host) if opts.ssl_context else None,
                        limit=1 << 20,
                    ),
                    opts.connect_timeout,
                )
                return ip, reader, writer
            except OSError as exc:
                last_error = exc
        raise last_error or OSError(f"{host} has no addresses")

    async def find_in_sync(
        self, current: tuple[str, int], *, node: str, revision: int, digest: str, limits: Limits
    ) -> Target | None:
        """Another replica (every address of every configured endpoint but
        `current`, an (ip, port)) that says it is in sync, or None."""
        candidates: list[Target] = []
        for host, port in self._rotation.all():
            try:
                ips = await self._resolver(host, port, self._rng)
            except OSError:
                continue
            candidates += [(host, ip, port) for ip in ips if (ip, port) != current]
        probe = Probe(
            node=node,
            revision=revision,
            digest=digest,
            limits=limits,
            answer_within=self.options.connect_timeout,
            ssl_context=self.options.ssl_context,
            server_name=self.options.server_name,
        )
        return await probe.first_in_sync(dict.fromkeys(candidates))
