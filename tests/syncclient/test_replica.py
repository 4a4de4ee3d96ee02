from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from felix_client import DigestMismatch, Replica
from snapshot import canonical_json, digest_of
from syncclient.errors import BadValue, ValuesNotKept


def c(obj: dict[str, object]) -> bytes:
    return canonical_json(obj)


def test_snapshot_mark_and_sweep_reports_only_differences() -> None:
    r = Replica()
    r.begin_snapshot()
    r.add_chunk([("a", c({"v": 1})), ("b", c({"v": 2}))])
    first = {"a": {"v": 1}, "b": {"v": 2}}
    changes = r.end_snapshot(5, digest_of(first))
    assert sorted(changes) == [("a", {"v": 1}), ("b", {"v": 2})]
    # A second full snapshot (after a reconnect): b changed, a gone, c new.
    second = {"b": {"v": 3}, "c": {"v": 4}}
    r.begin_snapshot()
    r.add_chunk([("b", c({"v": 3})), ("c", c({"v": 4}))])
    changes = r.end_snapshot(9, digest_of(second))
    assert sorted(changes, key=lambda x: x[0]) == [("a", None), ("b", {"v": 3}), ("c", {"v": 4})]
    assert dict(r.state) == second
    assert r.revision == 9


def test_unchanged_keys_are_not_reported_again() -> None:
    r = Replica()
    st = {"a": {"v": 1}}
    r.begin_snapshot()
    r.add_chunk([("a", c({"v": 1}))])
    r.end_snapshot(1, digest_of(st))
    r.begin_snapshot()
    r.add_chunk([("a", c({"v": 1}))])
    assert r.end_snapshot(2, digest_of(st)) == []


def test_delta_and_digest_check() -> None:
    r = Replica()
    r.begin_snapshot()
    r.end_snapshot(1, digest_of({}))
    changes = r.apply_delta(2, [("a", c({"x": 1})), ("zz", None)], digest_of({"a": {"x": 1}}))
    assert changes == [("a", {"x": 1})]
    with pytest.raises(DigestMismatch) as info:
        r.apply_delta(3, [("b", c({}))], digest_of({"a": {"x": 1}}))
    assert info.value.revision == 3
    # Verified before commit: the failed delta left nothing behind.
    assert dict(r.state) == {"a": {"x": 1}}
    assert r.revision == 2
    with pytest.raises(DigestMismatch):
        r.apply_progress(4, digest_of({"a": {"x": 1}, "b": {}}))
    assert r.revision == 2
    r.apply_progress(4, digest_of({"a": {"x": 1}}))
    assert r.revision == 4


def test_a_value_that_is_not_an_object_is_refused() -> None:
    r = Replica()
    with pytest.raises(BadValue):
        r.apply_delta(1, [("a", b"[1]")], "0" * 32)


def test_changes_are_decoded_when_read_and_never_held_decoded() -> None:
    r = Replica()
    r.begin_snapshot()
    r.add_chunk([("a", c({"v": [1, 2]})), ("b", c({"v": 2}))])
    changes = r.end_snapshot(1, digest_of({"a": {"v": [1, 2]}, "b": {"v": 2}}))
    assert len(changes) == 2
    key, first = changes[0]
    assert (key, first) == ("a", {"v": [1, 2]})
    first["v"].append(3)  # a reader's copy: changing it changes nothing held
    assert changes[0] == ("a", {"v": [1, 2]})
    assert list(changes[1:]) == [("b", {"v": 2})]
    assert r.values["a"] == c({"v": [1, 2]})  # the replica keeps bytes only


_key = st.sampled_from(["a", "b", "c", "d", "e"])
_value = st.one_of(st.none(), st.integers(0, 3).map(lambda i: {"v": i}))
_step = st.one_of(
    st.tuples(
        st.just("snapshot"), st.dictionaries(_key, st.integers(0, 3).map(lambda i: {"v": i}))
    ),
    st.tuples(st.just("delta"), st.lists(st.tuples(_key, _value), max_size=4)),
)


@given(st.lists(_step, min_size=1, max_size=12))
def test_a_hash_only_replica_reports_exactly_what_a_full_one_does(
    steps: list[tuple[str, object]],
) -> None:
    # The agent keeps hashes only; a later full snapshot (a reconnect) must
    # still become exactly the changes a replica holding values reports.
    full, hashes = Replica(), Replica(keep_values=False)
    model: dict[str, object] = {}
    for revision, (kind, arg) in enumerate(steps, start=1):
        if kind == "snapshot":
            assert isinstance(arg, dict)
            model = dict(arg)
            results = []
            for r in (full, hashes):
                r.begin_snapshot()
                r.add_chunk([(k, c(v)) for k, v in arg.items()])
                results.append(list(r.end_snapshot(revision, digest_of(model))))
        else:
            assert isinstance(arg, list)
            for k, v in arg:
                if v is None:
                    model.pop(k, None)
                else:
                    model[k] = v
            updates = [(k, None if v is None else c(v)) for k, v in arg]
            results = [
                list(r.apply_delta(revision, updates, digest_of(model))) for r in (full, hashes)
            ]
        assert results[0] == results[1]
        assert hashes.digest == full.digest == digest_of(model)
        assert len(hashes) == len(full) == len(model)
    assert dict(full.state) == model
    assert hashes.values == {}
    with pytest.raises(ValuesNotKept):
        hashes.state  # noqa: B018
