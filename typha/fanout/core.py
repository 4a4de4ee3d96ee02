"""The fan-out core, sans-I/O: every agent connection's stream, what each is
owed, when each needs attention, and every verdict about them.

No sockets, no event loop, no clock.  Each input takes `now`; each returns a
list of actions for the caller to carry out, in order:

  `Write(conns, data)`  write `data` to each connection in `conns`;
  `Close(conn, reason)` close the connection once what was written is sent;
  `Abort(conn, reason)` drop it now, discarding what is buffered;
  `WakeAt(when)`        call `handle_timer` (and `run_pass` if `pass_due`)
                        no later than `when`.

Connections are the caller's hashable handles; the core never calls them.

Writes are grouped by stream position: agents that have had the same
history share a `_Position`, and a fan-out pass emits one `Write` per
position, whose bytes (the batches the position lacks, encoded once) go to
every member.  Moving a position to the head is one dict operation whatever
its size; per agent, a pass costs the caller's one write and nothing here.
An agent leaves its position when it needs something of its own (it is
snapshotting, its transport pushes back, it closes) and joins the one at the
head once it is caught up and writable again.

A caller must:
  * call `connected` when a transport is ready (after TLS) and `tls_accepted`
    before that, for a TLS listener (pending handshakes count against the
    connection limit); `lost` when the transport is gone;
  * feed received bytes to `received`; report flow control with `paused`
    (with the transport's buffered byte count) and `resumed`;
  * call `notify` whenever the cache grows, `handle_timer` and, while
    `pass_due`, `run_pass` then `pass_done(seconds it took, writes included)`
    by `next_wakeup()`, and `housekeeping` about once a second.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from runtime.ratelimit import RateLimitedLog
from runtime.tls import PeerPolicy, certificate_identities, node_in_identities
from snapshot import HistoryUnavailable, SnapshotCache
from syncproto import (
    CAP_APPLIED,
    CAP_REPLICA,
    CAP_ZSTD,
    AppliedInterval,
    CloseReason,
    Codec,
    DatastoreStatus,
    DatastoreStatusMsg,
    Limits,
)
from syncproto.errors import ConnectionTimeout, ProtocolError
from syncproto.stream import ServerStream, catch_up_data
from typha.fanout.connlog import ConnectionLog
from typha.fanout.convergence import (
    MIN_REPORT_INTERVAL_MS,
    ConvergenceTracker,
    report_interval_ms,
)
from typha.fanout.limits import ServerLimits, ServerStats

log = logging.getLogger("typha.fanout")

H = TypeVar("H", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Write(Generic[H]):
    """Write `data` to each of `conns`: one write each, in this order."""

    conns: tuple[H, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class Close(Generic[H]):
    """Close `conn` once what was written to it is sent (its GOODBYE is among
    the writes already)."""

    conn: H
    reason: CloseReason


@dataclass(frozen=True, slots=True)
class Abort(Generic[H]):
    """Drop `conn` now, discarding what its transport holds: the peer is not
    reading, or we must not wait for it."""

    conn: H
    reason: CloseReason


@dataclass(frozen=True, slots=True)
class WakeAt:
    """Call `handle_timer` (and the pass, if due) no later than `when`."""

    when: float


Action = Write[H] | Close[H] | Abort[H] | WakeAt


class _Client(Generic[H]):
    """One connection's record: its stream and what the core decided about it."""

    __slots__ = (
        "backlog",
        "base",
        "closing",
        "connected_at",
        "counted",
        "deadline",
        "handle",
        "identities",
        "peer",
        "position",
        "stream",
    )

    def __init__(self, handle: H, stream: ServerStream, peer: str, now: float) -> None:
        self.handle = handle
        self.stream = stream
        self.peer = peer
        self.connected_at = now
        self.deadline: float | None = None  # its earliest entry in the timer heap
        # The certificate's CNs and URI SANs (None: no TLS); the hello's node
        # must be among them for its APPLIED reports to count.
        self.identities: frozenset[str] | None = None
        self.counted = False  # decided at the hello: its APPLIED reports count
        self.position: _Position[H] | None = None
        self.base = 0  # the position's `sent` when it joined (see _Position)
        # While paused: the transport's buffered bytes at the pause plus all
        # written since, an upper bound on what it holds.
        self.backlog = 0
        self.closing = False  # Close or Abort issued


class _Position(Generic[H]):
    """Agents at one point of the history (batch `seq`, `revision`), taking
    the same encoding; `sent` counts the bytes each member was written while
    here, so a member's own count is its stream's plus `sent - base`."""

    __slots__ = ("members", "revision", "sent", "seq", "zstd")

    def __init__(self, seq: int, revision: int, zstd: bool) -> None:
        self.seq = seq
        self.revision = revision
        self.zstd = zstd
        self.sent = 0
        self.members: dict[H, _Client[H]] = {}


class Fanout(Generic[H]):
    """Every agent connection of one listener, over one `SnapshotCache`."""

    def __init__(
        self,
        cache: SnapshotCache,
        *,
        server_id: str,
        ready: Callable[[], bool],
        now: float,
        proto_limits: Limits = Limits(),
        limits: ServerLimits = ServerLimits(),
        peer_policy: PeerPolicy = PeerPolicy(),
        pacing: float = 1.0,
        writes_per_second: float = 0.0,
    ) -> None:
        self.cache = cache
        self.server_id = server_id
        self.proto_limits = proto_limits
        self.limits = limits
        self.peer_policy = peer_policy
        self.pacing = pacing
        self.writes_per_second = writes_per_second
        self._ready = ready
        self._now = now  # the latest `now` given: the clock of our logs
        self.stats = ServerStats()
        self.convergence = ConvergenceTracker()
        self.rl = RateLimitedLog(log, clock=self._clock)
        self.connlog = ConnectionLog(log, self._clock)
        self.draining = False
        self.clients: dict[H, _Client[H]] = {}
        # Streaming clients in no position (snapshotting, paused), and those
        # whose snapshot is still to be handed out at the next wake.
        self._solo: dict[H, _Client[H]] = {}
        self._pumping: dict[H, _Client[H]] = {}
        self._positions: dict[tuple[int, bool], _Position[H]] = {}
        self._waiting: dict[H, _Client[H]] = {}  # hello asked again once ready
        # TLS connections accepted and not through their handshake, with
        # when: they count against the limit until the listener ends them.
        self.tls_pending: dict[H, float] = {}
        # (deadline, tie-breaker, client); stale once the client's own
        # `deadline` no longer equals it.
        self._timers: list[tuple[float, int, _Client[H]]] = []
        self._timer_ids = itertools.count()
        # Load-adaptive batching: a pass starts no sooner than `pacing` times
        # the last one's duration after it ended, so what arrives meanwhile
        # shares the next pass (one write per agent whatever the update rate)
        # and fan-out takes about 1/(1+pacing) of the loop at most; and no
        # sooner than agents / `writes_per_second` after the last one
        # started, since a pass costs a write (a system call) per agent
        # however little it carries: with many agents and cheap passes,
        # latency is traded for fewer, fuller writes; with few agents the
        # bound is negligible.
        self._pass_pending = False
        self._pass_at = 0.0
        self._pass_started = 0.0
        self._next_pass_at = 0.0
        self._fanned_seq = cache.seq  # batches up to here are in fanout_latency
        self._codec = Codec(max_frame=proto_limits.max_frame)
        self.datastore_status = DatastoreStatus.WAITING
        self.status_frame = self._codec.encode(DatastoreStatusMsg(self.datastore_status))
        self.report_interval_ms = MIN_REPORT_INTERVAL_MS  # last told to the agents

    def _clock(self) -> float:
        return self._now

    # -- connections --------------------------------------------------------

    def tls_accepted(self, conn: H, now: float) -> None:
        """A TLS connection was accepted; its handshake is under way."""
        self._now = now
        self.tls_pending[conn] = now

    def connected(
        self, conn: H, now: float, *, peer: str, cert: dict[str, Any] | None, tls: bool
    ) -> list[Action[H]]:
        """The transport is ready (after the TLS handshake, if `tls`, with the
        peer's certificate `cert`)."""
        self._now = now
        self.tls_pending.pop(conn, None)
        stream = ServerStream(
            self.cache,
            server_id=self.server_id,
            now=now,
            limits=self.proto_limits,
            policy=self.limits.stream,
            stats=self.stats,
        )
        client = _Client(conn, stream, peer, now)
        actions: list[Action[H]] = []
        refusal: CloseReason | None = None
        if tls:
            client.identities = certificate_identities(cert)
            why = self.peer_policy.check(cert)
            if why is not None:
                self.stats.protocol_errors["tls_forbidden"] += 1
                self.rl.log(logging.WARNING, "tls", "refusing %s: %s", peer, why)
                refusal = CloseReason.FORBIDDEN
        if refusal is None and self.draining:
            refusal = CloseReason.SHUTDOWN
        if refusal is None and len(self.clients) + len(self.tls_pending) >= (
            self.limits.max_connections
        ):
            self.stats.rejected_limit += 1
            self.rl.log(
                logging.WARNING,
                "limit",
                "connection limit %d reached; refusing %s",
                self.limits.max_connections,
                peer,
            )
            refusal = CloseReason.CONNECTION_LIMIT
        if refusal is not None:
            # Never registered: its GOODBYE, then the close.
            stream.close(refusal)
            self._settle(client, now, actions)
            return actions
        self.clients[conn] = client
        self.stats.accepted += 1
        self._retune_reports(actions)
        self._schedule(client, actions)
        return actions

    def lost(self, conn: H, now: float) -> list[Action[H]]:
        """The transport is gone."""
        self._now = now
        self.tls_pending.pop(conn, None)
        client = self.clients.pop(conn, None)
        actions: list[Action[H]] = []
        if client is None:
            return actions
        self._leave(client)
        self._solo.pop(conn, None)
        self._pumping.pop(conn, None)
        self._waiting.pop(conn, None)
        client.deadline = None
        client.closing = True
        stream = client.stream
        reason = stream.core.close_reason or CloseReason.PEER_CLOSED
        self.stats.closed[reason] += 1
        self._retune_reports(actions)
        if stream.streaming and self._is_agent(client):
            self.convergence.disconnected(self._node(client), now)
        self.connlog.info(
            "agent %s from %s closed: %s after %.1fs, %d bytes sent",
            self._node(client),
            client.peer,
            reason,
            now - client.connected_at,
            stream.core.bytes_sent,
        )
        return actions

    def received(self, conn: H, data: bytes, now: float) -> list[Action[H]]:
        """Bytes from the agent."""
        self._now = now
        actions: list[Action[H]] = []
        client = self.clients.get(conn)
        if client is None or client.closing:
            return actions
        stream = client.stream
        core = stream.core
        try:
            hello = stream.receive_data(data, now)
        except ProtocolError as exc:
            self.stats.protocol_errors[exc.code.value] += 1
            self.rl.log(
                logging.WARNING, f"proto:{exc.code}", "protocol error from %s: %s", client.peer, exc
            )
            self._settle(client, now, actions)
            return actions
        if (rtt := core.take_rtt()) is not None:
            self.stats.ping_rtt.observe(rtt)
        self._sync(client)
        applied = stream.take_applied()
        if applied is not None and stream.streaming and client.counted:
            waited = self.convergence.applied(self._node(client), applied, now)
            if waited is not None:
                self.stats.applied_latency.observe(waited)
        if hello:
            self._answer_guarded(client, now, actions)
        else:
            # Replies only (PONGs): what the history holds for this agent
            # waits for the next pass, where agents at one position share
            # one buffer.
            self._settle(client, now, actions)
        self._schedule(client, actions)
        return actions

    def paused(self, conn: H, now: float, buffered: int) -> list[Action[H]]:
        """The transport's buffer went above its high-water mark, holding
        `buffered` bytes.  The caller must stop reading from it too: a peer
        that sends but never reads would otherwise have us queue replies."""
        self._now = now
        actions: list[Action[H]] = []
        client = self.clients.get(conn)
        if client is None or client.closing:
            return actions
        self._leave(client)
        client.stream.pause_writing(now)
        client.backlog = buffered
        self._check_backlog(client, 0)
        self._settle(client, now, actions)
        self._schedule(client, actions)
        return actions

    def resumed(self, conn: H, now: float) -> list[Action[H]]:
        """The transport drained below its low-water mark."""
        self._now = now
        actions: list[Action[H]] = []
        client = self.clients.get(conn)
        if client is None or client.closing:
            return actions
        client.stream.resume_writing()
        client.backlog = 0
        self._settle(client, now, actions)
        return actions

    def close(self, conn: H, reason: CloseReason, now: float) -> list[Action[H]]:
        """Say GOODBYE(reason) to `conn` and close it once written."""
        self._now = now
        actions: list[Action[H]] = []
        client = self.clients.get(conn)
        if client is not None and not client.closing:
            self._leave(client)
            client.stream.close(reason)
            self._settle(client, now, actions)
        return actions

    def abort(self, conn: H, reason: CloseReason, now: float) -> list[Action[H]]:
        """Drop `conn` at once."""
        self._now = now
        actions: list[Action[H]] = []
        client = self.clients.get(conn)
        if client is not None and not client.closing:
            self._abort(client, reason, actions)
        return actions

    def shed(self, n: int, reason: CloseReason, now: float) -> list[Action[H]]:
        """Close `n` streaming connections with GOODBYE(reason)."""
        actions: list[Action[H]] = []
        victims = [c for c in self.clients.values() if c.stream.streaming and not c.closing][:n]
        for client in victims:
            actions += self.close(client.handle, reason, now)
        return actions

    def set_datastore_status(self, status: DatastoreStatus, now: float) -> list[Action[H]]:
        """Tell every streaming agent that takes DATASTORE_STATUS."""
        self._now = now
        actions: list[Action[H]] = []
        if status is self.datastore_status:
            return actions
        self.datastore_status = status
        self.status_frame = self._codec.encode(DatastoreStatusMsg(status))
        for client in tuple(self.clients.values()):
            if not client.closing and client.stream.send_status(self.status_frame):
                self._settle(client, now, actions)
        return actions

    # -- queries ------------------------------------------------------------

    def streaming_count(self) -> int:
        """Connections past their hello (snapshot or deltas flowing)."""
        return sum(c.stream.streaming for c in self.clients.values())

    def max_lag(self, now: float) -> float:
        """Seconds the longest-blocked agent's transport has pushed back."""
        return max(
            (
                now - since
                for c in self._solo.values()
                if (since := c.stream.paused_since) is not None
            ),
            default=0.0,
        )

    def bytes_sent(self, conn: H) -> int:
        """Bytes handed out for `conn` so far (0: unknown)."""
        client = self.clients.get(conn)
        if client is None:
            return 0
        self._sync(client)
        return client.stream.core.bytes_sent

    def next_wakeup(self) -> float | None:
        """When `handle_timer` (or the pass) must next run; None: nothing due."""
        times = []
        if self._timers:
            times.append(self._timers[0][0])
        if self._pass_pending:
            times.append(self._pass_at)
        if self._pumping:
            times.append(self._now)
        return min(times) if times else None

    # -- time ---------------------------------------------------------------

    def notify(self, now: float) -> list[Action[H]]:
        """The cache grew: schedule a pass (batches arriving before it share it)."""
        self._now = now
        self.convergence.visible(self.cache.revision, now)
        if self._pass_pending:
            return []
        self._pass_pending = True
        self._pass_at = max(now, self._next_pass_at)
        if self._pass_at > now:
            self.stats.paced_passes += 1
        return [WakeAt(self._pass_at)]

    def pass_due(self, now: float) -> bool:
        """A pass is scheduled and its time has come."""
        return self._pass_pending and now >= self._pass_at

    def run_pass(self, now: float) -> list[Action[H]]:
        """Write every agent what it lacks: one `Write` per position."""
        self._now = now
        self._pass_pending = False
        self._pass_started = now
        stats = self.stats
        stats.fanouts += 1
        actions: list[Action[H]] = []
        self._retry_waiting(now, actions)
        cache = self.cache
        target = cache.seq
        revision = cache.revision
        merged: dict[int, bytes] = {}
        for pos in tuple(self._positions.values()):
            if pos.seq == target:
                continue
            try:
                data = catch_up_data(cache, pos.seq, pos.zstd, merged)
            except HistoryUnavailable:
                for client in tuple(pos.members.values()):
                    self._abort(client, CloseReason.TOO_FAR_BEHIND, actions)
                continue
            conns = tuple(pos.members)
            n = len(conns)
            actions.append(Write(conns, data))
            stats.writes += n
            stats.bytes_sent += n * len(data)
            stats.batches_sent += n * (target - pos.seq)
            pos.sent += len(data)
            self._move(pos, target, revision)
        for client in tuple(self._solo.values()):
            try:
                self._settle(client, now, actions)
            except Exception:
                # A bug must cost one connection, not the pass for everyone.
                self._internal_error(client, "fan-out", actions)
        self._observe_fanout(target, now)
        return actions

    def pass_done(self, took: float) -> None:
        """The pass started at `run_pass` took `took` seconds, its writes
        included: the next waits `pacing` times that after it ended, and
        starts agents / `writes_per_second` after this one started at the
        earliest."""
        paced = took * (1.0 + self.pacing) if self.pacing > 0 else 0.0
        rate = self.writes_per_second
        budgeted = len(self.clients) / rate if rate > 0 else 0.0
        self._next_pass_at = self._pass_started + max(paced, budgeted)

    def handle_timer(self, now: float) -> list[Action[H]]:
        """Run every connection whose deadline is at or before `now` (each
        once: one still due waits for the next call, after the event loop had
        its turn) and hand out more of the snapshots being sent."""
        self._now = now
        actions: list[Action[H]] = []
        timers = self._timers
        due: list[_Client[H]] = []
        while timers and timers[0][0] <= now:
            deadline, _, client = heapq.heappop(timers)
            if client.deadline == deadline:
                client.deadline = None
                due.append(client)
        for client in due:
            if client.closing or client.handle not in self.clients:
                continue
            self.stats.timer_runs += 1
            try:
                self._run_timer(client, now, actions)
            except Exception:
                self._internal_error(client, "timer", actions)
                continue
            self._schedule(client, actions)
        if self._pumping:
            pumping, self._pumping = self._pumping, {}
            for client in pumping.values():
                if not client.closing:
                    self._settle(client, now, actions)
        return actions

    def housekeeping(self, now: float) -> list[Action[H]]:
        """History trimming, TLS handshake expiry, waiting hellos: about once
        a second."""
        self._now = now
        self.cache.trim(now)
        # The listener aborted these at its handshake timeout (or they failed
        # earlier); the transport never became ours, so age them out.
        limit = self.proto_limits.handshake_timeout + 1.0
        expired = [c for c, t in self.tls_pending.items() if now - t > limit]
        for conn in expired:
            del self.tls_pending[conn]
        self.stats.tls_handshake_failures += len(expired)
        actions: list[Action[H]] = []
        self._retry_waiting(now, actions)
        return actions

    # -- inside -------------------------------------------------------------

    def _run_timer(self, client: _Client[H], now: float, actions: list[Action[H]]) -> None:
        stream = client.stream
        try:
            stream.handle_timer(now)
        except ConnectionTimeout as exc:
            self.rl.log(logging.INFO, exc.code, "closing %s: %s", client.peer, exc.code)
        if stream.awaiting_start and stream.verdict is None:
            self._answer(client, now, actions)
        else:
            self._settle(client, now, actions)

    def _answer_guarded(self, client: _Client[H], now: float, actions: list[Action[H]]) -> None:
        try:
            self._answer(client, now, actions)
        except Exception:
            self._internal_error(client, "hello", actions)

    def _answer(self, client: _Client[H], now: float, actions: list[Action[H]]) -> None:
        """Answer the hello now, or remember to ask again."""
        stream = client.stream
        conn = client.handle
        was_waiting = stream.awaiting_start
        stream.applied_interval_ms = self.report_interval_ms
        if not stream.start(now, ready=self._ready(), status_frame=self.status_frame):
            self._waiting[conn] = client  # asked again after the next batch or deadline
            self._schedule(client, actions)
            return
        self._waiting.pop(conn, None)
        if was_waiting and stream.streaming:
            self._log_start(client)
            if self._is_agent(client):
                client.counted = CAP_APPLIED in stream.core.caps and self._bound(client)
                self.convergence.connected(self._node(client), reports=client.counted)
            self._solo[conn] = client
        self._settle(client, now, actions)
        self._schedule(client, actions)

    def _retry_waiting(self, now: float, actions: list[Action[H]]) -> None:
        if self._waiting and self._ready():
            for client in tuple(self._waiting.values()):
                self._answer_guarded(client, now, actions)

    def _settle(self, client: _Client[H], now: float, actions: list[Action[H]]) -> None:
        """Write what `client` has to be written now and act on its verdicts.
        In a position: replies and control frames only (the history comes
        with the position's next pass).  Otherwise: replies, snapshot frames
        up to the transport's high-water mark (more at the next wake, unless
        it pushes back), then the history it lacks; once caught up and
        writable it joins the position at the head."""
        if client.closing:
            return
        stream = client.stream
        if client.position is not None and stream.verdict is None and not stream.closed:
            out = stream.next_reply()
            if out is not None:
                self._write(client, out, actions)
            if stream.verdict is None and not stream.closed:
                return
        self._leave(client)
        conn = client.handle
        snapshot = stream.sending_snapshot
        budget = self.limits.write_high_water
        written = 0
        while stream.verdict is None and (out := stream.next_output()) is not None:
            self._write(client, out, actions)
            written += len(out)
            if written >= budget and stream.sending_snapshot:
                if stream.paused_since is None:
                    self._pumping[conn] = client
                    actions.append(WakeAt(now))
                break
        if snapshot and not stream.sending_snapshot and stream.snapshot_started is not None:
            self.stats.snapshot_send.observe(now - stream.snapshot_started)
            stream.snapshot_started = None
        if stream.verdict is not None:
            self._abort(client, stream.verdict, actions)
        elif stream.closed:
            client.closing = True
            self._solo.pop(conn, None)
            self._pumping.pop(conn, None)
            self._waiting.pop(conn, None)
            actions.append(Close(conn, stream.core.close_reason or CloseReason.PEER))
        elif (
            stream.streaming
            and not stream.sending_snapshot
            and stream.paused_since is None
            and stream.seq == self.cache.seq
        ):
            self._join(client)

    def _write(self, client: _Client[H], data: bytes, actions: list[Action[H]]) -> None:
        self.stats.bytes_sent += len(data)
        self.stats.writes += 1
        actions.append(Write((client.handle,), data))
        self._check_backlog(client, len(data))

    def _check_backlog(self, client: _Client[H], more: int) -> None:
        """While the transport pushes back, what it may hold unwritten is the
        backlog; the stream judges it against its limit (`over_buffer`)."""
        if client.stream.paused_since is None:
            return
        client.backlog += more
        client.stream.over_buffer(client.backlog)

    def _abort(self, client: _Client[H], reason: CloseReason, actions: list[Action[H]]) -> None:
        level = logging.WARNING if reason is CloseReason.SLOW_CLIENT else logging.INFO
        self.rl.log(level, f"abort:{reason}", "dropping %s: %s", client.peer, reason)
        self._leave(client)
        client.stream.abort(reason)
        client.closing = True
        conn = client.handle
        self._solo.pop(conn, None)
        self._pumping.pop(conn, None)
        self._waiting.pop(conn, None)
        actions.append(Abort(conn, reason))

    def _internal_error(self, client: _Client[H], where: str, actions: list[Action[H]]) -> None:
        """A bug of ours: it costs that connection, never the server."""
        self.stats.internal_errors += 1
        log.exception("internal error in %s for %s; dropping that connection", where, client.peer)
        self._abort(client, CloseReason.INTERNAL_ERROR, actions)

    # -- positions ------------------------------------------------------------

    def _join(self, client: _Client[H]) -> None:
        stream = client.stream
        key = (stream.seq, CAP_ZSTD in stream.core.caps)
        pos = self._positions.get(key)
        if pos is None:
            pos = self._positions[key] = _Position(stream.seq, stream.sent_revision, key[1])
        pos.members[client.handle] = client
        client.position = pos
        client.base = pos.sent
        self._solo.pop(client.handle, None)

    def _leave(self, client: _Client[H]) -> None:
        """Take `client` out of its position, its stream brought up to it."""
        pos = client.position
        if pos is None:
            return
        self._sync(client)
        del pos.members[client.handle]
        client.position = None
        if not pos.members and self._positions.get((pos.seq, pos.zstd)) is pos:
            del self._positions[pos.seq, pos.zstd]
        if client.stream.streaming and not client.closing:
            self._solo[client.handle] = client

    @staticmethod
    def _sync(client: _Client[H]) -> None:
        """Bring the stream's own counters up to its position's."""
        pos = client.position
        if pos is None:
            return
        stream = client.stream
        stream.core.bytes_sent += pos.sent - client.base
        client.base = pos.sent
        stream.seq = pos.seq
        stream.sent_revision = pos.revision

    def _move(self, pos: _Position[H], target: int, revision: int) -> None:
        """`pos` was written up to `target`: re-key it, merging with a
        position already there (the smaller one's members rebased)."""
        key = (pos.seq, pos.zstd)
        if self._positions.get(key) is pos:
            del self._positions[key]
        pos.seq = target
        pos.revision = revision
        key = (target, pos.zstd)
        there = self._positions.get(key)
        if there is None:
            self._positions[key] = pos
            return
        small, big = (pos, there) if len(pos.members) <= len(there.members) else (there, pos)
        shift = big.sent - small.sent
        for member in small.members.values():
            member.base += shift
            member.position = big
        big.members.update(small.members)
        self._positions[key] = big

    # -- agents -------------------------------------------------------------

    def _retune_reports(self, actions: list[Action[H]]) -> None:
        """Keep the agents' APPLIED reports within the budget as their count
        changes: once the interval the count calls for is half again longer
        or shorter than the one announced, tell every reporting agent (one
        frame, encoded once).  Agents then send at most 1.5 times the budget,
        in O(log agents) waves of announcements, not one per connection."""
        budget = self.limits.applied_reports_per_second
        if budget <= 0:
            return
        want = report_interval_ms(len(self.clients), budget)
        have = self.report_interval_ms
        if 2 * want < 3 * have and 2 * have < 3 * want:
            return
        self.report_interval_ms = want
        self.stats.applied_interval_changes += 1
        frame = self._codec.encode(AppliedInterval(want))
        for client in self.clients.values():
            stream = client.stream
            if not client.closing and stream.streaming and stream.core.send_applied_interval(frame):
                self._settle(client, self._now, actions)

    @staticmethod
    def _node(client: _Client[H]) -> str:
        hello = client.stream.core.hello
        return hello.node if hello is not None else "?"

    @staticmethod
    def _is_agent(client: _Client[H]) -> bool:
        """A node agent, not a leaf replica syncing from us (no dataplane)."""
        return CAP_REPLICA not in client.stream.core.caps

    def _bound(self, client: _Client[H]) -> bool:
        """Whether `client` may speak for its node: without TLS anyone may
        (nothing says otherwise); with TLS only a certificate naming the node
        (CN, or the last path segment of a URI SAN).  Counted and logged when
        it may not."""
        node = self._node(client)
        if client.identities is None or node_in_identities(node, client.identities):
            return True
        self.stats.applied_unverified += 1
        self.rl.log(
            logging.WARNING,
            "unbound",
            "agent %s from %s: its certificate does not name that node; its APPLIED reports"
            " are not counted",
            node,
            client.peer,
        )
        return False

    def _log_start(self, client: _Client[H]) -> None:
        stream = client.stream
        hello = stream.core.hello
        offered = hello.revision if hello is not None else 0
        if stream.snapshot_started is not None:
            how = f"snapshot at revision {self.cache.revision}"
            if offered:
                how += f" (it offered revision {offered})"
        else:
            how = f"resumed from revision {offered}"
        self.connlog.info("agent %s from %s connected: %s", self._node(client), client.peer, how)

    def _observe_fanout(self, target: int, now: float) -> None:
        """One latency sample per batch this pass delivered (not per agent),
        from when its first datastore event was received."""
        start, self._fanned_seq = self._fanned_seq, target
        if target <= start:
            return
        try:
            batches = self.cache.batches_after(start)
        except HistoryUnavailable:
            return  # trimmed or reloaded meanwhile: nothing to attribute
        for batch in batches:
            if batch.seq <= target and batch.updates and batch.created:
                self.stats.fanout_latency.observe(max(now - batch.created, 0.0))

    def _schedule(self, client: _Client[H], actions: list[Action[H]]) -> None:
        """Make sure the timer heap wakes `client` by its stream's deadline."""
        if client.closing or client.handle not in self.clients:
            return
        deadline = client.stream.next_deadline()
        if deadline is None or (client.deadline is not None and client.deadline <= deadline):
            return  # an entry at or before the deadline is already queued
        client.deadline = deadline
        heapq.heappush(self._timers, (deadline, next(self._timer_ids), client))
        if self._timers[0][2] is client:
            actions.append(WakeAt(deadline))
