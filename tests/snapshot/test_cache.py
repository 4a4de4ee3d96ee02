from __future__ import annotations

import pytest

from snapshot import (
    DeltaBatch,
    HistoryUnavailable,
    RevisionRegression,
    Snapshot,
    SnapshotCache,
    canonical_json,
    digest_of,
)


def v(n: int) -> bytes:
    return canonical_json({"n": n})


def state_of(cache: SnapshotCache) -> dict[str, object]:
    import orjson

    return {k: orjson.loads(e.value) for k, e in cache.current.entries.items()}


def test_load_then_apply_tracks_state_and_digest() -> None:
    cache = SnapshotCache()
    cache.load([("a", v(1)), ("b", v(2))], revision=10)
    assert cache.revision == 10
    assert len(cache.current) == 2
    batch = cache.apply([("a", v(3)), ("c", v(4)), ("b", None)], revision=11)
    assert batch is not None
    assert batch.prev_revision == 10
    assert batch.revision == 11
    assert dict(batch.updates) == {"a": v(3), "c": v(4), "b": None}
    assert state_of(cache) == {"a": {"n": 3}, "c": {"n": 4}}
    assert cache.digest_hex == digest_of(state_of(cache))


def test_updates_that_change_nothing_are_suppressed() -> None:
    cache = SnapshotCache()
    cache.load([("a", v(1))], revision=5)
    batch = cache.apply([("a", v(1)), ("zzz", None)], revision=6)
    assert batch is not None
    assert batch.updates == ()
    assert cache.stats.updates_suppressed == 2
    assert cache.apply([("a", v(1))], revision=6) is None  # nothing moved at all


def test_old_snapshots_are_immutable() -> None:
    cache = SnapshotCache()
    cache.load([("a", v(1))], revision=1)
    before: Snapshot = cache.current
    cache.apply([("a", v(2)), ("b", v(3))], revision=2)
    assert before.entries["a"].value == v(1)
    assert "b" not in before.entries
    assert before.revision == 1


def test_revision_may_not_go_backwards() -> None:
    cache = SnapshotCache()
    cache.load([], revision=7)
    with pytest.raises(RevisionRegression):
        cache.apply([("a", v(1))], revision=6)


def test_batches_after_walks_the_shared_chain() -> None:
    cache = SnapshotCache()
    cache.load([], revision=1)
    start = cache.seq
    for i in range(5):
        cache.apply([(f"k{i}", v(i))], revision=2 + i)
    got = cache.batches_after(start)
    assert [b.revision for b in got] == [2, 3, 4, 5, 6]
    assert cache.batches_after(cache.seq) == ()
    assert [b.revision for b in cache.batches_after(start + 3)] == [5, 6]


def test_history_is_bounded_and_says_so() -> None:
    cache = SnapshotCache(max_history_batches=3)
    cache.load([], revision=1)
    start = cache.seq
    for i in range(6):
        cache.apply([(f"k{i}", v(i))], revision=2 + i)
    assert cache.stats.history_trimmed == 3
    with pytest.raises(HistoryUnavailable):
        cache.batches_after(start)
    assert len(cache.batches_after(cache.oldest_seq)) == 3


def test_history_bounded_by_bytes() -> None:
    cache = SnapshotCache(encode_batch=lambda b: b"x" * 1000, max_history_bytes=3500)
    cache.load([], revision=1)
    for i in range(10):
        cache.apply([(f"k{i}", v(i))], revision=2 + i)
    assert 1 <= cache.seq - cache.oldest_seq <= 3


def test_batches_are_encoded_once_and_snapshots_shared() -> None:
    calls: list[int] = []

    def enc_batch(b: DeltaBatch) -> bytes:
        calls.append(b.seq)
        return f"batch{b.seq}".encode()

    snap_calls: list[tuple[int, bool]] = []

    def enc_snap(s: Snapshot, compressed: bool) -> list[bytes]:
        snap_calls.append((s.revision, compressed))
        return [f"snap{s.revision}".encode()]

    cache = SnapshotCache(encode_batch=enc_batch, encode_snapshot=enc_snap)
    cache.load([("a", v(1))], revision=3)
    b = cache.apply([("a", v(2))], revision=4)
    assert b is not None
    assert b.frame == f"batch{b.seq}".encode()
    assert len(calls) == 1
    first = cache.snapshot_frames(compressed=True)
    again = cache.snapshot_frames(compressed=True)
    assert first[1] is again[1]  # the same bytes objects, not a re-encoding
    cache.snapshot_frames(compressed=False)
    assert snap_calls == [(4, True), (4, False)]
    assert cache.stats.snapshots_encoded == 2
    assert cache.stats.snapshots_reused == 1
    cache.apply([("b", v(1))], revision=5)
    cache.snapshot_frames(compressed=True)
    assert snap_calls[-1] == (5, True)


def _chain() -> SnapshotCache:
    cache = SnapshotCache()
    cache.load([("a", v(0))], revision=10)
    cache.apply([("a", v(1))], revision=12)  # seq 2: 10 -> 12
    cache.apply([("b", v(2))], revision=15)  # seq 3: 12 -> 15
    return cache


def test_resume_from_a_batch_boundary_checks_the_digest() -> None:
    cache = _chain()
    b = cache.batches_after(cache.seq - 1)[0]
    assert cache.resume_seq(12, b.prev_digest) == cache.seq - 1
    assert cache.resume_seq(12, b.prev_digest ^ 1) is None  # the client's state differs
    assert cache.resume_seq(15, cache.current.digest) == cache.seq
    assert cache.resume_seq(15, 12345) is None


def test_resume_from_inside_a_batch_replays_the_whole_batch() -> None:
    cache = _chain()
    # Revision 13 is inside 12 -> 15 (another replica may have had a batch ending at 13).
    seq = cache.resume_seq(13, None)
    assert seq == cache.seq - 1
    assert [b.revision for b in cache.batches_after(seq)] == [15]
    assert cache.resume_seq(11, None) == cache.seq - 2


def test_no_resume_outside_the_history() -> None:
    cache = _chain()
    assert cache.resume_seq(9, None) is None  # before the first load
    assert cache.resume_seq(16, None) is None  # the future: this replica is behind
    assert cache.resume_seq(0, None) is None


def test_history_is_bounded_by_age() -> None:
    cache = SnapshotCache(max_history_age=10.0)
    cache.load([], revision=1)
    cache.apply([("a", v(1))], revision=2, now=100.0)
    cache.apply([("b", v(1))], revision=3, now=105.0)
    cache.trim(now=112.0)
    assert [b.revision for b in cache.batches_after(cache.oldest_seq)] == [3]
    assert cache.resume_seq(1, None) is None
    assert cache.resume_seq(2, None) == cache.seq - 1


def test_a_catch_up_merges_the_net_change_and_is_memoised_per_head() -> None:
    seen: list[DeltaBatch] = []

    def encode(batch: DeltaBatch, compressed: bool) -> bytes:
        seen.append(batch)
        return b"Z" if compressed else b"P"

    cache = SnapshotCache(encode_merged=encode)
    cache.load([("a", v(1)), ("b", v(2))], revision=10)
    start = cache.seq
    cache.apply([("a", v(3))], 11)
    assert cache.catch_up_frame(start, compressed=True) is None  # one batch: its own frame
    cache.apply([("c", v(4))], 12)
    cache.apply([("c", None), ("a", v(5))], 14)
    assert cache.catch_up_frame(start, compressed=True) == b"Z"
    assert cache.catch_up_frame(start, compressed=True) == b"Z"
    assert cache.catch_up_frame(start, compressed=False) == b"P"
    assert len(seen) == 2  # one encoding per variant
    merged = seen[0]
    assert dict(merged.updates) == {"a": v(5), "c": None}
    assert (merged.prev_revision, merged.revision) == (10, 14)
    assert merged.digest == cache.current.digest
    assert cache.stats.catch_ups_reused == 1
    cache.apply([("b", v(9))], 15)  # the head moved: a new encoding
    cache.catch_up_frame(start, compressed=True)
    assert len(seen) == 3


def test_a_catch_up_too_large_to_merge_falls_back_to_the_batches() -> None:
    cache = SnapshotCache(encode_merged=lambda b, c: b"x", max_merged_bytes=10)
    cache.load([], revision=1)
    start = cache.seq
    cache.apply([("a", v(1))], 2)
    cache.apply([("b", canonical_json({"big": "x" * 50}))], 3)
    assert cache.catch_up_frame(start, compressed=False) is None


def test_the_changed_revision_is_the_latest_change_not_progress() -> None:
    cache = SnapshotCache()
    cache.load([("a", v(1))], revision=10)
    assert cache.changed_revision == 10
    cache.apply([("a", v(2))], revision=12)
    cache.advance(15)  # progress: the revision moves, the state does not
    cache.apply([("a", v(2))], revision=16)  # suppressed: changes nothing
    assert cache.revision == 16
    assert cache.changed_revision == 12
    cache.apply([("b", v(1))], revision=17)
    assert cache.changed_revision == 17
