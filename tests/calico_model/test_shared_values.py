"""Equal small values that endpoints repeat are held once."""

from __future__ import annotations

import orjson

from calico_model import shared_values
from calico_model.endpoints import Endpoint
from calico_model.keys import KeyLayout
from calico_model.shared_values import share
from calico_model.validation import check_resource
from commands.demo.cluster import workload


def test_equal_values_come_back_as_one_object() -> None:
    a, b = ("kns.shop", "ksa.shop.default"), tuple(["kns.shop", "ksa.shop.default"])
    assert a is not b
    assert share(a) is share(b)
    s1, s2 = "".join(["node-", "7"]), "".join(["node", "-7"])
    assert s1 is not s2
    assert share(s1) is share(s2)


def test_the_table_is_bounded() -> None:
    for i in range(shared_values.TABLE_CAP + 10):
        share((f"p{i}",))
    assert len(shared_values._table) <= shared_values.TABLE_CAP


def test_endpoints_read_from_separate_values_share_what_repeats() -> None:
    # Two pods of one node, namespace and app, each decoded from its own
    # JSON (as every value arrives): their node, namespace, profile list and
    # named ports are one object each; their addresses are their own.
    layout = KeyLayout("/calico/")
    eps = []
    for pod, ip in (("web-1", 5), ("web-2", 6)):
        key, value = workload("node-7", 7, "shop", pod, ip, "web")
        rk = layout.parse(key)
        assert rk is not None
        eps.append(check_resource(rk, orjson.loads(orjson.dumps(value))))
    one, two = eps
    assert isinstance(one, Endpoint)
    assert isinstance(two, Endpoint)
    assert one.node is two.node
    assert one.namespace is two.namespace
    assert one.profiles is two.profiles
    assert one.ports is two.ports
    assert one.ports  # the sample pods name a port
    assert one.nets != two.nets
