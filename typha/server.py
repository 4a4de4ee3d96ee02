"""The asyncio fan-out server: a thin adapter over the sans-I/O core.

Every connection remembers the batch sequence number it has reached; when
the cache grows, one pass over the connections writes each one the frames it
has not had yet (already encoded, shared by all) in a single write.  There
are no per-client update queues.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from snapshot import HistoryUnavailable, SnapshotCache
from typha.errors import ConnectionTimeout, ProtocolError
from typha.protocol import CAP_ZSTD, ClientHello, Limits, ServerConnection, State
from typha.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServerStats:
    accepted: int = 0
    rejected_limit: int = 0
    snapshots_sent: int = 0
    snapshot_bytes_sent: int = 0
    batches_sent: int = 0
    bytes_sent: int = 0
    fanouts: int = 0
    closed: Counter[str] = field(default_factory=Counter)
    protocol_errors: Counter[str] = field(default_factory=Counter)


class AgentProtocol(asyncio.Protocol):
    """One agent connection."""

    def __init__(self, server: AgentServer) -> None:
        self.server = server
        self.core: ServerConnection | None = None
        self.transport: asyncio.Transport | None = None
        self.seq = -1  # batch sequence number reached; -1 until streaming
        self.peer = "?"

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.core = ServerConnection(
            server_id=self.server.server_id, now=self.server.now(), limits=self.server.limits
        )
        self.server.register(self)

    def data_received(self, data: bytes) -> None:
        core = self.core
        assert core is not None
        try:
            msgs = core.receive_data(data, self.server.now())
        except ProtocolError as exc:
            self.server.protocol_error(self, exc)
            self.flush()
            return
        for msg in msgs:
            if isinstance(msg, ClientHello):
                self.server.hello(self)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "peer_closed"
        if self.core is not None and self.core.close_reason:
            reason = self.core.close_reason.split(":")[0]
        self.server.unregister(self, reason)

    # -- driven by the server -----------------------------------------------

    def start_stream(self) -> None:
        """Accept the hello and send the shared snapshot encoding."""
        core = self.core
        if core is None or core.state is not State.HANDSHAKE:
            return
        core.accept(sync="snapshot")
        snap, frames = self.server.cache.snapshot_frames(compressed=CAP_ZSTD in core.caps)
        core.send_frames(frames)
        self.seq = snap.seq
        self.server.stats.snapshots_sent += 1
        self.server.stats.snapshot_bytes_sent += sum(len(f) for f in frames)
        self.flush()

    def catch_up(self, merged: dict[int, bytes]) -> None:
        """Write every batch after `seq` in one write.  `merged` memoises, for
        one fan-out pass, the joined frames per starting seq, so clients at
        the same position share one buffer instead of each joining a copy."""
        core = self.core
        if core is None or core.state is not State.OPEN or self.seq < 0:
            return
        cache = self.server.cache
        if self.seq == cache.seq:
            return
        data = merged.get(self.seq)
        if data is None:
            try:
                batches = cache.batches_after(self.seq)
            except HistoryUnavailable:
                self.close("too_far_behind")
                return
            data = batches[0].frame if len(batches) == 1 else b"".join(b.frame for b in batches)
            merged[self.seq] = data
        self.server.stats.batches_sent += cache.seq - self.seq
        core.send_frames((data,))
        self.seq = cache.seq
        self.flush()
        assert self.transport is not None
        if self.transport.get_write_buffer_size() > self.server.max_buffer_bytes:
            self.close("slow_client")

    def tick(self, now: float) -> None:
        core = self.core
        if core is None:
            return
        try:
            core.tick(now)
        except ConnectionTimeout as exc:
            self.server.rl.log(logging.INFO, exc.code, "closing %s: %s", self.peer, exc.code)
        self.flush()

    def close(self, reason: str) -> None:
        if self.core is not None:
            self.core.close(reason)
        self.flush()

    def flush(self) -> None:
        core = self.core
        transport = self.transport
        if core is None or transport is None or transport.is_closing():
            return
        data = core.data_to_send()
        if data:
            n = sum(len(d) for d in data)
            self.server.stats.bytes_sent += n
            if len(data) == 1:
                transport.write(data[0])
            else:
                transport.write(b"".join(data))
        if core.state is State.CLOSED:
            transport.close()


class AgentServer:
    """Owns the listening socket and every AgentProtocol."""

    def __init__(
        self,
        cache: SnapshotCache,
        *,
        server_id: str,
        ready: Callable[[], bool],
        limits: Limits = Limits(),
        max_connections: int = 20_000,
        max_buffer_bytes: int = 8 * 1024 * 1024,
        tick_interval: float = 1.0,
    ) -> None:
        self.cache = cache
        self.server_id = server_id
        self.limits = limits
        self.max_connections = max_connections
        self.max_buffer_bytes = max_buffer_bytes
        self._ready = ready
        self._tick_interval = tick_interval
        self.connections: set[AgentProtocol] = set()
        self._waiting: set[AgentProtocol] = set()
        self._fanout_scheduled = False
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self.stats = ServerStats()
        self.rl = RateLimitedLog(log)

    def now(self) -> float:
        return self._loop.time()

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        """Listen; returns the bound port (useful when `port` is 0)."""
        self._server = await self._loop.create_server(
            lambda: AgentProtocol(self),
            host,
            port,
            ssl=ssl_context,
            backlog=4096,
            reuse_address=True,
        )
        self._ticker = asyncio.create_task(self._tick_loop())
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def close(self, reason: str = "shutdown") -> None:
        if self._server is not None:
            self._server.close()
        if self._ticker is not None:
            self._ticker.cancel()
        for conn in list(self.connections):
            conn.close(reason)
        if self._server is not None:
            await self._server.wait_closed()

    # -- connection bookkeeping ----------------------------------------------

    def register(self, conn: AgentProtocol) -> None:
        if len(self.connections) >= self.max_connections:
            self.stats.rejected_limit += 1
            self.rl.log(
                logging.WARNING,
                "limit",
                "connection limit %d reached; refusing %s",
                self.max_connections,
                conn.peer,
            )
            conn.close("connection_limit")
            return
        self.connections.add(conn)
        self.stats.accepted += 1

    def unregister(self, conn: AgentProtocol, reason: str) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._waiting.discard(conn)
            self.stats.closed[reason] += 1

    def hello(self, conn: AgentProtocol) -> None:
        if self._ready():
            conn.start_stream()
        else:
            self._waiting.add(conn)  # answered once the first list is loaded

    def protocol_error(self, conn: AgentProtocol, exc: ProtocolError) -> None:
        self.stats.protocol_errors[exc.code] += 1
        self.rl.log(
            logging.WARNING, f"proto:{exc.code}", "protocol error from %s: %s", conn.peer, exc
        )

    # -- fan-out -------------------------------------------------------------

    def notify(self) -> None:
        """The cache changed.  Batches arriving in the same loop iteration are
        coalesced into one pass (and so one write per client)."""
        if not self._fanout_scheduled:
            self._fanout_scheduled = True
            self._loop.call_soon(self._fanout)

    def _fanout(self) -> None:
        self._fanout_scheduled = False
        self.stats.fanouts += 1
        if self._waiting and self._ready():
            waiting, self._waiting = self._waiting, set()
            for conn in waiting:
                conn.start_stream()
        merged: dict[int, bytes] = {}
        for conn in list(self.connections):
            conn.catch_up(merged)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval)
            now = self.now()
            for conn in list(self.connections):
                conn.tick(now)
            if self._waiting and self._ready():
                self.notify()
