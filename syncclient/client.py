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
import contextlib
import logging
import random
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from runtime.histogram import Histogram
from runtime.ratelimit import RateLimitedLog
from syncclient.addresses import (
    AddressRotation,
    ReconnectBackoff,
    Resolver,
    parse_addresses,
    resolve_all,
)
from syncclient.applied_reports import DEFAULT_INTERVAL, AppliedReports, server_interval
from syncclient.errors import DigestMismatch, NotConnected, ServerMisbehaved
from syncclient.probe import Probe
from syncclient.replica import Change, Replica
from syncclient.session import (
    Applied,
    ClientSession,
    SessionStats,
    StalePolicy,
    StaleUpstream,
)
from syncproto import DatastoreStatus, Limits
from syncproto.connection import CLIENT_CAPS
from syncproto.errors import ConnectionTimeout, ProtocolError

log = logging.getLogger(__name__)

# Called after each applied snapshot, delta or progress (no changes): (changes, revision).
Listener = Callable[[Sequence[Change], int], None]


@dataclass(slots=True)
class ClientStats(SessionStats):
    """Counters of one client over its lifetime (its sessions count into the
    inherited fields)."""

    connects: int = 0
    connect_failures: int = 0
    digest_mismatches: int = 0
    protocol_errors: int = 0
    internal_errors: int = 0
    stale_upstream_moves: int = 0
    stale_stays: int = 0  # stale replica kept: no other was in sync
    bytes_received: int = 0
    applied_reports: int = 0  # APPLIED frames sent
    ping_rtt: Histogram = field(default_factory=Histogram)


# The agent pings a quiet server every 5 s and gives it 5 s to answer, so a
# frozen or partitioned replica is noticed within 10 s.
CLIENT_LIMITS = Limits(ping_interval=5.0, pong_timeout=5.0)
DEFAULT_MAX_SNAPSHOT_BYTES = 1 << 30
PROBE_POLL = 0.1  # seconds between looks at a running probe for a replica in sync


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
        self._rng = rng or random.Random()
        self._caps = caps  # what the hello advertises (a leaf replica: REPLICA_CAPS)
        # APPLIED reports; the interval is the server's if it names one.
        self._applied_default = applied_interval
        self._reports = AppliedReports(applied_interval)
        self._applied_timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._resolver = resolver or resolve_all
        self._rotation = AddressRotation(parse_addresses(addresses), self._rng)
        self.node = node
        self._limits = limits
        self._ssl = ssl_context
        self._server_name = server_name
        self._connect_timeout = connect_timeout
        self._backoff = ReconnectBackoff(backoff_initial, backoff_max, healthy_after, self._rng)
        self._tick = tick_interval
        self._stale = StalePolicy(upstream_stale_after)
        self._max_snapshot_bytes = max_snapshot_bytes
        self._avoid: str | None = None  # an address just left for being stale
        # (host, ip, port) a probe found in sync: the next connection's target.
        self._prefer: tuple[str, str, int] | None = None
        self._session: ClientSession | None = None
        self._logged_upstream: DatastoreStatus | None = None
        self._rl = RateLimitedLog(log)
        self._replica = replica if replica is not None else Replica()
        self._listeners: list[Listener] = []
        self._in_sync = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._closed_event = asyncio.Event()
        self.server: str = ""
        self.stats = ClientStats()

    # -- public surface ------------------------------------------------------

    @property
    def in_sync(self) -> bool:
        """The replica holds a complete, verified state from a live server."""
        return self._in_sync.is_set()

    @property
    def connected(self) -> bool:
        """A server has answered our hello on the current connection."""
        return self._session is not None and self._session.connected

    @property
    def upstream_in_sync(self) -> bool:
        """The serving replica says it is in sync with the datastore (a
        server without the datastore-status capability is taken at its
        word that it serves current state)."""
        session = self._session
        if session is None or not session.connected:
            return False
        return session.upstream in (None, DatastoreStatus.IN_SYNC)

    @property
    def upstream_status(self) -> str:
        """The serving replica's datastore status, "unknown" if it does not
        say, "disconnected" between connections."""
        session = self._session
        if session is None or not session.connected:
            return "disconnected"
        return session.upstream.value if session.upstream is not None else "unknown"

    @property
    def reconnect_backoff(self) -> float:
        """Upper bound of the next reconnect delay."""
        return self._backoff.upper

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
        self._listeners.append(listener)

    @property
    def applied_interval(self) -> float:
        """Seconds between APPLIED reports, at most: the serving replica's
        choice, or the client's default."""
        return self._reports.interval

    def report_applied(self, revision: int) -> None:
        """Tell the serving replica that the dataplane has applied every change
        up to `revision`.  Call it after each applied batch: reports are
        coalesced to at most one frame per reporting interval (the server's,
        or `applied_interval`; the first after a quiet spell goes at once),
        repeated to each new replica after a reconnect, and sent only to
        replicas that take them."""
        if self._reports.applied(revision):
            self._schedule_applied()

    def _schedule_applied(self) -> None:
        if self._applied_timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._reports.due(loop.time())
        if delay is not None:
            self._applied_timer = loop.call_later(delay, self._send_applied)

    def _send_applied(self) -> None:
        self._applied_timer = None
        session, writer = self._session, self._writer
        if session is None or writer is None or writer.is_closing() or session.closed:
            return
        revision = self._reports.pending()
        if revision is not None and session.core.send_applied(revision):
            self._reports.sent(revision, asyncio.get_running_loop().time())
            self.stats.applied_reports += 1
            writer.write(session.data_to_send())

    async def wait_in_sync(self) -> None:
        """Wait until the replica holds a complete, verified state.  Bound it
        with `asyncio.timeout()` if you must.  Raises NotConnected if the
        client is closed, before or while waiting."""
        if self._closed:
            raise NotConnected("client is closed")
        if self._in_sync.is_set():
            return
        synced = asyncio.ensure_future(self._in_sync.wait())
        closed = asyncio.ensure_future(self._closed_event.wait())
        try:
            await asyncio.wait((synced, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            synced.cancel()
            closed.cancel()
        if self._closed:
            raise NotConnected("client was closed while waiting for sync")

    async def start(self) -> None:
        """Start connecting in the background; `close()` must follow."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sync-client-{self.node}")

    async def close(self) -> None:
        """Stop for good: disconnect, and wake every `wait_in_sync()` with
        NotConnected."""
        if self._applied_timer is not None:
            self._applied_timer.cancel()
            self._applied_timer = None
        self._closed = True
        self._closed_event.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._in_sync.clear()

    async def __aenter__(self) -> SyncClient:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- connection loop -------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            if self._prefer is not None:
                host, port = self._prefer[0], self._prefer[2]
            else:
                host, port = self._rotation.next()
            warn = self._rl.log
            try:
                await self._session_with(host, port)
            except (OSError, TimeoutError) as exc:
                self.stats.connect_failures += 1
                warn(
                    logging.INFO,
                    "unreachable",
                    "%s: %s:%d unreachable: %s",
                    self.node,
                    host,
                    port,
                    exc,
                )
            except ProtocolError as exc:
                self.stats.protocol_errors += 1
                warn(
                    logging.WARNING,
                    "proto",
                    "%s: protocol error from %s:%d: %s",
                    self.node,
                    host,
                    port,
                    exc,
                )
                self._replica.forget_revision()
            except DigestMismatch as exc:
                self.stats.digest_mismatches += 1
                warn(
                    logging.WARNING,
                    "digest",
                    "%s: %s; resyncing with a full snapshot",
                    self.node,
                    exc,
                )
                self._replica.forget_revision()
            except ServerMisbehaved as exc:
                self.stats.protocol_errors += 1
                warn(logging.WARNING, "misbehaved", "%s: %s; resyncing", self.node, exc)
                self._replica.forget_revision()
            except ConnectionTimeout as exc:
                warn(
                    logging.WARNING,
                    "timeout",
                    "%s: connection to %s:%d timed out (%s)",
                    self.node,
                    host,
                    port,
                    exc,
                )
            except StaleUpstream as exc:
                self.stats.stale_upstream_moves += 1
                warn(
                    logging.WARNING,
                    "stale",
                    "%s: %s %s; moving to another replica",
                    self.node,
                    self.server,
                    exc,
                )
            except Exception:
                # A bug of ours must not end the session loop for good.
                self.stats.internal_errors += 1
                log.exception("%s: internal error in the sync session; reconnecting", self.node)
                self._replica.forget_revision()
            finally:
                self._in_sync.clear()
                self._replica.abandon_snapshot()
                session, self._session = self._session, None
            since = session.in_sync_since if session is not None else None
            delay = self._backoff.after_connection(since, loop.time())
            if not self._closed:
                await asyncio.sleep(delay)

    async def _session_with(self, host: str, port: int) -> None:
        """One connection: connect, then move bytes between the socket and a
        ClientSession until either side ends it."""
        loop = asyncio.get_running_loop()
        ip, reader, writer = await self._connect(host, port)
        self.server = f"{host}:{port}" if ip == host else f"{host}({ip}):{port}"
        self._logged_upstream = None
        session = self._session = ClientSession(
            self._replica,
            node=self.node,
            now=loop.time(),
            limits=self._limits,
            stale=self._stale,
            max_snapshot_bytes=self._max_snapshot_bytes,
            on_applied=self._deliver,
            stats=self.stats,
            caps=self._caps,
        )
        self._writer = writer
        self._reports.connected()  # a new replica has been told nothing
        probe: asyncio.Task[tuple[str, str, int] | None] | None = None
        try:
            writer.write(session.data_to_send())
            self.stats.connects += 1
            while not session.closed:
                deadline = session.next_deadline()
                wait = self._tick if deadline is None else max(deadline - loop.time(), 0.0)
                if probe is not None:
                    wait = min(wait, PROBE_POLL)
                try:
                    # Not wait_for: on 3.11 it can swallow a racing cancel.
                    async with asyncio.timeout(wait):
                        data = await reader.read(1 << 18)
                except TimeoutError:
                    data = None
                now = loop.time()
                if data == b"":
                    log.info("%s: server %s closed the connection", self.node, self.server)
                    return
                try:
                    if data:
                        self.stats.bytes_received += len(data)
                        pongs = session.core.rtt_samples
                        session.receive_data(data, now)
                        if session.core.rtt_samples != pongs and session.core.last_rtt is not None:
                            self.stats.ping_rtt.observe(session.core.last_rtt)
                        self._check_sync(session)
                        if session.connected:
                            self._reports.interval = server_interval(
                                session.applied_interval_ms, self._applied_default
                            )
                            if self._reports.pending() is not None:
                                self._schedule_applied()
                    deadline = session.next_deadline()
                    if deadline is not None and now >= deadline:
                        session.handle_timer(now)
                    if session.wants_move and probe is None:
                        probe = loop.create_task(self._find_in_sync(ip, port))
                    if probe is not None and probe.done():
                        found, probe = probe.result(), None
                        self._decide_move(session, ip, found)
                finally:
                    out = session.data_to_send()
                    if out and not writer.is_closing():
                        writer.write(out)
                await writer.drain()
            if session.goodbye is not None:
                g = session.goodbye
                log.info(
                    "%s: server %s said goodbye: %s %s", self.node, self.server, g.reason, g.detail
                )
        finally:
            if probe is not None:
                probe.cancel()
            self._writer = None
            out = session.data_to_send()
            if out and not writer.is_closing():
                writer.write(out)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _connect(
        self, host: str, port: int
    ) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
        """Try every address of `host` (shuffled; one just left for being
        stale goes last) until one connects."""
        last_error: OSError | None = None
        ips = await self._resolver(host, port, self._rng)
        if self._avoid is not None and len(ips) > 1 and self._avoid in ips:
            ips.remove(self._avoid)
            ips.append(self._avoid)  # only if every other address fails
        preferred = self._prefer[1] if self._prefer is not None else None
        if preferred in ips:
            ips.remove(preferred)
            ips.insert(0, preferred)  # the replica a probe found in sync
        self._avoid = self._prefer = None
        for ip in ips:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        ip,
                        port,
                        ssl=self._ssl,
                        server_hostname=(self._server_name or host) if self._ssl else None,
                        limit=1 << 20,
                    ),
                    self._connect_timeout,
                )
                return ip, reader, writer
            except OSError as exc:
                last_error = exc
        raise last_error or OSError(f"{host} has no addresses")

    async def _find_in_sync(
        self, current_ip: str, current_port: int
    ) -> tuple[str, str, int] | None:
        """Another replica (every address of every configured endpoint but
        the current one) that says it is in sync, or None."""
        candidates: list[tuple[str, str, int]] = []
        for host, port in self._rotation.all():
            try:
                ips = await self._resolver(host, port, self._rng)
            except OSError:
                continue
            others = (i for i in ips if (i, port) != (current_ip, current_port))
            candidates += [(host, i, port) for i in others]
        probe = Probe(
            node=self.node,
            revision=self._replica.revision,
            digest=self._replica.digest,
            limits=self._limits,
            answer_within=self._connect_timeout,
            ssl_context=self._ssl,
            server_name=self._server_name,
        )
        return await probe.first_in_sync(dict.fromkeys(candidates))

    def _decide_move(
        self, session: ClientSession, ip: str, found: tuple[str, str, int] | None
    ) -> None:
        """Leave for `found` (raises StaleUpstream), or stay where we are."""
        if found is None:
            self.stats.stale_stays += 1
            self._rl.log(
                logging.WARNING,
                "stale-stay",
                "%s: %s has lost the datastore, and no other replica is in sync: staying",
                self.node,
                self.server,
            )
            session.stay()
            return
        self._avoid = ip
        self._prefer = found
        session.leave()

    def _deliver(self, applied: Applied) -> None:
        """The session committed changes: mark sync, tell the listeners."""
        session = self._session
        if session is not None:
            self._check_sync(session)
        for listener in self._listeners:
            try:
                listener(applied.changes, applied.revision)
            except Exception:
                log.exception("%s: listener failed", self.node)

    def _check_sync(self, session: ClientSession) -> None:
        if session.in_sync and not self._in_sync.is_set():
            self._in_sync.set()
            hello = session.core.server_hello
            log.info(
                "%s: in sync with %s at revision %d (%s)",
                self.node,
                self.server,
                self._replica.revision,
                hello.sync.value if hello is not None else "?",
            )
        status = session.upstream
        if status is not None and status is not self._logged_upstream:
            log.info("%s: %s reports datastore %s", self.node, self.server, status.value)
        self._logged_upstream = status
