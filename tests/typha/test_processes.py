"""Process-level behaviour: a SIGSTOPped agent, and SIGTERM draining agents to
another replica."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import urllib.error
from collections.abc import Callable

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd
from tests.conftest import (
    Proc,
    free_port,
    http_json,
    http_text,
    metric,
    start_felix_agent,
    start_typha,
    wait_until,
)
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration


start_server = start_typha
start_agent = start_felix_agent


def agent_status(port: int) -> dict[str, object]:
    st: dict[str, object] = http_json(f"http://127.0.0.1:{port}/status")
    return st


async def write_values(endpoint: str, count: int, size: int, tag: str) -> None:
    conn = EtcdConnection([endpoint])
    try:
        for i in range(count):
            pad = os.urandom(size // 2).hex()
            await conn.put(f"/calico/t/{i:04d}", orjson.dumps({"tag": tag, "pad": pad}))
    finally:
        await conn.close()


def test_a_sigstopped_agent_is_cut_off_and_converges_after_sigcont(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    asyncio.run(write_values(etcd.endpoint, 10, 100, "seed"))
    server, agent_port, http_port = start_server(
        procs, etcd, "--max-client-buffer-bytes", "262144", "--max-client-lag", "2"
    )
    typha = f"127.0.0.1:{agent_port}"
    (frozen, frozen_port), (alive, alive_port) = (
        start_agent(procs, typha, "frozen"),
        start_agent(procs, typha, "alive"),
    )
    wait_until(
        lambda: agent_status(frozen_port)["in_sync"] and agent_status(alive_port)["in_sync"],
        "both agents in sync",
    )
    os.kill(frozen.popen.pid, signal.SIGSTOP)
    try:
        # ~24 MiB of updates: far more than socket buffers hold.
        for round_ in range(6):
            asyncio.run(write_values(etcd.endpoint, 100, 40_000, f"r{round_}"))
        truth = asyncio.run(read_etcd_state([etcd.endpoint]))
        wait_until(lambda: agent_status(alive_port)["digest"] == truth.digest, "alive converges")
        wait_until(
            lambda: (
                metric(
                    http_text(f"http://127.0.0.1:{http_port}/metrics"),
                    'typha_connections_closed_total{reason="slow_client"}',
                )
                >= 1
            ),
            "the frozen agent is cut off",
        )
        assert http_json(f"http://127.0.0.1:{http_port}/status")["connections"] == 1
    finally:
        os.kill(frozen.popen.pid, signal.SIGCONT)
    wait_until(
        lambda: (
            agent_status(frozen_port)["digest"] == truth.digest
            and agent_status(frozen_port)["in_sync"]
        ),
        "the woken agent reconnects and converges",
    )
    for p in (frozen, alive, server):
        assert p.stop() == 0, p.output()


def test_sigterm_drains_agents_to_another_replica_and_exits_0(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    asyncio.run(write_values(etcd.endpoint, 50, 200, "seed"))
    a, a_port, a_http = start_server(procs, etcd, "--shutdown-timeout", "3")
    # The agents know both replicas, but b is not up yet: all of them land on a.
    # Hold b's port (bound, not listening: connections are refused) so that no
    # other socket, not even an agent's own outgoing one, can take it meanwhile.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    b_port, b_http = holder.getsockname()[1], free_port()
    both = f"127.0.0.1:{a_port},127.0.0.1:{b_port}"
    agents = [start_agent(procs, both, f"n{i}") for i in range(4)]
    wait_until(lambda: all(agent_status(p)["in_sync"] for _, p in agents), "agents on a")
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{a_http}/status")["connections"] == 4,
        "all four connected to a",
    )
    on_a = 4
    holder.close()
    b = procs(
        "typha",
        "serve",
        "--etcd-endpoints",
        etcd.endpoint,
        "--listen",
        f"127.0.0.1:{b_port}",
        "--http-listen",
        f"127.0.0.1:{b_http}",
    )
    wait_until(lambda: http_json(f"http://127.0.0.1:{b_http}/readyz")["ready"], "b ready")

    a.popen.send_signal(signal.SIGTERM)

    def a_unready() -> bool:
        try:
            http_json(f"http://127.0.0.1:{a_http}/readyz")
        except urllib.error.HTTPError as exc:
            return exc.code == 503
        except OSError:
            return True  # already gone
        return False

    wait_until(a_unready, "replica a reports not ready while draining")
    assert a.popen.wait(30) == 0, a.output()
    assert f"draining {on_a} connections" in a.output()
    asyncio.run(write_values(etcd.endpoint, 5, 200, "after"))
    truth = asyncio.run(read_etcd_state([etcd.endpoint]))
    wait_until(
        lambda: all(agent_status(p)["digest"] == truth.digest for _, p in agents),
        "every agent follows replica b",
    )
    assert http_json(f"http://127.0.0.1:{b_http}/status")["connections"] == 4
    b_metrics = http_text(f"http://127.0.0.1:{b_http}/metrics")
    # Agents that moved from a resumed on b instead of taking a snapshot.
    assert metric(b_metrics, "typha_resumes_total") == 4
    assert metric(b_metrics, "typha_snapshots_sent_total") == 0
    for proc, _ in agents:
        assert proc.stop() == 0
    assert b.stop() == 0


def test_a_drain_ends_when_the_last_agent_has_gone_not_at_the_timeout(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    asyncio.run(write_values(etcd.endpoint, 5, 100, "seed"))
    # A drain allowed ten minutes: with one agent it must not take them.
    server, agent_port, _ = start_server(procs, etcd, "--shutdown-timeout", "600")
    _, status_port = start_agent(procs, f"127.0.0.1:{agent_port}", "n1")
    wait_until(lambda: agent_status(status_port)["in_sync"], "agent in sync")
    server.popen.send_signal(signal.SIGTERM)
    assert server.popen.wait(60) == 0, server.output()
    assert "drained 1 connections in" in server.output()
    assert "(0 cut off)" in server.output()  # it left on its GOODBYE
