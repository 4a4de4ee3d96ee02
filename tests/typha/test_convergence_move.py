"""An agent's applied report follows it to its next replica: in process, with
nothing written to etcd after the agent applied, so the new replica can only
learn of it from the agent repeating its report on the new connection."""

from __future__ import annotations

import pytest

from commands.demo.etcd import EmbeddedEtcd
from felix_client import SyncClient
from tests.cluster import seed_sample, serve_config
from tests.conftest import async_wait_until
from tests.typha.test_rebalance import held_ports
from typha.app import TyphaApp

pytestmark = pytest.mark.integration


async def test_a_drained_agents_report_is_repeated_to_its_next_replica(
    etcd: EmbeddedEtcd,
) -> None:
    await seed_sample(etcd.endpoint, 2, 2)
    holders = held_ports(2)
    ports = [s.getsockname()[1] for s in holders]
    holders[0].close()

    def replica(i: int) -> TyphaApp:
        # No rebalancing, no registry, no source checks: nothing writes to
        # etcd, so no revision newer than the agent's report ever exists.
        return TyphaApp(
            serve_config(
                etcd.endpoint,
                f"r{i}",
                port=ports[i],
                rebalance_interval=0.0,
                source_check_interval=0.0,
                shutdown_timeout=0.5,
            )
        )

    a = replica(0)
    await a.start()
    b: TyphaApp | None = None
    client = SyncClient(",".join(f"127.0.0.1:{p}" for p in ports), node="n0", backoff_max=0.2)
    await client.start()
    try:
        await client.wait_in_sync()
        revision = client.revision
        client.report_applied(revision)  # as the agent does once its dataplane has it
        await async_wait_until(
            lambda: a.convergence(revision)["applied"] == 1, "a hears the report"
        )
        holders[1].close()
        b = replica(1)
        await b.start()
        assert b.convergence(revision)["applied"] == 0
        await a.drain()  # GOODBYE: the agent moves to b
        await async_wait_until(
            lambda: client.connected and client.server.endswith(f":{ports[1]}"),
            "the agent moves to b",
        )
        await async_wait_until(
            lambda: b.convergence(revision)["applied"] == 1, "b hears the repeated report"
        )
        assert b.cache.revision == revision  # nothing newer to report: it was repeated
        assert client.stats.applied_reports == 2  # once to each replica
        gone = a.convergence(revision)
        assert gone["agents"] == 0
        assert [x["node"] for x in gone["disconnected"]] == ["n0"]
    finally:
        await client.close()
        await a.stop()
        if b is not None:
            await b.stop()


async def test_the_reporting_interval_follows_the_agent_count_on_every_agent(
    etcd: EmbeddedEtcd,
) -> None:
    await seed_sample(etcd.endpoint, 2, 2)
    # A budget of 8 reports a second: 0.25 s up to 2 agents, n/8 s beyond.
    app = TyphaApp(
        serve_config(
            etcd.endpoint,
            "r",
            rebalance_interval=0.0,
            source_check_interval=0.0,
            applied_reports_per_second=8.0,
        )
    )
    await app.start()
    clients: list[SyncClient] = []
    try:
        addr = f"127.0.0.1:{app.agent_port}"
        for i in range(4):
            c = SyncClient(addr, node=f"n{i}")
            clients.append(c)
            await c.start()
            await c.wait_in_sync()
        assert app.server is not None
        # The third agent made 3/8 s the interval (half again 0.25 s): the
        # first two were told by APPLIED_INTERVAL, the others in their hello.
        # The fourth's 4/8 s is within half again of it: no new broadcast.
        assert app.server.report_interval_ms == 375
        await async_wait_until(
            lambda: all(c.applied_interval == 0.375 for c in clients), "every agent at 3/8 s"
        )
        assert app.server.stats.applied_interval_changes == 1
        for c in clients[1:]:
            await c.close()
        # One agent left: back to the floor, and the one left is told.
        await async_wait_until(
            lambda: clients[0].applied_interval == 0.25, "the last agent back at 0.25 s"
        )
        assert app.server.report_interval_ms == 250
        assert app.server.stats.applied_interval_changes == 2
    finally:
        for c in clients:
            await c.close()
        await app.stop()
