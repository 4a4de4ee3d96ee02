"""A leaf replica validates what its upstream serves with the same gate as a
root's etcd input (real processes).  The root here serves a wider prefix
(`/calico/resources/`), under which a WorkloadEndpoint is just a JSON object
to it; the leaf serves `/calico/`, where it is a WorkloadEndpoint, and one
whose interface name would be an nft command refuses to serve."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd
from tests.cluster import put_items
from tests.conftest import Proc, http_json, http_text, metric, start_typha, wait_until

pytestmark = pytest.mark.integration

V3 = "/calico/resources/v3/projectcalico.org"


def wep(name: str, iface: str) -> tuple[str, bytes]:
    value = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"node": "n1", "interfaceName": iface, "ipNetworks": ["10.65.1.9/32"]},
    }
    return f"{V3}/workloadendpoints/shop/{name}", orjson.dumps(value)


def test_the_leaf_refuses_what_a_root_would_refuse(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    good, bad = wep("good", "cali1234"), wep("bad", 'x" : accept }; flush table inet hostfw #')
    asyncio.run(put_items(etcd.endpoint, [good, bad]))
    _, root_agents, root_http = start_typha(procs, etcd, "--prefix", "/calico/resources/")
    _, _, leaf_http = start_typha(
        procs, None, "--upstream-typha", f"127.0.0.1:{root_agents}", "--prefix", "/calico/"
    )
    root = http_json(f"http://127.0.0.1:{root_http}/status")
    assert root["keys"] == 2  # to the root both are plain objects under its prefix
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{leaf_http}/status")["revision"] >= root["revision"],
        "the leaf follows the root",
    )
    assert http_json(f"http://127.0.0.1:{leaf_http}/status")["keys"] == 1
    text = http_text(f"http://127.0.0.1:{leaf_http}/metrics")
    assert metric(text, 'typha_invalid_values_total{reason="bad_name"}') == 1
    # A later change is validated too: the good endpoint turned bad is withdrawn.
    asyncio.run(put_items(etcd.endpoint, [wep("good", "cali\n")]))
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{leaf_http}/status")["keys"] == 0,
        "the leaf withdraws the value that became invalid",
    )
