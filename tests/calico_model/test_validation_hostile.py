"""Values a single resource writer could use against a node, which Calico's
own validation refuses: a trailing newline slipped past `$` in a pattern, an
address zone (`%x`) that Python reads and nft does not, a pool over the
link-local range."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from calico_model.errors import InvalidValue
from calico_model.validation import validate
from commands.demo.cluster import ippool, node, node_key, policy, workload


def _refused(key: str, value: Any) -> str:
    with pytest.raises(InvalidValue) as info:
        validate(key, orjson.dumps(value))
    return info.value.reason


def _wep() -> tuple[str, dict[str, Any]]:
    key, value = workload("n1", 1, "shop", "web-1", 5, "web")
    return key, copy.deepcopy(value)


def test_a_trailing_newline_is_refused_in_names_labels_and_interfaces() -> None:
    key, value = _wep()
    validate(key, orjson.dumps(value))
    value["spec"]["interfaceName"] = "cali0123456789\n"
    assert _refused(key, value) == "bad_name"
    key, value = _wep()
    value["metadata"]["labels"]["app"] = "web\n"
    assert _refused(key, value) == "bad_label"
    pk, pv = policy("shop", "p", "web", 1, 80)
    pv = copy.deepcopy(pv)
    pv["spec"]["tier"] = "default\n"
    assert _refused(pk, pv) != ""


@pytest.mark.parametrize("zoned", ["fd00::1%x", "fd00::1%x/128", "10.0.0.1%eth0"])
def test_address_zones_are_refused_everywhere(zoned: str) -> None:
    key, value = _wep()
    value["spec"]["ipNetworks"] = [zoned]
    assert _refused(key, value) == "bad_cidr"
    pk, pv = policy("shop", "p", "web", 1, 80)
    pv = copy.deepcopy(pv)
    pv["spec"]["ingress"][0]["source"] = {"nets": [zoned]}
    assert _refused(pk, pv) == "bad_cidr"
    nk, nv = node_key("n1"), copy.deepcopy(node("n1", 1))
    nv["spec"]["ipv6VXLANTunnelAddr"] = zoned
    assert _refused(nk, nv) == "bad_cidr"


@pytest.mark.parametrize("cidr", ["169.254.0.0/16", "169.254.8.0/24", "0.0.0.0/0", "fe80::/64"])
def test_a_pool_over_link_local_is_refused(cidr: str) -> None:
    key, value = ippool()
    value = copy.deepcopy(value)
    value["spec"]["cidr"] = cidr
    value["spec"]["blockSize"] = 26 if "." in cidr else 122
    assert _refused(key, value) == "bad_cidr"
