"""The sans-I/O protocol core: bytes in, messages out, bytes to send.

No sockets, no asyncio, no clock: every call that cares about time takes
`now` (seconds, any monotonic origin).  The asyncio server, the asyncio client
and the gevent Locust user all drive these classes.

A caller must:
  * pass every received byte to `receive_data` and act on the returned messages;
  * after every call, send what `data_to_send` returns, in order;
  * call `handle_timer(now)` once `now >= next_deadline()` (it sends pings
    and enforces the handshake, idle, pong and partial-frame timeouts);
  * close the transport once `state` is CLOSED and the pending bytes are sent.
`receive_data` raises ProtocolError and `handle_timer` raises ConnectionTimeout; in
both cases a GOODBYE naming the reason has already been queued.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from syncproto.errors import (
    ConnectionTimeout,
    HandshakeError,
    MalformedMessage,
    ProtocolError,
    RateLimited,
    UsageError,
)
from syncproto.frames import DEFAULT_MAX_FRAME, FrameDecoder
from syncproto.messages import (
    CAP_APPLIED,
    CAP_DATASTORE_STATUS,
    CAP_REPLICA,
    CAP_RESUME,
    CAP_ZSTD,
    KNOWN_TYPES,
    PROTOCOL_VERSION,
    Applied,
    AppliedInterval,
    ClientHello,
    Codec,
    DatastoreStatusMsg,
    Delta,
    Goodbye,
    Message,
    Ping,
    Pong,
    Progress,
    Sender,
    ServerHello,
    SnapshotChunk,
    SnapshotEnd,
)
from syncproto.vocabulary import CloseReason, SyncMode

SERVER_CAPS = frozenset({CAP_ZSTD, CAP_RESUME, CAP_DATASTORE_STATUS, CAP_APPLIED, CAP_REPLICA})
CLIENT_CAPS = frozenset({CAP_ZSTD, CAP_RESUME, CAP_DATASTORE_STATUS, CAP_APPLIED})
# What a leaf replica advertises upstream: no dataplane, so no APPLIED.
REPLICA_CAPS = frozenset({CAP_ZSTD, CAP_RESUME, CAP_DATASTORE_STATUS, CAP_REPLICA})


class State(Enum):
    """Where a connection stands: exchanging hellos, open, or closed."""

    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits; both sides use the same knobs.

    `max_frame` bounds what we send (and, unless `max_inbound_frame` is set,
    what we accept).  A server sets the inbound knobs tight: a client only
    ever sends a hello, pongs, pings and a goodbye.
    """

    max_frame: int = DEFAULT_MAX_FRAME
    handshake_timeout: float = 10.0
    idle_timeout: float = 60.0
    ping_interval: float = 10.0
    # A ping not answered (by anything at all) within this is a dead peer.
    pong_timeout: float = 10.0
    max_inbound_frame: int = 0  # 0: max_frame
    accept_compressed: bool = True
    # Token bucket over inbound messages (0: unlimited).
    inbound_msgs_per_sec: float = 0.0
    inbound_burst: int = 100
    # A frame left incomplete this long is a stalled peer (0: no limit).
    partial_frame_timeout: float = 0.0


class _Core:
    def __init__(self, *, now: float, limits: Limits) -> None:
        self.limits = limits
        self.codec = Codec(max_frame=limits.max_frame, accept_compressed=limits.accept_compressed)
        self._decoder = FrameDecoder(limits.max_inbound_frame or limits.max_frame, KNOWN_TYPES)
        self._out: list[bytes] = []
        self.state = State.HANDSHAKE
        self.caps: frozenset[str] = frozenset()
        self.close_reason: CloseReason | None = None
        self.peer_reason = ""  # what the peer's GOODBYE said, if it sent one
        self.bytes_received = 0
        self.bytes_sent = 0
        self._started = now
        self._last_recv = now
        self._ping_token = 0
        self._ping_sent_at: float | None = None  # None: no ping outstanding
        # Kept apart from _ping_sent_at (which any received byte clears) so a
        # pong that arrives after other frames still gives a round trip.
        self._rtt_ping_at: float | None = None
        self.last_rtt: float | None = None  # seconds, of the latest answered ping
        self._rtt_fresh = False  # last_rtt not taken yet
        self._partial_since: float | None = None
        self._tokens = float(limits.inbound_burst)
        self._tokens_at = now

    @property
    def buffered_bytes(self) -> int:
        """Received bytes held for an incomplete frame."""
        return self._decoder.buffered

    # -- output ----------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Bytes to write, in order; each call drains the queue."""
        out, self._out = self._out, []
        return out

    def _queue(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self._out.append(data)

    def _send(self, msg: Message, *, compress: bool = False) -> None:
        self._queue(self.codec.encode(msg, compress=compress))

    def close(self, reason: CloseReason, detail: str = "") -> None:
        """Queue a GOODBYE and stop accepting anything else."""
        if self.state is State.CLOSED:
            return
        self._send(Goodbye(reason.value, detail))
        self.state = State.CLOSED
        self.close_reason = reason

    # -- input -----------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Message]:
        """Feed received bytes; return the messages the caller must act on.
        Pings are answered and pongs consumed here."""
        if self.state is State.CLOSED:
            return []
        self.bytes_received += len(data)
        self._last_recv = now
        self._ping_sent_at = None
        out: list[Message] = []
        try:
            frames = self._decoder.feed(data)
            if self._decoder.buffered:
                if self._partial_since is None or frames:
                    self._partial_since = now
            else:
                self._partial_since = None
            if frames and self.limits.inbound_msgs_per_sec:
                self._spend(len(frames), now)
            for frame in frames:
                msg = self.codec.decode(frame)
                if isinstance(msg, Ping):
                    self._send(Pong(msg.token))
                elif isinstance(msg, Pong):
                    self._pong(msg.token, now)
                elif isinstance(msg, Goodbye):
                    self.state = State.CLOSED
                    self.close_reason = CloseReason.PEER
                    self.peer_reason = msg.reason
                    out.append(msg)
                    break
                else:
                    self._admit(msg)
                    self._check(msg)
                    out.append(msg)
        except ProtocolError as exc:
            self.close(exc.code, str(exc)[:200])
            raise
        return out

    def _pong(self, token: int, now: float) -> None:
        sent = self._rtt_ping_at
        if sent is not None and token == self._ping_token:
            self._rtt_ping_at = None
            self.last_rtt = now - sent
            self._rtt_fresh = True

    def take_rtt(self) -> float | None:
        """The round trip of a ping answered since the last call, else None."""
        if not self._rtt_fresh:
            return None
        self._rtt_fresh = False
        return self.last_rtt

    def _spend(self, n: int, now: float) -> None:
        rate = self.limits.inbound_msgs_per_sec
        burst = self.limits.inbound_burst
        self._tokens = min(burst, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        self._tokens -= n
        if self._tokens < 0:
            raise RateLimited(f"more than {rate:g} messages/s (burst {burst}) from this peer")

    # Set by each side: who we are, what the peer must open with.
    _US: Sender
    _PEER_HELLO: type[Message]

    def _admit(self, msg: Message) -> None:
        """The checks every message gets from what it declares (messages.py):
        the handshake first, then the right sender, the handshake messages
        only during it, and the capability it needs."""
        name = type(msg).__name__
        peer = "server" if self._US is Sender.CLIENT else "client"
        if self.state is State.HANDSHAKE and not isinstance(msg, self._PEER_HELLO):
            raise HandshakeError(f"expected {self._PEER_HELLO.TYPE.name}, got {name}")
        if msg.SENT_BY is self._US or (msg.HANDSHAKE and self.state is not State.HANDSHAKE):
            raise MalformedMessage(f"unexpected {name} from {peer}")
        if msg.CAP is not None and self.state is State.OPEN and msg.CAP not in self.caps:
            raise MalformedMessage(f"{msg.TYPE.name} without the capability")

    def _check(self, msg: Message) -> None:
        """What a message admitted by `_admit` does to this side's state."""
        raise NotImplementedError

    # -- time ------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `handle_timer` must next run (None once closed)."""
        if self.state is State.CLOSED:
            return None
        limits = self.limits
        deadline = self._last_recv + limits.idle_timeout
        if self.state is State.HANDSHAKE:
            deadline = min(deadline, self._started + limits.handshake_timeout)
        sent = self._ping_sent_at
        if sent is None:
            deadline = min(deadline, self._last_recv + limits.ping_interval)
        elif limits.pong_timeout:
            deadline = min(deadline, sent + limits.pong_timeout)
        if self._partial_since is not None and limits.partial_frame_timeout:
            deadline = min(deadline, self._partial_since + limits.partial_frame_timeout)
        return deadline

    def handle_timer(self, now: float) -> None:
        """Run what is due at `now`: send a ping when the peer has been quiet,
        enforce the handshake, idle, pong and partial-frame timeouts (raises
        ConnectionTimeout with a GOODBYE queued).  Calling it early is harmless."""
        if self.state is State.CLOSED:
            return
        limits = self.limits
        # Each test is `now >= base + limit`, the very sum next_deadline()
        # returns: `now - base >= limit` can be false at that deadline by
        # rounding (10.0 - 1e-14), and a timer due but never acting is run
        # again at once, forever.
        last = self._last_recv
        if self.state is State.HANDSHAKE and now >= self._started + limits.handshake_timeout:
            self._time_out(CloseReason.HANDSHAKE_TIMEOUT)
        if now >= last + limits.idle_timeout:
            self._time_out(CloseReason.IDLE_TIMEOUT)
        sent = self._ping_sent_at
        if sent is not None and limits.pong_timeout and now >= sent + limits.pong_timeout:
            self._time_out(CloseReason.PONG_TIMEOUT)
        partial = self._partial_since
        if (
            partial is not None
            and limits.partial_frame_timeout
            and now >= partial + limits.partial_frame_timeout
        ):
            self._time_out(CloseReason.FRAME_TIMEOUT)
        if sent is None and now >= last + limits.ping_interval:
            self._ping_token += 1
            self._ping_sent_at = self._rtt_ping_at = now
            self._send(Ping(self._ping_token))

    def _time_out(self, reason: CloseReason) -> None:
        self.close(reason)
        raise ConnectionTimeout(reason)


class ServerConnection(_Core):
    """Server side of one agent connection.

    After `receive_data` returns a ClientHello the caller must call `accept`
    (or `close`), then send the snapshot or the resumed deltas with
    `send_frames`; later batches go through `send_frames` too.
    """

    _US = Sender.SERVER
    _PEER_HELLO = ClientHello

    def __init__(
        self,
        *,
        server_id: str,
        now: float,
        limits: Limits = Limits(),
        caps: frozenset[str] = SERVER_CAPS,
    ) -> None:
        super().__init__(now=now, limits=limits)
        self._server_id = server_id
        self._our_caps = caps
        self.hello: ClientHello | None = None
        # The highest revision the client's dataplane reported applied (0:
        # none yet), and whether that changed since take_applied().
        self.applied_revision = 0
        self._applied_changed = False

    def take_applied(self) -> int | None:
        """The client's applied revision if it reported a higher one since
        the last call, else None."""
        if not self._applied_changed:
            return None
        self._applied_changed = False
        return self.applied_revision

    def _check(self, msg: Message) -> None:
        if isinstance(msg, Applied):
            # Reports may cross on the wire with nothing lost: keep the highest.
            if msg.revision > self.applied_revision:
                self.applied_revision = msg.revision
                self._applied_changed = True
        elif isinstance(msg, ClientHello):
            if self.hello is not None:
                raise HandshakeError("CLIENT_HELLO sent twice")
            if msg.version < 1:
                raise HandshakeError(f"unsupported protocol version {msg.version}")
            self.hello = msg
            self.caps = self._our_caps & msg.caps

    @property
    def wants_datastore_status(self) -> bool:
        """The client takes DATASTORE_STATUS messages."""
        return CAP_DATASTORE_STATUS in self.caps

    def send_applied_interval(self, frame: bytes) -> bool:
        """Queue a pre-encoded APPLIED_INTERVAL frame if the client reports
        (CAP_APPLIED) and the connection is open; True if queued."""
        if self.state is not State.OPEN or CAP_APPLIED not in self.caps:
            return False
        self._queue(frame)
        return True

    def accept(self, *, sync: SyncMode = SyncMode.SNAPSHOT, applied_interval_ms: int = 0) -> None:
        """Queue the server hello; the caller must then queue the current
        datastore status (if `wants_datastore_status`) and the stream.
        `applied_interval_ms` asks a client that reports APPLIED to report at
        most that often (0: its own default); it is sent only to such clients."""
        if self.hello is None or self.state is not State.HANDSHAKE:
            raise UsageError("accept() needs a received hello, once")
        self._send(
            ServerHello(
                server=self._server_id,
                caps=self.caps,
                version=PROTOCOL_VERSION,
                sync=sync,
                max_frame=self.codec.max_frame,
                applied_interval_ms=applied_interval_ms if CAP_APPLIED in self.caps else 0,
            )
        )
        self.state = State.OPEN

    def send_frames(self, frames: Iterable[bytes]) -> None:
        """Queue pre-encoded frames (shared by every client; not copied)."""
        if self.state is not State.OPEN:
            raise UsageError(f"send_frames() in state {self.state.value}")
        for f in frames:
            self._queue(f)

    def send_frame_now(self, frame: bytes) -> bytes:
        """The fan-out fast path: queue one pre-encoded frame and return
        everything to write now (it is `data_to_send()`, joined).  With
        nothing else queued, the shared frame itself comes back, uncopied."""
        if self.state is not State.OPEN:
            raise UsageError(f"send_frame_now() in state {self.state.value}")
        self.bytes_sent += len(frame)
        if not self._out:
            return frame
        self._out.append(frame)
        out, self._out = self._out, []
        return b"".join(out)


class StreamPhase(Enum):
    """Where a client's stream stands, within an open connection."""

    HELLO = "hello"  # waiting for SERVER_HELLO
    SNAPSHOT = "snapshot"  # SNAPSHOT_CHUNKs until SNAPSHOT_END
    RESUMED = "resumed"  # resumed: the first DELTA or PROGRESS may straddle our revision
    SYNCED = "synced"  # DELTAs and PROGRESS, each continuing the last


# The stream messages each phase takes, and the phase each leads to (a
# SERVER_HELLO leads to SNAPSHOT or RESUMED as it says).  Anything else in a
# phase breaks the order: "<MESSAGE> outside a snapshot" and the like.
# Control messages (DATASTORE_STATUS, APPLIED_INTERVAL, PING, PONG,
# GOODBYE) are not part of the stream and are taken in every open phase.
STREAM_TRANSITIONS: dict[tuple[StreamPhase, type[Message]], StreamPhase | None] = {
    (StreamPhase.HELLO, ServerHello): None,  # decided by its `sync`
    (StreamPhase.SNAPSHOT, SnapshotChunk): StreamPhase.SNAPSHOT,
    (StreamPhase.SNAPSHOT, SnapshotEnd): StreamPhase.SYNCED,
    (StreamPhase.RESUMED, Delta): StreamPhase.SYNCED,
    (StreamPhase.RESUMED, Progress): StreamPhase.SYNCED,
    (StreamPhase.SYNCED, Delta): StreamPhase.SYNCED,
    (StreamPhase.SYNCED, Progress): StreamPhase.SYNCED,
}


class ClientConnection(_Core):
    """Client side.  Queues the hello at construction.  Checks the order of
    the stream (hello, snapshot chunks, snapshot end, then deltas and
    progress: STREAM_TRANSITIONS) and its revision continuity; digests are
    the caller's to check against the state it holds."""

    _US = Sender.CLIENT
    _PEER_HELLO = ServerHello

    def __init__(
        self,
        *,
        node: str,
        now: float,
        revision: int = 0,
        digest: str = "",
        limits: Limits = Limits(),
        caps: frozenset[str] = CLIENT_CAPS,
        client: str = "felix_client",
    ) -> None:
        super().__init__(now=now, limits=limits)
        self._our_caps = caps
        self.server_hello: ServerHello | None = None
        self.phase = StreamPhase.HELLO
        self.revision = revision
        self.datastore_status: DatastoreStatusMsg | None = None
        # How often the server wants APPLIED reports, at most (0: unsaid):
        # from its hello, then from APPLIED_INTERVAL.
        self.applied_interval_ms = 0
        self._send(
            ClientHello(
                node=node,
                caps=caps,
                version=PROTOCOL_VERSION,
                revision=revision,
                digest=digest,
                client=client,
            )
        )

    def send_applied(self, revision: int) -> bool:
        """Queue an APPLIED report of `revision` if the server takes them
        (advertised CAP_APPLIED) and the connection is open; True if queued.
        The caller decides how often: at most once per reporting interval."""
        if self.state is not State.OPEN or CAP_APPLIED not in self.caps:
            return False
        self._send(Applied(revision))
        return True

    @property
    def in_snapshot(self) -> bool:
        """A snapshot is being received."""
        return self.phase is StreamPhase.SNAPSHOT

    @property
    def synced(self) -> bool:
        """A complete state has been received (snapshot or resume)."""
        return self.phase in (StreamPhase.RESUMED, StreamPhase.SYNCED)

    def _check(self, msg: Message) -> None:
        if isinstance(msg, DatastoreStatusMsg):
            self.datastore_status = msg
            return
        if isinstance(msg, AppliedInterval):
            self.applied_interval_ms = msg.interval_ms
            return
        key = (self.phase, type(msg))
        if key not in STREAM_TRANSITIONS:
            raise MalformedMessage(self._out_of_order(msg))
        if isinstance(msg, ServerHello):
            self._hello(msg)
        elif isinstance(msg, SnapshotChunk | SnapshotEnd):
            if self.revision and msg.revision != self.revision:
                what = "revisions differ within one snapshot"
                if isinstance(msg, SnapshotEnd):
                    what = "revision differs from its chunks"
                raise MalformedMessage(f"{msg.TYPE.name} {what}")
            self.revision = msg.revision
        elif isinstance(msg, Delta | Progress):
            self._continue(msg)
        if (next_phase := STREAM_TRANSITIONS[key]) is not None:
            self.phase = next_phase

    def _out_of_order(self, msg: Message) -> str:
        name = msg.TYPE.name
        if isinstance(msg, SnapshotChunk | SnapshotEnd):
            return f"{name} outside a snapshot"
        if isinstance(msg, Delta | Progress):
            return f"{type(msg).__name__} before the snapshot ended"
        return f"unexpected {type(msg).__name__} from server"  # pragma: no cover

    def _hello(self, msg: ServerHello) -> None:
        if msg.version < 1:
            raise HandshakeError(f"unsupported protocol version {msg.version}")
        if not msg.caps <= self._our_caps:
            extra = sorted(msg.caps - self._our_caps)
            raise HandshakeError(f"server claims capabilities we never offered: {extra}")
        if msg.sync is SyncMode.RESUME and self.revision == 0:
            raise HandshakeError("server offered resume but we hold no revision")
        self.server_hello = msg
        self.caps = msg.caps
        self.applied_interval_ms = msg.applied_interval_ms
        self.state = State.OPEN
        if msg.sync is SyncMode.SNAPSHOT:
            self.phase = StreamPhase.SNAPSHOT
            self.revision = 0
        else:
            self.phase = StreamPhase.RESUMED

    def _continue(self, msg: Delta | Progress) -> None:
        """A delta or progress must continue from our revision; after a
        resume the first may start before it (the server cut its batches
        differently), which whole values make safe."""
        straddles = self.phase is StreamPhase.RESUMED and msg.prev_revision <= self.revision
        if (
            msg.revision < msg.prev_revision
            or (msg.prev_revision != self.revision and not straddles)
            or msg.revision < self.revision
        ):
            raise MalformedMessage(
                f"revision gap: at {self.revision}, got {msg.prev_revision}->{msg.revision}"
            )
        self.revision = msg.revision
