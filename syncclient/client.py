"""SyncClient: the asyncio client that keeps a local replica in sync with typha.

    async with SyncClient("typha:5473", node="node-1") as client:
        await client.wait_in_sync()
        client.state  # Mapping[key, JSON object]

It reconnects by itself (shuffled addresses, jittered exponential backoff
that resets only after a connection has been healthy for a while), offers its
revision and digest in the hello so a server can resume, and checks the digest
the server sends after every snapshot, delta and progress message.

It watches its server too: a server silent past the ping deadline is dropped,
and one that reports it has lost the datastore for `upstream_stale_after`
seconds is left for another replica (a resume there, so cheap).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from syncclient.addresses import (
    AddressRotation,
    ReconnectBackoff,
    Resolver,
    parse_addresses,
    resolve_all,
)
from syncclient.applied_reports import DEFAULT_INTERVAL, AppliedReports
from syncclient.client_stats import ClientStats
from syncclient.connector import Connector, Listener, SessionOptions
from syncclient.dialer import Dialer, DialOptions
from syncclient.errors import NotConnected
from syncclient.replica import Replica
from syncclient.session import (
    StalePolicy,
)
from syncproto import DatastoreStatus, Limits
from syncproto.connection import CLIENT_CAPS

log = logging.getLogger(__name__)


# The agent pings a quiet server every 5 s and gives it 5 s to answer, so a
# frozen or partitioned replica is noticed within 10 s.
CLIENT_LIMITS = Limits(ping_interval=5.0, pong_timeout=5.0)
DEFAULT_MAX_SNAPSHOT_BYTES = 1 << 30


class SyncClient:
    """Keeps a verified replica of a typha server's state.

    Use as an async context manager (or `start()` / `close()`), then
    `await wait_in_sync()`.  `state`, `revision` and `digest` are read-only
    views; listeners see every applied change.  `upstream_in_sync` says
    whether the serving replica itself is in sync with the datastore.
    """

    def __init__(
        self,
        addresses: str | Sequence[str],
        *,
        node: str,
        limits: Limits = CLIENT_LIMITS,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        connect_timeout: float = 5.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        tick_interval: float = 1.0,
        healthy_after: float = 10.0,
        upstream_stale_after: float = 10.0,
        max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
        replica: Replica | None = None,
        resolver: Resolver | None = None,
        rng: random.Random | None = None,
        applied_interval: float = DEFAULT_INTERVAL,
        caps: frozenset[str] = CLIENT_CAPS,
    ) -> None:
        rng = rng or random.Random()
        self.node = node
        self._replica = replica if replica is not None else Replica()
        self.stats = ClientStats()
        self._conn = Connector(
            self._replica,
            node=node,
            dialer=Dialer(
                AddressRotation(parse_addresses(addresses), rng),
                resolver or resolve_all,
                rng,
                DialOptions(ssl_context, server_name, connect_timeout),
            ),
            backoff=ReconnectBackoff(backoff_initial, backoff_max, healthy_after, rng),
            stale=StalePolicy(upstream_stale_after),
            # `caps`: what the hello advertises (a leaf replica: REPLICA_CAPS).
            options=SessionOptions(limits, caps, max_snapshot_bytes, tick_interval),
            # The interval is the server's if it names one.
            reports=AppliedReports(applied_interval),
            stats=self.stats,
        )
        self._task: asyncio.Task[None] | None = None
        self._closed_event = asyncio.Event()

    # -- public surface ------------------------------------------------------

    @property
    def in_sync(self) -> bool:
        """The replica holds a complete, verified state from a live server."""
        return self._conn.in_sync.is_set()

    @property
    def connected(self) -> bool:
        """A server has answered our hello on the current connection."""
        return self._conn.link is not None and self._conn.link.session.connected

    @property
    def upstream_in_sync(self) -> bool:
        """The serving replica says it is in sync with the datastore (a
        server without the datastore-status capability is taken at its
        word that it serves current state)."""
        session = self._conn.link.session if self._conn.link is not None else None
        if session is None or not session.connected:
            return False
        return session.upstream in (None, DatastoreStatus.IN_SYNC)

    @property
    def upstream_status(self) -> str:
        """The serving replica's datastore status, "unknown" if it does not
        say, "disconnected" between connections."""
        session = self._conn.link.session if self._conn.link is not None else None
        if session is None or not session.connected:
            return "disconnected"
        return session.upstream.value if session.upstream is not None else "unknown"

    @property
    def server(self) -> str:
        """The replica of the current (or last) connection, as host(ip):port."""
        return self._conn.server

    @property
    def reconnect_backoff(self) -> float:
        """Upper bound of the next reconnect delay."""
        return self._conn.backoff.upper

    @property
    def revision(self) -> int:
        """The datastore revision the replica is at (0 before the first sync)."""
        return self._replica.revision

    @property
    def digest(self) -> str:
        """The replica's state digest (32 hex digits)."""
        return self._replica.digest

    @property
    def state(self) -> Mapping[str, Any]:
        """The replica: key -> JSON object, read-only, decoded on access
        (ValuesNotKept if the client was given a hash-only replica)."""
        return self._replica.state

    @property
    def key_count(self) -> int:
        """The number of keys the replica holds (with or without values)."""
        return len(self._replica)

    def add_listener(self, listener: Listener) -> None:
        """`listener(changes, revision)` runs after every applied snapshot,
        delta or progress message (then `changes` is empty: only the revision
        moved), in the event loop; it must not block."""
        self._conn.listeners.append(listener)

    @property
    def applied_interval(self) -> float:
        """Seconds between APPLIED reports, at most: the serving replica's
        choice, or the client's default."""
        return self._conn.reports.interval

    def report_applied(self, revision: int) -> None:
        """Tell the serving replica that the dataplane has applied every change
        up to `revision`.  Call it after each applied batch: reports are
        coalesced to at most one frame per reporting interval (the server's,
        or `applied_interval`; the first after a quiet spell goes at once),
        repeated to each new replica after a reconnect, and sent only to
        replicas that take them."""
        if self._conn.reports.applied(revision):
            self._conn.schedule_applied()

    async def wait_in_sync(self) -> None:
        """Wait until the replica holds a complete, verified state.  Bound it
        with `asyncio.timeout()` if you must.  Raises NotConnected if the
        client is closed, before or while waiting."""
        if self._conn.closed:
            raise NotConnected("client is closed")
        if self._conn.in_sync.is_set():
            return
        synced = asyncio.ensure_future(self._conn.in_sync.wait())
        closed = asyncio.ensure_future(self._closed_event.wait())
        try:
            await asyncio.wait((synced, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            synced.cancel()
            closed.cancel()
        if self._conn.closed:
            raise NotConnected("client was closed while waiting for sync")

    async def start(self) -> None:
        """Start connecting in the background; `close()` must follow."""
        if self._task is None:
            self._task = asyncio.create_task(self._conn.run(), name=f"sync-client-{self.node}")

    async def close(self) -> None:
        """Stop for good: disconnect, and wake every `wait_in_sync()` with
        NotConnected."""
        self._conn.stop_reports()
        self._conn.closed = True
        self._closed_event.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._conn.in_sync.clear()

    async def __aenter__(self) -> SyncClient:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
