"""SyncClient: the asyncio client that keeps a local replica in sync with typha.

    async with SyncClient("typha:5473", node="node-1") as client:
        await client.wait_in_sync()
        client.state  # Mapping[key, JSON object]

It reconnects by itself (shuffled addresses, jittered exponential backoff),
offers its revision and digest in the hello so a server can resume, and checks
the digest the server sends after every snapshot, delta and progress message.
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
    bytes_received: int = 0


class SyncClient:
    def __init__(
        self,
        addresses: str | Sequence[str],
        *,
        node: str,
        limits: Limits = Limits(),
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        connect_timeout: float = 5.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        tick_interval: float = 1.0,
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
        while not self._closed:
            host, port = self._rotation.next()
            try:
                await self._session(host, port)
            except (OSError, TimeoutError) as exc:
                self.stats.connect_failures += 1
                log.debug("%s: %s:%d unreachable: %s", self.node, host, port, exc)
            except ProtocolError as exc:
                self.stats.protocol_errors += 1
                log.warning("%s: protocol error from %s:%d: %s", self.node, host, port, exc)
                self._replica.forget_revision()
            except DigestMismatch as exc:
                self.stats.digest_mismatches += 1
                log.warning("%s: %s; resyncing with a full snapshot", self.node, exc)
                self._replica.forget_revision()
            except ServerMisbehaved as exc:
                self.stats.protocol_errors += 1
                log.warning("%s: %s; resyncing", self.node, exc)
                self._replica.forget_revision()
            except ConnectionTimeout as exc:
                log.info("%s: connection to %s:%d timed out (%s)", self.node, host, port, exc)
            finally:
                self._connected = False
                self._in_sync.clear()
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
        for ip in await self._resolve(host, port):
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
                    data = await asyncio.wait_for(reader.read(1 << 18), self._tick)
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
                            self._handle(msg)
                    finally:
                        self._flush(core, writer)
                core.tick(now)
                self._flush(core, writer)
                await writer.drain()
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

    def _handle(self, msg: Message) -> None:
        replica = self._replica
        if isinstance(msg, ServerHello):
            self._connected = True
            self._backoff.reset()
            if msg.sync == "snapshot":
                replica.begin_snapshot()
            else:
                # The server checked our revision and digest against its
                # history; what changed since follows as ordinary deltas.
                self.stats.resumes += 1
                self._in_sync.set()
        elif isinstance(msg, SnapshotChunk):
            replica.add_chunk(msg.entries)
        elif isinstance(msg, SnapshotEnd):
            changes = replica.end_snapshot(msg.revision, msg.digest)
            self.stats.snapshots += 1
            self._in_sync.set()
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
