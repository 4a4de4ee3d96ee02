"""Hostile datastore values through the whole server path: validation, the
syncer's batch handling, the cache, the frame encoder, and an agent's replica.
Whatever a value is, it is admitted or counted invalid; the syncer never
raises and the agent ends with the server's digest."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_model.errors import InvalidValue, SelectorError
from calico_model.selector import MAX_DEPTH, MAX_LENGTH, parse
from calico_model.validation import admit, validate
from commands.demo.cluster import policy
from snapshot import SnapshotCache
from syncclient.replica import Replica
from syncproto import Codec, Delta, Progress
from syncproto.encoding import FrameEncoder
from syncproto.frames import FrameDecoder
from typha.datastore.etcd_client import WatchBatch, WatchEvent
from typha.datastore.syncer import Syncer

POLICY_KEY, POLICY = policy("shop", "p", "web", 1, 80)


def reason(key: str, raw: bytes) -> str:
    with pytest.raises(InvalidValue) as info:
        validate(key, raw)
    return info.value.reason


def with_selector(sel: str) -> bytes:
    return orjson.dumps({**POLICY, "spec": {**POLICY["spec"], "selector": sel}})


def with_port(port: object) -> bytes:
    rule = {"action": "Allow", "protocol": "TCP", "destination": {"ports": [port]}}
    return orjson.dumps({**POLICY, "spec": {**POLICY["spec"], "ingress": [rule]}})


def test_the_values_that_used_to_stop_the_syncer_are_invalid_with_a_reason() -> None:
    assert reason("/calico/x", b'{"a":' + b"[" * 300 + b"]" * 300 + b"}") == "too_deep"
    assert reason(POLICY_KEY, with_selector("(" * 400 + "all()" + ")" * 400)) == "bad_selector"
    assert reason(POLICY_KEY, with_port("²")) == "bad_port"
    assert reason(POLICY_KEY, with_port("9" * 5000)) == "bad_port"
    assert reason(POLICY_KEY, with_port("1:" + "9" * 5000)) == "bad_port"


def test_depth_and_selector_limits_leave_real_values_alone() -> None:
    nested: object = {}
    for _ in range(60):
        nested = {"a": nested}
    validate("/calico/x", orjson.dumps(nested))
    validate(POLICY_KEY, with_selector("(" * (MAX_DEPTH - 1) + "all()" + ")" * (MAX_DEPTH - 1)))
    validate(POLICY_KEY, with_port("http-alt"))
    validate(POLICY_KEY, with_port("8080:8090"))


def test_selector_bounds() -> None:
    with pytest.raises(SelectorError, match="deeper"):
        parse("(" * (MAX_DEPTH + 1) + "all()" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(SelectorError, match="longer"):
        parse("a == '" + "x" * MAX_LENGTH + "'")
    # As in Calico, a run of '!' toggles one negation: no depth, no recursion.
    assert str(parse("!" * 3 + "has(a)")) == "!has(a)"
    assert str(parse("!" * 2000 + "all()")) == "all()"


def test_a_key_that_is_not_utf8_is_invalid_not_an_error() -> None:
    with pytest.raises(InvalidValue) as info:
        admit(b"/calico/\xff", b"{}", "/calico/")
    assert info.value.reason == "key_not_utf8"


# -- hypothesis: hostile values through the server path to an agent ---------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["²", "٣", "9" * 5000, "!" * 300 + "all()", "(" * 200]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=20,
)
selector_text = st.lists(
    st.sampled_from(["(", ")", "!", "&&", "||", "all()", "has(a)", "a == 'x'", " ", "²"]),
    max_size=60,
).map("".join) | st.integers(min_value=0, max_value=3000).map(lambda n: "(" * n + ")" * n)
port = st.one_of(
    st.integers(min_value=-10, max_value=70000),
    st.text(max_size=8),
    st.sampled_from(["²", "9" * 5000, "1:" + "9" * 5000, "80:70", "http"]),
)


def deep(depth: int) -> bytes:
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def hostile_entry(draw: st.DrawFn) -> tuple[bytes, bytes]:
    kind = draw(st.sampled_from(["policy", "raw", "deep", "bytes"]))
    if kind == "policy":
        spec = dict(POLICY["spec"])
        spec["selector"] = draw(selector_text)
        spec["ingress"] = [
            {
                "action": draw(st.sampled_from(["Allow", "Deny", "Jump"])),
                "destination": {"ports": draw(st.lists(port, max_size=3))},
                "source": {"selector": draw(selector_text)},
            }
        ]
        name = draw(st.sampled_from(["p", "q"]))
        key = POLICY_KEY.rsplit("/", 1)[0] + "/" + name
        value = {**POLICY, "metadata": {**POLICY["metadata"], "name": name}, "spec": spec}
        return key.encode(), orjson.dumps(value)
    if kind == "raw":
        # stdlib json: it writes integers of any size, as a hostile writer would
        text = json.dumps({"v": draw(json_value)})
        return b"/calico/x/" + draw(st.binary(min_size=1, max_size=4)), text.encode()
    if kind == "deep":
        return b"/calico/x/deep", deep(draw(st.integers(min_value=1, max_value=1200)))
    return b"/calico/x/raw", draw(st.binary(max_size=64))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(hostile_entry(), st.booleans()), max_size=6), max_size=6))
def test_hostile_values_never_stall_the_syncer(
    batches: list[list[tuple[tuple[bytes, bytes], bool]]],
) -> None:
    encoder = FrameEncoder(max_frame=16 << 20)
    cache = SnapshotCache(encode_batch=encoder.batch, encode_snapshot=encoder.snapshot)
    syncer = Syncer(lambda: None, "/calico/", cache, lambda: None)  # type: ignore[arg-type,return-value]
    syncer.has_state = syncer.following = True
    replica = Replica()
    codec = Codec(max_frame=16 << 20)
    decoder = FrameDecoder(16 << 20)
    revision = 1
    for group in batches:
        events = []
        for (key, value), deleted in group:
            revision += 1
            events.append(WatchEvent(deleted, key, value, revision))
        before = cache.seq
        syncer.apply_watch_group([WatchBatch(revision, events)], float(revision))
        assert cache.revision == revision  # followed, whatever the values
        if cache.seq == before:
            continue
        (frame,) = decoder.feed(cache.batches_after(before)[-1].frame)
        msg = codec.decode(frame)
        assert isinstance(msg, Delta | Progress)
        if isinstance(msg, Delta):
            replica.apply_delta(msg.revision, msg.updates, msg.digest)
        else:
            replica.apply_progress(msg.revision, msg.digest)
        assert replica.digest == cache.digest_hex
    assert set(replica.values) == set(cache.current.entries)
