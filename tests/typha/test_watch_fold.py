"""The syncer's pure decisions, driven with plain values: folding watch
responses, listing differences, liveness of a quiet watch, the replay gate."""

from __future__ import annotations

import pytest

from snapshot import SnapshotCache
from typha.datastore.etcd_client import WatchBatch, WatchEvent
from typha.datastore.fold import (
    Compacted,
    Liveness,
    Quiet,
    ReplayGate,
    ResyncAsked,
    ResyncRequested,
    WatchFailed,
    event_updates,
    fold_watch,
    list_diff,
)
from typha.errors import DatastoreError


def admit_all(key: bytes, value: bytes) -> tuple[str, bytes] | None:
    """Admits values that are not b'bad'."""
    return None if value == b"bad" else (key.decode(), value)


def put(key: str, value: bytes, rev: int) -> WatchEvent:
    return WatchEvent(deleted=False, key=key.encode(), value=value, mod_revision=rev)


def delete(key: str, rev: int) -> WatchEvent:
    return WatchEvent(deleted=True, key=key.encode(), value=b"", mod_revision=rev)


def test_events_become_updates_at_the_highest_revision() -> None:
    f = fold_watch(
        [WatchBatch(12, [put("/a", b"1", 11), delete("/b", 12)])],
        revision=10,
        safe_revision=10,
        validate=admit_all,
    )
    assert f.updates == [("/a", b"1"), ("/b", None)]
    assert (f.revision, f.safe_revision, f.proven) == (12, 12, 12)
    assert f.delivered
    assert f.events == 2
    assert f.stop is None


def test_a_progress_answer_moves_the_revision_but_vouches_only_for_the_one_before() -> None:
    f = fold_watch([WatchBatch(15, [])], revision=10, safe_revision=10, validate=admit_all)
    assert f.updates == []
    assert f.revision == 15
    assert f.safe_revision == 14  # an event at 15 may still be in flight
    assert f.proven == 15
    assert f.progress_notifies == 1


def test_the_watch_created_response_is_not_a_delivery() -> None:
    f = fold_watch(
        [WatchBatch(10, [], created=True)], revision=10, safe_revision=10, validate=admit_all
    )
    assert f.created
    assert not f.delivered


@pytest.mark.parametrize(
    ("stopper", "expected"),
    [
        (WatchBatch(20, [], compact_revision=15), Compacted),
        (WatchBatch(20, [], canceled=True, cancel_reason="nope"), DatastoreError),
        (WatchFailed(DatastoreError("gone")), DatastoreError),
        (ResyncAsked(), ResyncRequested),
    ],
)
def test_what_arrived_before_a_stop_is_kept_and_nothing_after(
    stopper: object, expected: type[Exception]
) -> None:
    group = [
        WatchBatch(11, [put("/a", b"1", 11)]),
        stopper,
        WatchBatch(12, [put("/c", b"3", 12)]),
    ]
    f = fold_watch(group, revision=10, safe_revision=10, validate=admit_all)  # type: ignore[arg-type]
    assert isinstance(f.stop, expected)
    assert f.updates == [("/a", b"1")]
    assert f.revision == 11


def test_an_invalid_put_is_a_delete_and_a_key_that_is_not_utf8_is_dropped() -> None:
    events = [
        put("/ok", b"v", 1),
        put("/now-bad", b"bad", 2),
        WatchEvent(deleted=True, key=b"/\xff", value=b"", mod_revision=3),
    ]
    assert event_updates(events, admit_all) == [("/ok", b"v"), ("/now-bad", None)]


def test_a_list_becomes_deletions_then_new_and_changed_values() -> None:
    cache = SnapshotCache()
    cache.load([("/same", b"1"), ("/changed", b"1"), ("/gone", b"1")], 5)
    updates = list_diff(cache, {"/same": b"1", "/changed": b"2", "/new": b"3"}, 7)
    assert updates == [("/gone", None), ("/changed", b"2"), ("/new", b"3")]


def test_a_list_at_an_older_revision_than_the_cache_is_refused() -> None:
    cache = SnapshotCache()
    cache.load([("/a", b"1")], 9)
    with pytest.raises(DatastoreError, match="backwards"):
        list_diff(cache, {}, 8)


def test_a_quiet_watch_is_asked_for_progress_then_given_up() -> None:
    live = Liveness(9.0, last_heard=0.0, asked=0.0)
    assert live.tick == 1.0
    assert live.quiet(2.0, catching_up=False) is Quiet.WAIT  # quiet less than a third
    assert live.quiet(3.0, catching_up=False) is Quiet.ASK_PROGRESS
    assert live.quiet(3.5, catching_up=False) is Quiet.WAIT  # asked less than a tick ago
    assert live.quiet(4.0, catching_up=False) is Quiet.ASK_PROGRESS
    live.heard(5.0)
    assert live.quiet(6.0, catching_up=False) is Quiet.WAIT
    assert live.quiet(14.5, catching_up=False) is Quiet.STALLED


def test_a_replaying_watch_asks_for_progress_every_tick() -> None:
    live = Liveness(9.0, last_heard=0.0, asked=0.0)
    assert live.quiet(1.0, catching_up=True) is Quiet.ASK_PROGRESS
    assert live.quiet(2.0, catching_up=True) is Quiet.ASK_PROGRESS


def test_the_replay_gate_opens_once_at_the_head_it_was_given() -> None:
    gate = ReplayGate()
    assert not gate.proven(100)  # nothing listed yet
    assert not gate.listed(50)
    assert gate.replaying
    assert not gate.proven(49)
    assert gate.proven(50)
    assert not gate.proven(60)  # once
    assert not gate.replaying
    assert ReplayGate().listed(0)  # listed at the head: complete at once
