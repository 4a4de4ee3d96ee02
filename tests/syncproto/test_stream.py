"""The server-side stream, driven with a real cache, a fake clock and no
sockets: every decision it makes about one client."""

from __future__ import annotations

import pytest

from snapshot import SnapshotCache, canonical_json
from syncproto import (
    ClientConnection,
    CloseReason,
    DatastoreStatus,
    DatastoreStatusMsg,
    Delta,
    Limits,
    MsgType,
    Progress,
    ServerHello,
    SnapshotEnd,
    SyncMode,
)
from syncproto.encoding import FrameEncoder
from syncproto.errors import ConnectionTimeout, MalformedMessage
from syncproto.stream import ServerStream, StreamPolicy, StreamStats

LIMITS = Limits(ping_interval=10.0, idle_timeout=60.0, pong_timeout=10.0)
POLICY = StreamPolicy(max_buffer_bytes=1 << 20, max_lag=30.0, resume_wait=5.0)


def cache_with(updates: int, *, max_history_batches: int = 1000) -> SnapshotCache:
    encoder = FrameEncoder(max_frame=LIMITS.max_frame, chunk_bytes=64)
    cache = SnapshotCache(
        encode_batch=encoder.batch,
        encode_snapshot=encoder.snapshot,
        max_history_batches=max_history_batches,
    )
    cache.load([("/k/0", canonical_json({"v": 0}))], 1)
    for i in range(updates):
        put(cache, i)
    return cache


def put(cache: SnapshotCache, i: int) -> None:
    cache.apply([(f"/k/{i % 7}", canonical_json({"v": i}))], cache.revision + 1)


def status_frame() -> bytes:
    from syncproto import Codec

    return Codec(max_frame=LIMITS.max_frame).encode(DatastoreStatusMsg(DatastoreStatus.IN_SYNC))


def drain(stream: ServerStream) -> bytes:
    out = b""
    while (chunk := stream.next_output()) is not None:
        out += chunk
    return out


def connect(
    cache: SnapshotCache, *, revision: int = 0, digest: str = "", now: float = 0.0
) -> tuple[ServerStream, ClientConnection, StreamStats]:
    stats = StreamStats()
    stream = ServerStream(cache, server_id="s", now=now, limits=LIMITS, policy=POLICY, stats=stats)
    client = ClientConnection(node="n", now=now, limits=LIMITS, revision=revision, digest=digest)
    assert stream.receive_data(b"".join(client.data_to_send()), now)
    assert stream.awaiting_start
    return stream, client, stats


def start(stream: ServerStream, now: float = 0.0) -> bool:
    return stream.start(now, ready=True, status_frame=status_frame())


def test_a_new_client_gets_the_snapshot_then_what_follows() -> None:
    cache = cache_with(10)
    stream, client, stats = connect(cache)
    assert start(stream)
    msgs = client.receive_data(drain(stream), 0.0)
    hello = msgs[0]
    assert isinstance(hello, ServerHello)
    assert hello.sync is SyncMode.SNAPSHOT
    end = msgs[-1]
    assert isinstance(end, SnapshotEnd)
    assert end.revision == cache.revision
    assert stats.snapshots_sent == 1
    assert stats.snapshot_bytes_sent > 0
    put(cache, 99)
    out = stream.catch_up({}, cache.seq)
    assert out is not None
    (delta,) = client.receive_data(out, 0.0)
    assert isinstance(delta, Delta)
    assert delta.revision == cache.revision
    assert stream.catch_up({}, cache.seq) is None  # nothing more owed


def test_a_client_inside_the_history_resumes_with_only_what_it_missed() -> None:
    cache = cache_with(5)
    at, digest = cache.revision, cache.digest_hex
    for i in range(3):
        put(cache, 100 + i)
    stream, client, stats = connect(cache, revision=at, digest=digest)
    assert start(stream)
    msgs = client.receive_data(drain(stream), 0.0)
    assert isinstance(msgs[0], ServerHello)
    assert msgs[0].sync is SyncMode.RESUME
    deltas = [m for m in msgs if isinstance(m, Delta)]
    assert [d.revision for d in deltas] == [at + 1, at + 2, at + 3]
    assert stats.resumes == 1
    assert stats.snapshots_sent == 0


def test_same_state_at_an_older_revision_resumes_with_a_progress() -> None:
    cache = cache_with(0)
    digest = cache.digest_hex
    cache.advance(cache.revision + 5)  # nothing changed under the prefix
    stream, client, _ = connect(cache, revision=2, digest=digest)
    assert start(stream)
    msgs = client.receive_data(drain(stream), 0.0)
    assert isinstance(msgs[0], ServerHello)
    assert msgs[0].sync is SyncMode.RESUME
    assert isinstance(msgs[-1], Progress)
    assert msgs[-1].revision == cache.revision


def test_a_wrong_digest_gets_a_full_snapshot() -> None:
    cache = cache_with(5)
    stream, client, stats = connect(cache, revision=cache.revision - 2, digest="0" * 32)
    assert start(stream)
    hello = client.receive_data(drain(stream), 0.0)[0]
    assert isinstance(hello, ServerHello)
    assert hello.sync is SyncMode.SNAPSHOT
    assert stats.resume_refused == 1


def test_a_client_ahead_of_our_cache_waits_then_gets_a_snapshot() -> None:
    cache = cache_with(3)
    stream, _, stats = connect(cache, revision=cache.revision + 4, digest="0" * 32, now=100.0)
    assert not start(stream, 100.0)
    assert stream.next_deadline() == pytest.approx(105.0)
    assert not start(stream, 104.0)
    assert start(stream, 105.0)
    assert stats.resume_refused == 1
    assert stats.snapshots_sent == 1


def test_a_resume_wait_left_when_our_cache_stops_being_ready_is_not_a_deadline() -> None:
    # A stale wait would be a deadline long past: due on every timer pass.
    cache = cache_with(3)
    stream, _, _ = connect(cache, revision=cache.revision + 4, digest="0" * 32, now=100.0)
    assert not start(stream, 100.0)
    assert not stream.start(107.0, ready=False, status_frame=status_frame())
    deadline = stream.next_deadline()
    assert deadline is not None
    assert deadline > 107.0


def test_a_client_ahead_resumes_once_our_cache_catches_up() -> None:
    cache = cache_with(3)
    ahead = cache_with(5)  # another replica, two updates further
    stream, _, stats = connect(cache, revision=ahead.revision, digest=ahead.digest_hex)
    assert not start(stream, 0.0)
    put(cache, 3)
    put(cache, 4)
    assert cache.digest_hex == ahead.digest_hex
    assert start(stream, 1.0)
    assert stats.resumes == 1
    assert stats.snapshots_sent == 0


def test_not_ready_means_ask_again() -> None:
    stream, _, stats = connect(cache_with(1))
    assert not stream.start(0.0, ready=False, status_frame=status_frame())
    assert stream.awaiting_start
    assert stats.snapshots_sent == 0


def test_snapshot_pumping_stops_while_the_transport_pushes_back() -> None:
    cache = cache_with(200)
    stream, _, _ = connect(cache)
    assert start(stream)
    first = stream.next_output()  # the hello (and status)
    assert first is not None
    stream.pause_writing(0.0)
    assert stream.next_output() is None
    stream.resume_writing()
    assert stream.next_output() is not None


def test_a_transport_blocked_past_max_lag_is_a_slow_client() -> None:
    stream, _, _ = connect(cache_with(1), now=0.0)
    assert start(stream)
    drain(stream)
    stream.pause_writing(10.0)
    deadline = stream.next_deadline()
    assert deadline is not None
    assert deadline <= 40.0
    stream.handle_timer(39.0)
    assert stream.verdict is None
    stream.handle_timer(40.0)
    assert stream.verdict is CloseReason.SLOW_CLIENT
    assert stream.next_output() is None


def test_a_slow_client_verdict_comes_at_its_exact_deadline() -> None:
    # 510.607 + 30 - 510.607 is 29.99999999999994: compared by subtraction,
    # the deadline would be due and do nothing, again and again.
    stream, _, _ = connect(cache_with(1), now=500.0)
    assert start(stream, 500.0)
    drain(stream)
    stream.pause_writing(510.607)
    deadline = 510.607 + POLICY.max_lag
    assert (stream.next_deadline() or 0.0) <= deadline
    stream.handle_timer(deadline)
    assert stream.verdict is CloseReason.SLOW_CLIENT


def test_too_many_unwritten_bytes_is_a_slow_client() -> None:
    stream, _, _ = connect(cache_with(1))
    assert start(stream)
    assert not stream.over_buffer(POLICY.max_buffer_bytes)
    assert stream.over_buffer(POLICY.max_buffer_bytes + 1)
    assert stream.verdict is CloseReason.SLOW_CLIENT


def test_a_client_behind_the_trimmed_history_is_dropped() -> None:
    cache = cache_with(1, max_history_batches=3)
    stream, _, _ = connect(cache)
    assert start(stream)
    drain(stream)
    for i in range(10):
        put(cache, 200 + i)
    assert stream.catch_up({}, cache.seq) is None
    assert stream.verdict is CloseReason.TOO_FAR_BEHIND


def test_a_silent_client_is_pinged_then_timed_out() -> None:
    stream, _client, _ = connect(cache_with(1), now=0.0)
    assert start(stream)
    drain(stream)
    assert stream.next_deadline() == pytest.approx(10.0)
    stream.handle_timer(10.0)  # quiet for the ping interval: PING
    assert stream.next_output() is not None
    assert stream.next_deadline() == pytest.approx(20.0)
    with pytest.raises(ConnectionTimeout) as info:
        stream.handle_timer(20.0)  # no PONG
    assert info.value.code is CloseReason.PONG_TIMEOUT
    assert stream.closed


def test_a_datastore_status_reaches_only_clients_that_asked() -> None:
    stream, client, _ = connect(cache_with(1))
    assert start(stream)
    client.receive_data(drain(stream), 0.0)
    assert stream.send_status(status_frame())
    (msg,) = client.receive_data(drain(stream), 0.0)
    assert isinstance(msg, DatastoreStatusMsg)


def merging_cache(updates: int) -> SnapshotCache:
    encoder = FrameEncoder(max_frame=LIMITS.max_frame, chunk_bytes=64)
    cache = SnapshotCache(
        encode_batch=encoder.batch, encode_snapshot=encoder.snapshot, encode_merged=encoder.merged
    )
    cache.load([("/k/0", canonical_json({"v": 0}))], 1)
    for i in range(updates):
        put(cache, i)
    return cache


def test_a_resume_gets_what_it_missed_as_one_compressed_delta_shared_by_its_peers() -> None:
    from felix_client import Replica
    from syncproto.frames import FLAG_ZSTD, FrameDecoder

    cache = merging_cache(5)
    at, digest = cache.revision, cache.digest_hex
    before = dict(cache.current.entries.items())
    for i in range(40):  # 40 batches, 7 distinct keys: the net change is small
        put(cache, 100 + i)
    wire = []
    for _ in range(2):  # two clients at the same position
        stream, client, _ = connect(cache, revision=at, digest=digest)
        assert start(stream)
        wire.append(drain(stream))
    assert wire[0] == wire[1]
    assert cache.stats.catch_ups_encoded == 1
    assert cache.stats.catch_ups_reused == 1
    frames = FrameDecoder(LIMITS.max_frame).feed(wire[0])
    deltas = [f for f in frames if f.type == MsgType.DELTA]
    assert len(deltas) == 1
    assert deltas[0].flags & FLAG_ZSTD
    msgs = client.receive_data(wire[0], 0.0)
    (delta,) = [m for m in msgs if isinstance(m, Delta)]
    assert (delta.prev_revision, delta.revision) == (at, cache.revision)
    assert len(delta.updates) == 7  # each key once, with its last value
    replica = Replica()
    replica.begin_snapshot()
    replica.add_chunk((k, e.value) for k, e in before.items())
    replica.end_snapshot(at, digest)
    replica.apply_delta(delta.revision, delta.updates, delta.digest)  # verifies the digest
    assert replica.digest == cache.digest_hex
    single = sum(len(b.frame) for b in cache.batches_after(cache.seq - 40))
    assert len(deltas[0].body) < single / 4


def test_a_client_one_batch_behind_gets_the_shared_batch_frame() -> None:
    cache = merging_cache(3)
    at, digest = cache.revision, cache.digest_hex
    put(cache, 50)
    stream, _, _ = connect(cache, revision=at, digest=digest)
    assert start(stream)
    out = drain(stream)
    assert cache.batches_after(cache.seq - 1)[0].frame in out
    assert cache.stats.catch_ups_encoded == 0


def test_an_applied_report_past_every_known_revision_is_refused() -> None:
    cache = cache_with(3)
    stream, client, _ = connect(cache)
    assert start(stream)
    client.receive_data(drain(stream), 0.0)
    assert client.send_applied(cache.revision)  # what it holds: fine
    stream.receive_data(b"".join(client.data_to_send()), 0.0)
    assert stream.core.take_applied() == cache.revision
    assert client.send_applied(cache.revision + 1)  # a change that does not exist yet
    with pytest.raises(MalformedMessage, match="past revision"):
        stream.receive_data(b"".join(client.data_to_send()), 0.0)
    assert stream.core.close_reason is CloseReason.MALFORMED


def test_a_client_cannot_claim_more_than_this_connection_sent_it() -> None:
    cache = cache_with(3)
    # It says hello at a revision far ahead of ours, as if it had applied it.
    stream, client, _ = connect(cache, revision=2**62, digest="0" * 32)
    assert not start(stream, 0.0)  # waits a moment for our cache...
    assert start(stream, POLICY.resume_wait + 1)  # ...then takes a snapshot
    client.receive_data(drain(stream), 0.0)
    snapshot_revision = cache.revision
    assert stream.sent_revision == snapshot_revision
    client.send_applied(2**62)
    with pytest.raises(MalformedMessage):  # 2**62 exists nowhere
        stream.receive_data(b"".join(client.data_to_send()), 0.0)


def test_an_applied_report_counts_up_to_what_was_sent() -> None:
    cache = cache_with(3)
    stream, client, _ = connect(cache)
    assert start(stream)
    client.receive_data(drain(stream), 0.0)
    sent = cache.revision
    put(cache, 99)  # the replica moves on; this client has not been sent it yet
    assert client.send_applied(cache.revision)
    stream.receive_data(b"".join(client.data_to_send()), 0.0)
    assert stream.take_applied() == sent
    client.receive_data(drain(stream), 0.0)  # now it has it
    assert stream.sent_revision == cache.revision
    assert client.send_applied(cache.revision)
    stream.receive_data(b"".join(client.data_to_send()), 0.0)
    assert stream.take_applied() == cache.revision
