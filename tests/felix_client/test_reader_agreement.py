"""The server's validation and the agent's reader accept and refuse the same
values.

Every value is judged twice: by `validate` (what the server serves) and by a
Calculator (what the agent takes into its calculation: a refused value is
absent and counted under `invalid_<kind>`).  The values are Calico's own
validator examples (every kind served), the sample cluster the benchmarks
use, and mutations of its endpoints that each break one field.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from calico_model.errors import InvalidValue
from calico_model.validation import validate
from commands.demo.cluster import seed_cluster
from felix_client.calc import Calculator
from tests.calico_model.test_calico_cases import CASES


def _served(key: str, value: Any) -> bool:
    try:
        validate(key, orjson.dumps(value))
    except InvalidValue:
        return False
    return True


def _taken(key: str, value: Any) -> bool:
    """Whether the agent takes the value in (it is not counted as invalid)."""
    calc = Calculator("node-0")
    calc.apply([(key, value)])
    return not any(k.startswith("invalid_") for k in calc.errors)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"line{c['line']}")
def test_calico_examples_are_judged_alike(case: dict[str, Any]) -> None:
    served = _served(case["key"], case["value"])
    assert _taken(case["key"], case["value"]) == served, case["description"]


def _sample() -> list[tuple[str, Any]]:
    return list(seed_cluster(3, 4))


def test_every_value_of_the_sample_cluster_is_served_and_taken() -> None:
    items = _sample()
    kinds = {k.split("/")[5] if "/v3/" in k else "ipam" for k, _ in items}
    assert {"workloadendpoints", "nodes", "ippools", "ipam"} <= kinds
    for key, value in items:
        assert _served(key, value), key
        assert _taken(key, value), key


def _set(path: str, v: Any) -> Callable[[dict[str, Any]], None]:
    *parents, leaf = path.split(".")

    def mutate(value: dict[str, Any]) -> None:
        node = value
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v

    return mutate


def _nested(depth: int) -> list[Any]:
    out: list[Any] = []
    for _ in range(depth):
        out = [out]
    return out


# Each breaks one field of a valid workload endpoint (or, where noted, keeps
# it valid): the agent used to read several of these leniently, as a wider
# network or with the field dropped.
MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "a /24 as a pod address": _set("spec.ipNetworks", ["10.65.0.0/24"]),
    "an address zone": _set("spec.ipNetworks", ["fd00::1%eth0"]),
    "a leading zero": _set("spec.ipNetworks", ["10.065.0.1/32"]),
    "not an address": _set("spec.ipNetworks", ["ten"]),
    "addresses not a list": _set("spec.ipNetworks", "10.65.0.1/32"),
    "an address not a string": _set("spec.ipNetworks", [167772161]),
    "an interface name with a quote": _set("spec.interfaceName", 'cali"x'),
    "no interface": _set("spec.interfaceName", ""),
    "a profile not a name": _set("spec.profiles", ["Not A Name"]),
    "a port without a protocol": _set("spec.ports", [{"name": "http", "port": 80}]),
    "a port out of range": _set("spec.ports", [{"name": "http", "protocol": "TCP", "port": 0}]),
    "a label value too long": _set("metadata.labels", {"app": "x" * 64}),
    "a label key with a space": _set("metadata.labels", {"a b": "x"}),
    "labels not strings": _set("metadata.labels", {"app": 5}),
    "a namespace unlike the key's": _set("metadata.namespace", "other"),
    "a bad MAC": _set("spec.mac", "ee:ee:ee"),
    "NAT of an address not the pod's": _set(
        "spec.ipNATs", [{"internalIP": "10.99.0.1", "externalIP": "172.16.0.1"}]
    ),
    "nested past the depth limit": _set("spec.extra", _nested(70)),
    "still valid: an IPv6 address": _set("spec.ipNetworks", ["fd00::5/128"]),
    "still valid: a bare address": _set("spec.ipNetworks", ["10.65.0.9"]),
    "still valid: no ports": _set("spec.ports", []),
}


@pytest.mark.parametrize("what", MUTATIONS)
def test_a_broken_endpoint_is_judged_alike(what: str) -> None:
    key, value = next((k, v) for k, v in _sample() if "/workloadendpoints/" in k)
    value = copy.deepcopy(value)
    MUTATIONS[what](value)
    served = _served(key, value)
    assert served is what.startswith("still valid"), what
    assert _taken(key, value) is served, what


def test_an_endpoint_that_turns_invalid_is_gone_from_the_calculation() -> None:
    key, value = next(
        (k, v) for k, v in _sample() if "/workloadendpoints/" in k and v["spec"]["node"] == "node-0"
    )
    calc = Calculator("node-0")
    batch = calc.apply([(key, value)])
    assert batch.endpoints_set
    assert calc.routes.weps
    bad = copy.deepcopy(value)
    bad["spec"]["ipNetworks"] = ["10.65.0.0/16"]
    batch = calc.apply([(key, bad)])
    assert key in batch.endpoints_del
    assert not calc.routes.weps
    assert calc.errors["invalid_workload_endpoint"] == 1
