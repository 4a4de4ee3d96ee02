"""A server and agents on a non-default datastore prefix: the agent parses
keys relative to the prefix it is given, so it programs the same tables as
it would under /calico/."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from commands.demo.cluster import seed_cluster
from commands.demo.etcd import EmbeddedEtcd
from felix_client.calc import compute
from tests.cluster import write_state
from tests.conftest import Proc, free_port, http_json, start_typha, wait_until

pytestmark = pytest.mark.integration

PREFIX = "/other/"
NODE = "node-2"


def relocated() -> dict[str, object]:
    return {PREFIX + k.removeprefix("/calico/"): v for k, v in seed_cluster(6, 5)}


def test_agents_program_routes_under_a_non_default_prefix(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    state = relocated()
    asyncio.run(write_state(etcd.endpoint, state))
    _, agent_port, http_port = start_typha(procs, etcd, "--prefix", PREFIX)
    assert http_json(f"http://127.0.0.1:{http_port}/status")["keys"] == len(state)
    expected = compute(state, NODE, prefix=PREFIX)
    assert len(expected.routes) > 6  # blocks of every node plus local pods
    assert expected.chains

    typha = f"127.0.0.1:{agent_port}"
    by_flag, by_env = free_port(), free_port()
    common = ["--typha", typha, "--node", NODE]
    procs("felix-agent", *common, "--http-listen", f"127.0.0.1:{by_flag}", "--prefix", PREFIX)
    procs(
        "felix-agent",
        *common,
        "--http-listen",
        f"127.0.0.1:{by_env}",
        env={"FELIX_PREFIX": PREFIX},
    )
    for port in (by_flag, by_env):
        url = f"http://127.0.0.1:{port}/status"
        wait_until(lambda url=url: http_json(url)["in_sync"], "agent in sync")
        st = http_json(url)
        assert st["routes"] == len(expected.routes)
        assert st["acl_rules"] == sum(len(c) for c in expected.chains.values())
        assert st["ip_sets"] == len(expected.ipsets)
