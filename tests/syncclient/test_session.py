"""The client session, driven by hand-made server frames and a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from snapshot import canonical_json, digest_of
from syncclient.errors import DigestMismatch, ServerMisbehaved
from syncclient.replica import Replica
from syncclient.session import ClientSession, Committed, StalePolicy, StaleUpstream
from syncproto import (
    DEFAULT_MAX_FRAME,
    Codec,
    DatastoreStatus,
    DatastoreStatusMsg,
    Delta,
    FrameDecoder,
    Goodbye,
    Limits,
    Pong,
    ServerHello,
    SnapshotChunk,
    SnapshotEnd,
    SyncMode,
)
from syncproto.errors import ConnectionTimeout
from syncproto.messages import CAP_DATASTORE_STATUS, CAP_RESUME, CAP_ZSTD, Message
from syncproto.vocabulary import CloseReason

CODEC = Codec(max_frame=DEFAULT_MAX_FRAME)
LIMITS = Limits(ping_interval=5.0, pong_timeout=5.0, idle_timeout=60.0)
CAPS = frozenset({CAP_ZSTD, CAP_RESUME, CAP_DATASTORE_STATUS})


def frames(*msgs: Message) -> bytes:
    return b"".join(CODEC.encode(m) for m in msgs)


class Harness:
    def __init__(self, *, stale_after: float = 10.0, max_snapshot_bytes: int = 1 << 20) -> None:
        self.applied: list[Committed] = []
        self.stale = StalePolicy(stale_after)
        self.session = ClientSession(
            Replica(),
            node="n",
            now=0.0,
            limits=LIMITS,
            stale=self.stale,
            max_snapshot_bytes=max_snapshot_bytes,
            on_committed=self.applied.append,
        )
        assert self.session.data_to_send()  # the hello

    def snapshot(self, state: dict[str, Any], revision: int = 10, now: float = 0.0) -> None:
        entries = [(k, canonical_json(v)) for k, v in state.items()]
        self.session.receive_data(
            frames(
                ServerHello(server="s", caps=CAPS, sync=SyncMode.SNAPSHOT),
                SnapshotChunk(revision, entries),
                SnapshotEnd(revision, len(state), digest_of(state)),
            ),
            now,
        )


def test_a_snapshot_is_committed_and_reported_once() -> None:
    h = Harness()
    h.snapshot({"a": {"v": 1}, "b": {"v": 2}})
    assert h.session.in_sync
    assert h.session.connected
    (applied,) = h.applied
    assert applied.revision == 10
    assert sorted(k for k, _ in applied.changes) == ["a", "b"]


def test_changes_before_a_failing_message_are_still_reported() -> None:
    h = Harness()
    h.snapshot({"a": {"v": 1}})
    good = Delta(
        10, 11, [("b", canonical_json({"v": 2}))], digest_of({"a": {"v": 1}, "b": {"v": 2}})
    )
    bad = Delta(11, 12, [("c", canonical_json({"v": 3}))], "0" * 32)
    with pytest.raises(DigestMismatch):
        h.session.receive_data(frames(good, bad), 1.0)
    assert [a.revision for a in h.applied] == [10, 11]
    assert dict(h.session.replica.state) == {"a": {"v": 1}, "b": {"v": 2}}


def test_a_snapshot_over_the_size_limit_is_refused() -> None:
    h = Harness(max_snapshot_bytes=100)
    with pytest.raises(ServerMisbehaved):
        h.snapshot({f"k{i}": {"v": "x" * 20} for i in range(10)})
    assert h.applied == []


def sent(session: ClientSession) -> list[Message]:
    decoder = FrameDecoder(DEFAULT_MAX_FRAME)
    return [CODEC.decode(f) for f in decoder.feed(session.data_to_send())]


def test_a_replica_reporting_the_datastore_lost_is_left_after_the_stale_limit() -> None:
    h = Harness(stale_after=10.0)
    h.snapshot({"a": {"v": 1}})
    h.session.receive_data(frames(DatastoreStatusMsg(DatastoreStatus.WAITING)), 2.0)
    sent(h.session)
    assert h.session.next_deadline() == pytest.approx(7.0)  # the ping comes first
    for now in (7.0, 9.5):  # the server answers every ping: only staleness ends it
        h.session.handle_timer(now)
        h.session.receive_data(frames(Pong(1)), now)
        assert not h.session.closed
    assert h.session.next_deadline() == pytest.approx(12.0)
    h.session.handle_timer(12.0)
    # Stale past the limit: the session asks its caller to look for a
    # replica in sync (it leaves only for one), and the limit doubles.
    assert h.session.wants_move
    assert not h.session.closed
    assert h.stale.current == 20.0
    with pytest.raises(StaleUpstream):
        h.session.leave()
    assert h.session.closed
    assert sent(h.session)[-1] == Goodbye(CloseReason.UPSTREAM_STALE.value, "")


def test_with_no_replica_in_sync_the_session_stays_and_asks_again_later() -> None:
    h = Harness(stale_after=10.0)
    h.snapshot({"a": {"v": 1}})
    h.session.receive_data(frames(DatastoreStatusMsg(DatastoreStatus.WAITING)), 2.0)
    for now in (7.0, 9.5):
        h.session.handle_timer(now)
        h.session.receive_data(frames(Pong(1)), now)
    h.session.handle_timer(12.0)
    assert h.session.wants_move
    h.session.stay()
    assert not h.session.wants_move
    assert not h.session.closed
    # Asked again once the doubled limit has passed since the replica went stale.
    now = 12.0
    while not h.session.wants_move and now < 40.0:
        now = max(h.session.next_deadline() or now + 1, now + 0.5)
        h.session.handle_timer(now)
        h.session.receive_data(frames(Pong(1)), now)
    assert h.session.wants_move
    assert now == pytest.approx(22.0)  # 2.0 + 20.0


def test_a_replica_back_in_sync_resets_the_stale_limit() -> None:
    h = Harness(stale_after=10.0)
    h.stale.escalate()
    assert h.stale.current == 20.0
    h.snapshot({"a": {"v": 1}})
    h.session.receive_data(frames(DatastoreStatusMsg(DatastoreStatus.IN_SYNC)), 1.0)
    assert h.stale.current == 10.0


def test_a_silent_server_is_pinged_then_dropped() -> None:
    h = Harness()
    h.snapshot({"a": {"v": 1}}, now=0.0)
    assert h.session.next_deadline() == pytest.approx(5.0)
    h.session.handle_timer(5.0)
    assert h.session.data_to_send()  # the PING
    with pytest.raises(ConnectionTimeout) as info:
        h.session.handle_timer(10.0)
    assert info.value.code is CloseReason.PONG_TIMEOUT


def test_a_goodbye_is_kept_for_the_log() -> None:
    h = Harness()
    h.snapshot({"a": {"v": 1}})
    h.session.receive_data(frames(Goodbye("shutdown", "draining")), 1.0)
    assert h.session.closed
    assert h.session.goodbye == Goodbye("shutdown", "draining")
