"""The server side of one agent's stream, sans-I/O.

A `ServerStream` owns everything about one connection that is not a socket:
the protocol state machine (`ServerConnection`), the decision how to answer
the hello (resume, wait for our cache, or snapshot), the position in the
cache's history the client has reached, the snapshot being pumped, and the
slow-client verdicts.  The asyncio listener only moves bytes and reports flow
control; the same stream can be driven by a test with a fake `now`.

A caller must:
  * feed received bytes to `receive_data`; when it returns True (the hello
    arrived) call `start` (again later while it returns False);
  * write what `next_output()` returns until it returns None, after every
    call that may produce output, and tell `over_buffer()` how many bytes
    the transport may hold unwritten (the fan-out core counts them from the
    transport's push-back);
  * during a fan-out pass, write what `catch_up()` returns;
  * report `pause_writing(now)` / `resume_writing()` from the transport;
  * call `handle_timer(now)` once `now >= next_deadline()`;
  * drop the transport at once (no flush) when `verdict` is set, and close it
    once `closed` is true and the output is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from snapshot import HistoryUnavailable, SnapshotCache
from snapshot.digest import format_digest, parse_digest
from syncproto.connection import Limits, ServerConnection, State
from syncproto.errors import MalformedMessage
from syncproto.messages import CAP_RESUME, CAP_ZSTD, Applied, ClientHello, Progress
from syncproto.vocabulary import CloseReason, SyncMode


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """Per-stream limits the server enforces on a client."""

    max_buffer_bytes: int = 8 * 1024 * 1024  # unwritten bytes before SLOW_CLIENT
    max_lag: float = 30.0  # seconds the transport may push back before SLOW_CLIENT
    resume_wait: float = 5.0  # how long a client ahead of our cache may wait for it


@dataclass(slots=True)
class StreamStats:
    """Counters a server shares between all its streams."""

    snapshots_sent: int = 0
    snapshot_bytes_sent: int = 0
    resumes: int = 0
    resume_refused: int = 0
    batches_sent: int = 0


def catch_up_data(history: SnapshotCache, seq: int, zstd: bool, merged: dict[int, bytes]) -> bytes:
    """What a client at `seq` lacks: the one batch's frame (the common case,
    memoised under `seq`), or, when it lacks several (a resume, a slow
    client), one merged DELTA, compressed for clients that take zstd
    (memoised under a negative key per variant, and in the cache across
    passes).  `merged` is the caller's memo for one fan-out pass.  Raises
    HistoryUnavailable when the history no longer reaches back to `seq`."""
    known = merged.get(seq)
    if known is not None:
        return known
    batches = history.batches_after(seq)
    if len(batches) == 1:
        single = merged[seq] = batches[0].frame
        return single
    key = -2 * seq - 1 - zstd
    known = merged.get(key)
    if known is not None:
        return known
    data = history.catch_up_frame(seq, compressed=zstd) or b"".join(b.frame for b in batches)
    merged[key] = data
    return data


class ServerStream:
    """One agent's stream over a shared `SnapshotCache`."""

    __slots__ = (
        "_history",
        "_policy",
        "_reported",
        "_snapshot",
        "_snapshot_pos",
        "_stats",
        "_taken",
        "_wait_until",
        "applied_interval_ms",
        "core",
        "paused_since",
        "sent_revision",
        "seq",
        "snapshot_started",
        "verdict",
    )

    def __init__(
        self,
        history: SnapshotCache,
        *,
        server_id: str,
        now: float,
        limits: Limits,
        policy: StreamPolicy,
        stats: StreamStats,
    ) -> None:
        self.core = ServerConnection(server_id=server_id, now=now, limits=limits)
        self._history = history
        self._policy = policy
        self._stats = stats
        self.seq = -1  # batch sequence number reached; -1 until streaming
        self.paused_since: float | None = None
        self.verdict: CloseReason | None = None  # set: drop the transport now
        self._wait_until: float | None = None  # a client ahead of us waits until then
        self._snapshot: list[bytes] | None = None
        self._snapshot_pos = 0
        self.snapshot_started: float | None = None  # set while a snapshot is being written
        # Asked of a client that reports APPLIED (0: its default); the server
        # sets it from its agent count before the hello is answered.
        self.applied_interval_ms = 0
        # The highest revision this connection has handed the client (a
        # snapshot's, a resume point we verified, the batches written since):
        # nobody can have applied more than that from us.
        self.sent_revision = 0
        self._reported = 0  # the highest APPLIED the client sent
        self._taken = 0  # the highest value take_applied returned

    # -- state -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """No more input is accepted; close the transport once written."""
        return self.core.state is State.CLOSED

    @property
    def streaming(self) -> bool:
        """The hello has been answered and the client is being fed."""
        return self.seq >= 0

    @property
    def awaiting_start(self) -> bool:
        """The hello arrived but has not been answered yet."""
        core = self.core
        return core.state is State.HANDSHAKE and core.hello is not None

    # -- input -------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> bool:
        """Feed received bytes.  True when the hello has just arrived: the
        caller must then `start`.  Raises ProtocolError (a GOODBYE naming the
        reason is queued)."""
        hello = False
        for msg in self.core.receive_data(data, now):
            if isinstance(msg, Applied):
                self._check_applied(msg.revision)
            hello = hello or isinstance(msg, ClientHello)
        return hello

    def _check_applied(self, revision: int) -> None:
        # Nobody can have applied a revision this replica has not reached
        # (a client's own hello revision proves nothing): such a report
        # would make convergence look complete before it is.
        if revision > self._history.revision:
            detail = f"APPLIED {revision} is past revision {self._history.revision}"
            self.core.close(CloseReason.MALFORMED, detail)
            raise MalformedMessage(detail)

    def take_applied(self) -> int | None:
        """The client's applied revision if it reported a higher one since
        the last call, else None; never more than this connection has sent
        it (a report repeated from an earlier replica that was further
        ahead counts up to what this one has given it)."""
        fresh = self.core.take_applied()
        if fresh is not None:
            self._reported = max(self._reported, fresh)
        value = min(self._reported, self.sent_revision)
        if value <= self._taken:
            return None
        self._taken = value
        return value

    def start(self, now: float, *, ready: bool, status_frame: bytes) -> bool:
        """Answer the hello: resume where the client's revision and digest
        allow it, else a full snapshot.  False: ask again later (`ready` is
        False, or the client is ahead of our cache and may wait for it until
        `next_deadline()`).  `status_frame` is the current DATASTORE_STATUS."""
        if not self.awaiting_start:
            return True
        if not ready:
            # A resume wait starts afresh once we are ready; a stale one
            # would be a deadline long past, due on every pass.
            self._wait_until = None
            return False
        decision = self._decide(now)
        if decision is None:
            return False
        if decision >= 0:
            self._accept(SyncMode.RESUME, status_frame)
            self._stats.resumes += 1
            self.seq = decision
            hello = self.core.hello
            assert hello is not None
            # Verified by `_decide`: the client holds our state at that revision.
            self.sent_revision = min(hello.revision, self._history.revision)
            if decision == self._history.seq and hello.revision < self._history.revision:
                # Same state, older revision: a PROGRESS brings it forward.
                current = self._history.current
                progress = Progress(hello.revision, current.revision, format_digest(current.digest))
                self.core.send_frames((self.core.codec.encode(progress),))
                self.sent_revision = current.revision
            return True
        self._accept(SyncMode.SNAPSHOT, status_frame)
        snap, frames = self._history.snapshot_frames(compressed=CAP_ZSTD in self.core.caps)
        self.seq = snap.seq
        self.sent_revision = snap.revision
        self._snapshot = frames
        self._snapshot_pos = 0
        self.snapshot_started = now
        self._stats.snapshots_sent += 1
        return True

    def _decide(self, now: float) -> int | None:
        """The resume decision, all of it: a seq to resume from (>= 0), -1
        for a full snapshot, or None to wait for our cache."""
        core = self.core
        hello = core.hello
        assert hello is not None
        history = self._history
        if CAP_RESUME not in core.caps or hello.revision <= 0:
            return -1
        try:
            digest: int | None = parse_digest(hello.digest) if hello.digest else None
        except ValueError:
            digest = None
        current = history.current
        if digest == current.digest and hello.revision <= current.revision:
            # Same state as ours, whatever lies between the revisions (our
            # history may not reach back that far): resume at the head.
            self._wait_until = None
            return history.seq
        seq = history.resume_seq(hello.revision, digest)
        if seq is not None:
            self._wait_until = None
            return seq
        if hello.revision > history.revision:
            # The client saw a revision we have not reached yet (it came from
            # a replica further ahead): give our cache a moment to catch up.
            if self._wait_until is None:
                self._wait_until = now + self._policy.resume_wait
            if now < self._wait_until:
                return None
        self._wait_until = None
        self._stats.resume_refused += 1
        return -1

    def _accept(self, sync: SyncMode, status_frame: bytes) -> None:
        core = self.core
        core.accept(sync=sync, applied_interval_ms=self.applied_interval_ms)
        if core.wants_datastore_status:
            core.send_frames((status_frame,))

    def send_status(self, frame: bytes) -> bool:
        """Queue a DATASTORE_STATUS frame if this client takes them; True if
        queued (the caller must then write `next_output()`)."""
        core = self.core
        if core.state is State.OPEN and core.wants_datastore_status:
            core.send_frames((frame,))
            return True
        return False

    # -- output ------------------------------------------------------------

    @property
    def sending_snapshot(self) -> bool:
        """Snapshot frames remain to be handed out by `next_output`."""
        return self._snapshot is not None

    def next_reply(self) -> bytes | None:
        """Replies and control frames queued by the core (PONGs, a GOODBYE),
        or None; never snapshot or history data."""
        if self.verdict is not None:
            return None
        out = self.core.data_to_send()
        if not out:
            return None
        return out[0] if len(out) == 1 else b"".join(out)

    def next_output(self) -> bytes | None:
        """The next bytes to write, or None when nothing more may be written
        now: replies and control frames first, then snapshot frames one at a
        time while the transport accepts them, then what the client has not
        had of the history."""
        if self.verdict is not None:
            return None
        core = self.core
        out = core.data_to_send()
        if out:
            return out[0] if len(out) == 1 else b"".join(out)
        if core.state is not State.OPEN:
            return None
        frames = self._snapshot
        if frames is not None:
            if self.paused_since is not None:
                return None
            if self._snapshot_pos < len(frames):
                frame = frames[self._snapshot_pos]
                self._snapshot_pos += 1
                self._stats.snapshot_bytes_sent += len(frame)
                core.bytes_sent += len(frame)
                return frame
            self._snapshot = None
        return self.catch_up({}, self._history.seq)

    def catch_up(self, merged: dict[int, bytes], target: int) -> bytes | None:
        """Everything after our position up to `target`, as one buffer to
        write, or None.  `merged` memoises, for one fan-out pass, the joined
        frames per starting seq, so clients at the same position share one
        buffer.  This runs once per client per batch: keep it lean."""
        seq = self.seq
        if seq < 0 or seq == target or self._snapshot is not None or self.verdict is not None:
            return None
        core = self.core
        if core.state is not State.OPEN:
            return None
        data = merged.get(seq)
        if data is None:
            try:
                data = catch_up_data(self._history, seq, CAP_ZSTD in core.caps, merged)
            except HistoryUnavailable:
                self.abort(CloseReason.TOO_FAR_BEHIND)
                return None
        self.seq = target
        self._stats.batches_sent += target - seq
        history = self._history
        if target == history.seq:
            self.sent_revision = history.revision
        else:
            self.sent_revision = history.batches_after(seq)[target - seq - 1].revision
        return core.send_frame_now(data)

    def over_buffer(self, buffered: int) -> bool:
        """Tell the stream how many bytes the transport may hold unwritten;
        True (and `verdict` SLOW_CLIENT) past the limit: the peer is not
        reading."""
        if buffered > self._policy.max_buffer_bytes:
            self.abort(CloseReason.SLOW_CLIENT)
            return True
        return False

    # -- flow control and time ---------------------------------------------

    def pause_writing(self, now: float) -> None:
        """The transport's buffer is above its high-water mark."""
        self.paused_since = now

    def resume_writing(self) -> None:
        """The transport drained; write `next_output()` again."""
        self.paused_since = None

    def next_deadline(self) -> float | None:
        """When `handle_timer` must run next (None: nothing pending)."""
        if self.verdict is not None:
            return None
        deadline = self.core.next_deadline()
        extra = []
        if self.paused_since is not None:
            extra.append(self.paused_since + self._policy.max_lag)
        if self._wait_until is not None:
            extra.append(self._wait_until)
        if extra:
            deadline = min(extra) if deadline is None else min(deadline, *extra)
        return deadline

    def handle_timer(self, now: float) -> None:
        """Enforce deadlines: pings, timeouts (ConnectionTimeout, with a
        GOODBYE queued), a transport pushing back past `max_lag` (`verdict`
        SLOW_CLIENT).  A client waiting for our cache is then `awaiting_start`:
        the caller must `start` it again."""
        if self.verdict is not None:
            return
        # The sum next_deadline() returns (see _Core.handle_timer).
        paused = self.paused_since
        if paused is not None and now >= paused + self._policy.max_lag:
            self.abort(CloseReason.SLOW_CLIENT)
            return
        self.core.handle_timer(now)

    # -- ending ------------------------------------------------------------

    def close(self, reason: CloseReason) -> None:
        """Say GOODBYE; the caller writes it, then closes the transport."""
        self._snapshot = None
        self.core.close(reason)

    def abort(self, reason: CloseReason) -> None:
        """Give up on the peer at once: nothing more is written (it is not
        reading, and waiting to flush would hold its memory)."""
        if self.verdict is None:
            self.verdict = reason
        self.core.close(reason)
        self.core.data_to_send()
        self._snapshot = None
