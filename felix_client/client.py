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
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from felix_client.addresses import AddressRotation, Backoff, parse_addresses
from felix_client.errors import DigestMismatch, NotConnected, ServerMisbehaved
from felix_client.replica import Change, Replica
from typha.errors import ConnectionTimeout, ProtocolError
from typha.protocol import (
    ClientConnection,
    DatastoreStatus,
    DatastoreStatusMsg,
    Delta,
    Goodbye,
    Limits,
    Message,
    Progress,
    ServerHello,
    SnapshotChunk,
    SnapshotEnd,
    State,
)
from typha.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

# Called after each applied snapshot or delta: (changes, revision).
Listener = Callable[[list[Change], int], None]


@dataclass(slots=True)
class ClientStats:
    connects: int = 0
    connect_failures: int = 0
    snapshots: int = 0
    resumes: int = 0
    deltas: int = 0
    progress: int = 0
    digest_mismatches: int = 0
    protocol_errors: int = 0
    internal_errors: int = 0
    stale_upstream_moves: int = 0
    bytes_received: int = 0


# The agent pings a quiet server every 5 s and gives it 5 s to answer, so a
# frozen or partitioned replica is noticed within 10 s.
CLIENT_LIMITS = Limits(ping_interval=5.0, pong_timeout=5.0)
DEFAULT_MAX_SNAPSHOT_BYTES = 1 << 30


class _StaleUpstream(Exception):
    """Our replica has reported the datastore lost for too long."""


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
    ) -> None:
        self._rng = random.Random()
        self._rotation = AddressRotation(parse_addresses(addresses), self._rng)
        self.node = node
        self._limits = limits
        self._ssl = ssl_context
        self._server_name = server_name
        self._connect_timeout = connect_timeout
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._tick = tick_interval
        self._healthy_after = healthy_after
        self._stale_initial = upstream_stale_after
        self._stale_after = upstream_stale_after
        self._max_snapshot_bytes = max_snapshot_bytes
        self._snapshot_bytes = 0
        self._avoid: str | None = None  # an address just left for being stale
        self._upstream: DatastoreStatus | None = None
        self._upstream_since = 0.0
        self._in_sync_since: float | None = None
        self._rl = RateLimitedLog(log)
        self._replica = Replica()
        self._listeners: list[Listener] = []
        self._in_sync = asyncio.Event()
        self._connected = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.server: str = ""
        self.stats = ClientStats()

    # -- public surface ------------------------------------------------------

    @property
    def in_sync(self) -> bool:
        return self._in_sync.is_set()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def upstream_in_sync(self) -> bool:
        """The serving replica says it is in sync with the datastore (a
        server without the datastore-status capability is taken at its
        word that it serves current state)."""
        return self._connected and self._upstream in (None, DatastoreStatus.IN_SYNC)

    @property
    def upstream_status(self) -> str:
        if not self._connected:
            return "disconnected"
        return self._upstream.value if self._upstream is not None else "unknown"

    @property
    def reconnect_backoff(self) -> float:
        """Upper bound of the next reconnect delay."""
        return self._backoff.upper

    @property
    def revision(self) -> int:
        return self._replica.revision

    @property
    def digest(self) -> str:
        return self._replica.digest

    @property
    def state(self) -> Mapping[str, Any]:
        return self._replica.state

    def add_listener(self, listener: Listener) -> None:
        """`listener(changes, revision)` runs after every applied snapshot or
        delta, in the event loop; it must not block."""
        self._listeners.append(listener)

    async def wait_in_sync(self) -> None:
        """Wait until the replica holds a complete, verified state.  Bound it
        with `asyncio.timeout()` if you must; it raises NotConnected once the
        client is closed."""
        if self._closed:
            raise NotConnected("client is closed")
        await self._in_sync.wait()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sync-client-{self.node}")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._connected = False
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
            host, port = self._rotation.next()
            warn = self._rl.log
            try:
                await self._session(host, port)
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
            except _StaleUpstream as exc:
                self.stats.stale_upstream_moves += 1
                warn(logging.WARNING, "stale", "%s: %s; moving to another replica", self.node, exc)
            except Exception:
                # A bug of ours must not end the session loop for good.
                self.stats.internal_errors += 1
                log.exception("%s: internal error in the sync session; reconnecting", self.node)
                self._replica.forget_revision()
            finally:
                self._connected = False
                self._in_sync.clear()
                self._replica.abandon_snapshot()
            if self._in_sync_since is not None:
                if loop.time() - self._in_sync_since >= self._healthy_after:
                    self._backoff.reset()
                self._in_sync_since = None
            if not self._closed:
                await asyncio.sleep(self._backoff.delay())

    async def _resolve(self, host: str, port: int) -> list[str]:
        """Every address of `host`, shuffled: a headless Service's DNS name
        has one A record per replica, and a fleet that always took the first
        would all land on one replica."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self._rng.shuffle(ips)
        return ips

    async def _session(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        ips = await self._resolve(host, port)
        if self._avoid is not None and len(ips) > 1 and self._avoid in ips:
            ips.remove(self._avoid)
            ips.append(self._avoid)  # only if every other address fails
        self._avoid = None
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
                break
            except OSError as exc:
                last_error = exc
        else:
            raise last_error or OSError(f"{host} has no addresses")
        self.server = f"{host}:{port}" if ip == host else f"{host}({ip}):{port}"
        self._upstream = None
        self._snapshot_bytes = 0
        replica = self._replica
        core = ClientConnection(
            node=self.node,
            now=loop.time(),
            limits=self._limits,
            revision=replica.revision,
            digest=replica.digest if replica.revision else "",
        )
        try:
            writer.write(b"".join(core.data_to_send()))
            self.stats.connects += 1
            while core.state is not State.CLOSED:
                try:
                    # Not wait_for: on 3.11 it can swallow a racing cancel.
                    async with asyncio.timeout(self._tick):
                        data = await reader.read(1 << 18)
                except TimeoutError:
                    data = None
                now = loop.time()
                if data == b"":
                    log.info("%s: server %s closed the connection", self.node, self.server)
                    return
                if data:
                    self.stats.bytes_received += len(data)
                    try:
                        for msg in core.receive_data(data, now):
                            self._handle(msg, now)
                    finally:
                        self._flush(core, writer)
                core.tick(now)
                self._flush(core, writer)
                await writer.drain()
                self._check_upstream(ip, now, core)
        finally:
            self._flush(core, writer)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    @staticmethod
    def _flush(core: ClientConnection, writer: asyncio.StreamWriter) -> None:
        out = core.data_to_send()
        if out and not writer.is_closing():
            writer.write(b"".join(out))

    def _check_upstream(self, ip: str, now: float, core: ClientConnection) -> None:
        """Leave a replica that has reported the datastore lost for longer
        than the (growing) stale limit; resume elsewhere."""
        status = self._upstream
        if status is None or status is DatastoreStatus.IN_SYNC or not self._in_sync.is_set():
            return
        if now - self._upstream_since < self._stale_after:
            return
        waited = now - self._upstream_since
        # If the others are stale too (the datastore itself is down), hop
        # less and less often.
        self._stale_after = min(self._stale_after * 2, 300.0)
        self._avoid = ip
        core.close("upstream_stale")
        raise _StaleUpstream(f"{self.server} has reported {status.value!r} for {waited:.0f}s")

    def _mark_in_sync(self, now: float) -> None:
        self._in_sync.set()
        if self._in_sync_since is None:
            self._in_sync_since = now

    def _handle(self, msg: Message, now: float) -> None:
        replica = self._replica
        if isinstance(msg, ServerHello):
            self._connected = True
            if msg.sync == "snapshot":
                replica.begin_snapshot()
            else:
                # The server checked our revision and digest against its
                # history; what changed since follows as ordinary deltas.
                self.stats.resumes += 1
                self._mark_in_sync(now)
        elif isinstance(msg, DatastoreStatusMsg):
            if msg.status is not self._upstream:
                log.info("%s: %s reports datastore %s", self.node, self.server, msg.status.value)
                self._upstream = msg.status
                self._upstream_since = now
            if msg.status is DatastoreStatus.IN_SYNC:
                self._stale_after = self._stale_initial
        elif isinstance(msg, SnapshotChunk):
            self._snapshot_bytes += sum(len(k) + len(v) for k, v in msg.entries)
            if self._snapshot_bytes > self._max_snapshot_bytes:
                raise ServerMisbehaved(
                    f"snapshot from {self.server} exceeds {self._max_snapshot_bytes} bytes"
                )
            replica.add_chunk(msg.entries)
        elif isinstance(msg, SnapshotEnd):
            changes = replica.end_snapshot(msg.revision, msg.digest)
            self.stats.snapshots += 1
            self._mark_in_sync(now)
            self._notify(changes)
        elif isinstance(msg, Delta):
            changes = replica.apply_delta(msg.revision, msg.updates, msg.digest)
            self.stats.deltas += 1
            self._notify(changes)
        elif isinstance(msg, Progress):
            replica.apply_progress(msg.revision, msg.digest)
            self.stats.progress += 1
        elif isinstance(msg, Goodbye):
            log.info(
                "%s: server %s said goodbye: %s %s", self.node, self.server, msg.reason, msg.detail
            )

    def _notify(self, changes: list[Change]) -> None:
        for listener in self._listeners:
            try:
                listener(changes, self._replica.revision)
            except Exception:
                log.exception("%s: listener failed", self.node)
