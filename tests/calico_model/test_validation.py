from __future__ import annotations

import orjson
import pytest

from calico_model.errors import InvalidValue
from calico_model.validation import validate
from commands.demo.cluster import block, ippool, node, node_key, policy, seed_cluster, workload


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


def _gnp(**spec: object) -> tuple[str, dict[str, object]]:
    key = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/g"
    return key, {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "g"},
        "spec": {"selector": "all()", **spec},
    }


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"selector": "app =="}, "bad_selector"),
        ({"namespaceSelector": "has("}, "bad_selector"),
        ({"ingress": [{"action": "Maybe"}]}, "bad_action"),
        ({"ingress": [{"action": "Allow", "protocol": "QUIC"}]}, "bad_protocol"),
        ({"ingress": [{"action": "Allow", "protocol": 300}]}, "bad_protocol"),
        ({"egress": [{"action": "Deny", "destination": {"nets": ["10.0.0.0/33"]}}]}, "bad_cidr"),
        ({"egress": [{"action": "Deny", "destination": {"ports": [70000]}}]}, "bad_port"),
        ({"egress": [{"action": "Deny", "destination": {"ports": ["90:80"]}}]}, "bad_port"),
        ({"egress": [{"action": "Deny", "source": {"selector": "!"}}]}, "bad_selector"),
        ({"egress": "nope"}, "bad_rule"),
    ],
)
def test_policy_rules_are_validated(spec: dict[str, object], reason: str) -> None:
    key, value = _gnp(**spec)
    assert _reason(key, value) == reason


def test_valid_rules_pass() -> None:
    key, value = _gnp(
        namespaceSelector="has(projectcalico.org/name)",
        ingress=[
            {
                "action": "Allow",
                "protocol": 6,
                "source": {"selector": "app == 'x'"},
                "destination": {"ports": [80, "8080:8090", "http"]},
            }
        ],
        egress=[{"action": "Pass"}, {"action": "Log", "protocol": "ICMPv6"}],
    )
    validate(key, orjson.dumps(value))
