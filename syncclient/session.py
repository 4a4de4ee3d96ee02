"""The client side of one connection, sans-I/O: the protocol state machine
and the local replica together, each message dispatched once.

`ClientSession` checks the stream's order (through `ClientConnection`),
applies snapshots, deltas and progress to the `Replica` (verified before they
are committed), watches the server's datastore status and the size of the
snapshot it sends, and keeps the deadlines: pings, the pong timeout, and how
long a replica may report the datastore lost before we leave it.

A caller must:
  * write `data_to_send()` after constructing it and after every call;
  * feed received bytes to `receive_data`; what the replica commits is handed,
    as it is committed, to the `on_committed` callback given at construction
    (so a later message that fails cannot hide an earlier one's changes);
  * call `handle_timer(now)` once `now >= next_deadline()`;
  * end the connection on any exception these raise: ProtocolError,
    ConnectionTimeout, ServerMisbehaved (DigestMismatch, BadValue, an
    oversized snapshot) or StaleUpstream.  The replica is unchanged by the
    message that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from syncclient.errors import ServerMisbehaved
from syncclient.replica import Change, Replica
from syncproto import (
    ClientConnection,
    CloseReason,
    DatastoreStatus,
    DatastoreStatusMsg,
    Delta,
    Goodbye,
    Limits,
    Progress,
    ServerHello,
    SnapshotChunk,
    SnapshotEnd,
    State,
    SyncMode,
)
from syncproto.connection import CLIENT_CAPS


class StaleUpstream(Exception):
    """The serving replica has reported the datastore lost for too long."""


@dataclass(slots=True)
class StalePolicy:
    """How long a replica may report the datastore lost before the client
    leaves it.  Shared by a client's successive sessions: the limit doubles
    (up to `maximum`) each time the client leaves one, because if every
    replica is stale the datastore itself is down and hopping helps nobody;
    it returns to `initial` once a replica reports in sync again."""

    initial: float
    maximum: float = 300.0
    current: float = 0.0

    def __post_init__(self) -> None:
        self.current = self.current or self.initial

    def recovered(self) -> None:
        """A replica said it is in sync with the datastore."""
        self.current = self.initial

    def escalate(self) -> None:
        """We left a stale replica."""
        self.current = min(self.current * 2, self.maximum)


@dataclass(frozen=True, slots=True)
class Committed:
    """Changes the replica committed, and the revision it reached."""

    changes: Sequence[Change]
    revision: int


@dataclass(slots=True)
class SessionStats:
    """What sessions did; a client passes the same object to each of its
    sessions, so the counts cover its lifetime."""

    snapshots: int = 0
    resumes: int = 0
    deltas: int = 0
    progress: int = 0


class ClientSession:
    """One connection's protocol and replica state.  The replica outlives the
    session: the next session offers its revision and digest to resume."""

    def __init__(
        self,
        replica: Replica,
        *,
        node: str,
        now: float,
        limits: Limits,
        stale: StalePolicy,
        max_snapshot_bytes: int,
        on_committed: Callable[[Committed], None],
        stats: SessionStats | None = None,
        caps: frozenset[str] = CLIENT_CAPS,
    ) -> None:
        self.replica = replica
        self.node = node
        self._on_committed = on_committed
        self.core = ClientConnection(
            node=node,
            now=now,
            limits=limits,
            revision=replica.revision,
            digest=replica.digest if replica.revision else "",
            caps=caps,
        )
        self.stats = stats if stats is not None else SessionStats()
        self.upstream: DatastoreStatus | None = None  # None: the server never said
        self.in_sync_since: float | None = None
        self.goodbye: Goodbye | None = None
        self._upstream_since = now
        self._stale = stale
        # Set when the replica has been stale past the limit: the adapter
        # must look for a replica in sync, then `leave()` or `stay()`.
        self.wants_move = False
        self._max_snapshot_bytes = max_snapshot_bytes
        self._snapshot_bytes = 0
        self._stale_for = 0.0

    # -- state -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """The server answered our hello."""
        return self.core.server_hello is not None and not self.closed

    @property
    def applied_interval_ms(self) -> int:
        """The APPLIED reporting interval the server asked for (0: none)."""
        return self.core.applied_interval_ms

    @property
    def in_sync(self) -> bool:
        """The replica holds a complete, verified state from this server."""
        return self.in_sync_since is not None and not self.closed

    @property
    def closed(self) -> bool:
        """No more input is accepted; close the transport once written."""
        return self.core.state is State.CLOSED

    # -- bytes -------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write now, possibly empty."""
        out = self.core.data_to_send()
        return out[0] if len(out) == 1 else b"".join(out)

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed received bytes; each commit goes to `on_committed`, in order."""
        for msg in self.core.receive_data(data, now):
            self._dispatch(msg, now)

    def _dispatch(self, msg: object, now: float) -> None:
        replica = self.replica
        match msg:
            case Delta():
                changes = replica.apply_delta(msg.revision, msg.updates, msg.digest)
                self.stats.deltas += 1
                self._on_committed(Committed(changes, msg.revision))
            case Progress():
                replica.apply_progress(msg.revision, msg.digest)
                self.stats.progress += 1
                # No change, but the revision moved: listeners track it (an
                # agent's applied revision, a downstream replica's cache).
                self._on_committed(Committed([], msg.revision))
            case SnapshotChunk():
                self._snapshot_bytes += sum(len(k) + len(v) for k, v in msg.entries)
                if self._snapshot_bytes > self._max_snapshot_bytes:
                    raise ServerMisbehaved(f"snapshot exceeds {self._max_snapshot_bytes} bytes")
                replica.add_chunk(msg.entries)
            case SnapshotEnd():
                changes = replica.end_snapshot(msg.revision, msg.digest)
                self.stats.snapshots += 1
                self._mark_in_sync(now)
                self._on_committed(Committed(changes, msg.revision))
            case ServerHello():
                if msg.sync is SyncMode.SNAPSHOT:
                    replica.begin_snapshot()
                else:
                    # The server checked our revision and digest against its
                    # history; what changed since follows as ordinary deltas.
                    self.stats.resumes += 1
                    self._mark_in_sync(now)
            case DatastoreStatusMsg():
                if msg.status is not self.upstream:
                    self.upstream = msg.status
                    self._upstream_since = now
                if msg.status is DatastoreStatus.IN_SYNC:
                    self._stale.recovered()
            case Goodbye():
                self.goodbye = msg

    def _mark_in_sync(self, now: float) -> None:
        if self.in_sync_since is None:
            self.in_sync_since = now

    # -- time --------------------------------------------------------------

    def _stale_deadline(self) -> float | None:
        status = self.upstream
        if status is None or status is DatastoreStatus.IN_SYNC or self.in_sync_since is None:
            return None
        if self.wants_move:
            return None  # the caller is looking for a replica in sync
        return self._upstream_since + self._stale.current

    def next_deadline(self) -> float | None:
        """When `handle_timer` must next run (None once closed)."""
        deadline = self.core.next_deadline()
        stale = self._stale_deadline()
        if deadline is None or stale is None:
            return deadline
        return min(deadline, stale)

    def handle_timer(self, now: float) -> None:
        """Pings and timeouts (ConnectionTimeout).  A replica that has
        reported the datastore lost past the stale limit sets `wants_move`
        (and the limit doubles, so it is asked again later, not at once);
        the caller then looks for a replica in sync and calls `leave` or
        `stay`.  Calling it early is harmless."""
        self.core.handle_timer(now)
        stale = self._stale_deadline()
        if stale is None or now < stale or self.wants_move:
            return
        self._stale_for = now - self._upstream_since
        self._stale.escalate()
        self.wants_move = True

    def leave(self) -> None:
        """Leave the stale replica: a GOODBYE is queued and StaleUpstream
        raised (the caller writes the GOODBYE and reconnects)."""
        status = self.upstream
        self.core.close(CloseReason.UPSTREAM_STALE)
        what = status.value if status is not None else "nothing"
        raise StaleUpstream(f"server has reported {what!r} for {self._stale_for:.0f}s")

    def stay(self) -> None:
        """Stay on the stale replica (no other is in sync): ask again once
        the (doubled) limit has passed once more."""
        self.wants_move = False
