from __future__ import annotations

import tracemalloc
from hashlib import blake2b

import orjson
from hypothesis import given
from hypothesis import strategies as st

from snapshot import RunningDigest, canonical_json, digest_of, entry_hash, format_digest
from snapshot.digest import MODULUS, parse_digest


def reference_h(key: str, value: object) -> int:
    # Written out from the documented contract, independently of snapshot.digest.
    data = key.encode() + b"\0" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(blake2b(data, digest_size=16).digest(), "big")


def test_entry_hash_matches_the_contract() -> None:
    value = {"b": 1, "a": [1, 2, {"z": None, "y": "x"}]}
    assert entry_hash("/calico/k", value) == reference_h("/calico/k", value)


def test_key_order_in_the_value_does_not_matter() -> None:
    assert entry_hash("k", {"a": 1, "b": 2}) == entry_hash("k", {"b": 2, "a": 1})
    assert canonical_json({"b": 2, "a": 1}) == b'{"a":1,"b":2}'


def test_canonical_bytes_hold_no_more_memory_than_their_length() -> None:
    # The server stores these bytes for every key: a 4-8 KiB output buffer
    # kept behind each 800-byte value multiplied its memory by five.
    value = {"metadata": {"name": "x" * 700}, "spec": {}}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [canonical_json(value) for _ in range(100)]
        per_value = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_value < len(kept[0]) + 128


def test_empty_state_digest_is_zero() -> None:
    assert digest_of({}) == "0" * 32


def test_format_is_32_lowercase_hex() -> None:
    d = digest_of({"k": {"v": 1}})
    assert len(d) == 32
    assert d == d.lower()
    assert int(d, 16) == reference_h("k", {"v": 1})
    assert format_digest(MODULUS + 5) == "0" * 31 + "5"
    assert parse_digest(d) == int(d, 16)


values = st.dictionaries(st.text(max_size=5), st.integers(-5, 5) | st.text(max_size=5), max_size=3)


@given(st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=20))
def test_running_digest_equals_from_scratch(state: dict[str, dict[str, object]]) -> None:
    rd = RunningDigest()
    for k, v in state.items():
        rd.add(entry_hash(k, v))
    assert rd.hex() == digest_of(state)
    # removing everything again returns to zero, whatever the order
    for k in reversed(list(state)):
        rd.remove(entry_hash(k, state[k]))
    assert rd.hex() == "0" * 32
