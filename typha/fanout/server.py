"""The asyncio fan-out server: carries out what the `Fanout` core decides.

Each transport callback becomes one input to the core, stamped with the
loop's clock; the actions that come back are carried out at once.  A pass's
grouped `Write` is one loop of `transport.write` over the agents at one
stream position, the same bytes object for each.  One task sleeps until the
core's next wake-up and runs its timers and passes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Callable, Iterable, KeysView
from typing import Any, cast

from runtime.tls import PeerPolicy
from snapshot import SnapshotCache
from syncproto import CloseReason, DatastoreStatus, Limits
from typha.fanout.convergence import ConvergenceTracker
from typha.fanout.core import Abort, Action, Close, Fanout, WakeAt, Write
from typha.fanout.limits import ServerLimits, ServerStats

__all__ = ["AgentProtocol", "AgentServer", "ServerLimits", "ServerStats"]

log = logging.getLogger(__name__)


class AgentProtocol(asyncio.Protocol):
    """One agent connection: its transport's callbacks, as core inputs."""

    __slots__ = ("server", "transport", "write")

    def __init__(self, server: AgentServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        """The transport is ready (on a TLS port: after the handshake)."""
        server = self.server
        self.transport = t = cast(asyncio.Transport, transport)
        self.write = t.write  # the one call a fan-out pass makes per agent
        t.set_write_buffer_limits(high=server.fanout.limits.write_high_water)
        peer = t.get_extra_info("peername")
        ssl_object = t.get_extra_info("ssl_object")
        cert: dict[str, Any] | None = ssl_object.getpeercert() if ssl_object else None
        server.carry(
            server.fanout.connected(
                self,
                server.now(),
                peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
                cert=cert,
                tls=ssl_object is not None,
            )
        )

    def data_received(self, data: bytes) -> None:
        """Bytes from the agent."""
        self.server.carry(self.server.fanout.received(self, data, self.server.now()))

    def connection_lost(self, exc: Exception | None) -> None:
        """The transport is gone."""
        self.server.carry(self.server.fanout.lost(self, self.server.now()))

    def pause_writing(self) -> None:
        # Stop reading too: a peer that sends but never reads would otherwise
        # have us queue replies (PONGs) without bound.
        """The transport's buffer is full: stop reading; tell the core."""
        t = self.transport
        if t is None:
            return
        if not t.is_closing():
            t.pause_reading()
        server = self.server
        server.carry(server.fanout.paused(self, server.now(), t.get_write_buffer_size()))

    def resume_writing(self) -> None:
        """The transport drained: read again; tell the core."""
        t = self.transport
        if t is not None and not t.is_closing():
            t.resume_reading()
        self.server.carry(self.server.fanout.resumed(self, self.server.now()))


class AgentServer:
    """The listening socket and the loop around a `Fanout` core.  `start()`
    it, run `run_timers()` and `run_housekeeping()` (supervised) alongside,
    call `notify()` whenever the cache grows, `close()` at the end."""

    def __init__(
        self,
        cache: SnapshotCache,
        *,
        server_id: str,
        ready: Callable[[], bool],
        proto_limits: Limits = Limits(),
        limits: ServerLimits = ServerLimits(),
        peer_policy: PeerPolicy = PeerPolicy(),
        tick_interval: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
        pacing: float = 1.0,
        writes_per_second: float = 0.0,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.fanout: Fanout[AgentProtocol] = Fanout(
            cache,
            server_id=server_id,
            ready=ready,
            now=self.now(),
            proto_limits=proto_limits,
            limits=limits,
            peer_policy=peer_policy,
            pacing=pacing,
            writes_per_second=writes_per_second,
        )
        self.ssl_context = ssl_context
        self._tick_interval = tick_interval
        self._server: asyncio.AbstractServer | None = None
        self._wakeup = asyncio.Event()
        self._wake_at = math.inf  # when the timer task sleeps until

    def now(self) -> float:
        """The event loop's clock: the `now` every core input carries."""
        return self._loop.time()

    # -- what the rest of the process reads -----------------------------------

    @property
    def stats(self) -> ServerStats:
        """The core's counters."""
        return self.fanout.stats

    @property
    def convergence(self) -> ConvergenceTracker:
        """The agents' applied revisions."""
        return self.fanout.convergence

    @property
    def connections(self) -> KeysView[AgentProtocol]:
        """Open agent connections."""
        return self.fanout.clients.keys()

    @property
    def report_interval_ms(self) -> int:
        """The APPLIED interval agents were last told, in milliseconds."""
        return self.fanout.report_interval_ms

    def max_lag(self) -> float:
        """Seconds the longest-blocked agent's transport has pushed back."""
        return self.fanout.max_lag(self.now())

    # -- inputs -----------------------------------------------------------------

    def notify(self) -> None:
        """The cache grew."""
        self.carry(self.fanout.notify(self.now()))

    def set_datastore_status(self, status: DatastoreStatus) -> None:
        """Tell every streaming agent that takes it."""
        self.carry(self.fanout.set_datastore_status(status, self.now()))

    def shed(self, n: int, reason: CloseReason) -> int:
        """Close `n` streaming connections with GOODBYE(reason); returns how many."""
        actions = self.fanout.shed(n, reason, self.now())
        self.carry(actions)
        return sum(isinstance(a, Close) for a in actions)

    def carry(self, actions: Iterable[Action[AgentProtocol]]) -> None:
        """Carry out the core's actions, in order."""
        for action in actions:
            if type(action) is Write:
                data = action.data
                for conn in action.conns:
                    conn.write(data)
            elif isinstance(action, WakeAt):
                if action.when < self._wake_at:
                    self._wake_at = action.when
                    self._wakeup.set()
            elif isinstance(action, Close | Abort):
                transport = action.conn.transport
                if transport is not None:
                    if isinstance(action, Abort):
                        transport.abort()
                    elif not transport.is_closing():
                        transport.close()

    # -- the listener -----------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful when `port` is 0)."""
        tls = self.ssl_context
        self._server = await self._loop.create_server(
            self._new_protocol,
            host,
            port,
            ssl=tls,
            ssl_handshake_timeout=self.fanout.proto_limits.handshake_timeout if tls else None,
            backlog=4096,
            reuse_address=True,
        )
        return int(self._server.sockets[0].getsockname()[1])

    def _new_protocol(self) -> AgentProtocol:
        proto = AgentProtocol(self)
        if self.ssl_context is not None:
            self.fanout.tls_accepted(proto, self.now())
        return proto

    async def drain(self, spread: float) -> None:
        """Stop accepting, then close every connection with GOODBYE(shutdown),
        spread evenly over `spread` seconds so agents move to other replicas
        gradually instead of all at once.  The first goes at once and no
        wait follows the last: the drain ends as soon as every agent has
        gone, never later than `spread` plus a second for the GOODBYEs."""
        fanout = self.fanout
        fanout.draining = True
        if self._server is not None:
            self._server.close()
        conns = list(fanout.clients)
        interval = spread / len(conns) if conns else 0.0
        started = self.now()
        log.info("draining %d connections over at most %.1fs", len(conns), spread)
        for i, conn in enumerate(conns):
            if not any(c in fanout.clients for c in conns[i:]):
                break  # the rest left by themselves
            if i and interval:
                await asyncio.sleep(interval)
            self.carry(fanout.close(conn, CloseReason.SHUTDOWN, self.now()))
        # Give the GOODBYEs a moment to reach peers that are reading.
        for _ in range(50):
            if not fanout.clients:
                break
            await asyncio.sleep(0.02)
        left = len(fanout.clients)
        for conn in list(fanout.clients):
            self.carry(fanout.abort(conn, CloseReason.SHUTDOWN, self.now()))
        log.info(
            "drained %d connections in %.2fs (%d cut off)", len(conns), self.now() - started, left
        )

    async def close(self) -> None:
        """Close every connection and the listener."""
        await self.drain(0.0)
        if self._server is not None:
            await self._server.wait_closed()

    # -- time -----------------------------------------------------------------

    async def run_timers(self) -> None:
        """Run the core's timers and passes when due.  Runs until cancelled."""
        fanout = self.fanout
        while True:
            self._wakeup.clear()
            now = self.now()
            self.carry(fanout.handle_timer(now))
            if fanout.pass_due(now):
                # perf_counter, not loop.time(): uvloop's clock is cached per
                # loop iteration and would not see the pass's own duration.
                started = time.perf_counter()
                self.carry(fanout.run_pass(now))
                fanout.pass_done(time.perf_counter() - started)
            wake = fanout.next_wakeup()
            self._wake_at = wake if wake is not None else now + self._tick_interval
            # At least a millisecond: a timer that is due but never acts must
            # cost a wake-up a millisecond, not the whole loop.
            try:
                async with asyncio.timeout(max(self._wake_at - self.now(), 0.001)):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def run_housekeeping(self) -> None:
        """History trimming, TLS handshake expiry, waiting hellos: once per
        `tick_interval`.  Runs until cancelled."""
        while True:
            await asyncio.sleep(self._tick_interval)
            self.carry(self.fanout.housekeeping(self.now()))
