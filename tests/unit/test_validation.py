from __future__ import annotations

import orjson
import pytest

from typha.sample_cluster import block, ippool, node, node_key, policy, seed_cluster, workload
from typha.validation import InvalidValue, validate


def test_every_sample_object_is_valid() -> None:
    for key, value in seed_cluster(nodes=3, pods_per_node=3):
        assert orjson.loads(validate(key, orjson.dumps(value)).canonical) == value


def test_unknown_keys_with_object_values_pass() -> None:
    assert validate("/calico/felix/v2/x", b'{"b":1,"a":2}').canonical == b'{"a":2,"b":1}'


def _reason(key: str, value: object | bytes) -> str:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    with pytest.raises(InvalidValue) as info:
        validate(key, raw)
    return info.value.reason


def test_reasons() -> None:
    assert _reason("/calico/x", b"{nope") == "not_json"
    assert _reason("/calico/x", b"[1]") == "not_object"
    assert _reason("/calico/x", b"null") == "not_object"
    k = node_key("n1")
    assert _reason(k, {**node("n1", 1), "kind": "IPPool"}) == "kind_mismatch"
    assert _reason(k, node("n2", 1)) == "name_mismatch"
    assert _reason(k, {**node("n1", 1), "spec": [1]}) == "bad_spec"
    assert _reason(k, {**node("n1", 1), "metadata": "x"}) == "bad_metadata"
    pk, pv = policy("shop", "p", "web", 1, 80)
    assert _reason(pk.replace("/shop/", "/other/"), pv) == "namespace_mismatch"
    ik, iv = ippool()
    assert _reason(ik, {**iv, "spec": {**iv["spec"], "cidr": "10.0.0.300/8"}}) == "bad_cidr"
    bk, bv = block("n1", 7)
    assert _reason(bk, {**bv, "cidr": "10.9.9.0/26"}) == "block_cidr_mismatch"
    wk, wv = workload("n1", 1, "shop", "p1", 3, "web")
    wv["spec"]["ipNetworks"] = ["not-an-ip"]
    assert _reason(wk, wv) == "bad_cidr"
