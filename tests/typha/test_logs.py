"""What the logs say, from real processes: a line per agent connection with
its peer and outcome, a periodic summary on both sides, ISO-8601 UTC
timestamps or JSON lines, and no asyncio noise when etcd goes away."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd
from tests.cluster import put_items
from tests.conftest import Proc, http_json, start_felix_agent, start_typha, wait_until
from typha.fanout.connlog import ConnectionLog

ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) \S+: ")


@pytest.mark.integration
def test_connections_and_summaries_are_logged_with_utc_timestamps(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    asyncio.run(put_items(etcd.endpoint, [("/calico/t/a", b'{"a": 1}')]))
    typha, agent_port, _ = start_typha(procs, etcd, "--log-summary-interval", "0.5")
    agent, status_port = start_felix_agent(
        procs,
        f"127.0.0.1:{agent_port}",
        "node-7",
        "--log-format",
        "json",
        "--log-summary-interval",
        "0.5",
    )
    wait_until(lambda: http_json(f"http://127.0.0.1:{status_port}/status")["in_sync"], "sync")
    wait_until(lambda: "connected: snapshot at revision" in typha.output(), "connect line")
    wait_until(lambda: "1 agents (1 streaming)" in typha.output(), "a summary with the agent")
    wait_until(lambda: "(datastore in_sync) at revision" in agent.output(), "agent's summary")
    agent.stop()
    wait_until(lambda: "closed:" in typha.output(), "close line")

    out = typha.output()
    assert re.search(r"agent node-7 from 127\.0\.0\.1:\d+ connected: snapshot at revision", out)
    assert re.search(r"agent node-7 from 127\.0\.0\.1:\d+ closed: peer\w* after [\d.]+s", out)
    assert re.search(r"summary: serving, datastore in_sync, revision \d+, 1 keys; ", out)
    lines = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert lines
    assert all(ISO_LINE.match(line) for line in lines), lines

    records = [orjson.loads(line) for line in agent.output().splitlines() if line.strip()]
    assert records
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"]) for r in records)
    msgs = [r["msg"] for r in records]
    assert any(m.startswith("node-7: in sync with 127.0.0.1:") for m in msgs), msgs
    summary = re.compile(r"node-7: in sync with .* \(datastore in_sync\) at revision")
    assert any(summary.match(m) for m in msgs), msgs


@pytest.mark.integration
def test_an_agent_without_typha_says_so_every_interval(procs: Callable[..., Proc]) -> None:
    from tests.conftest import free_port

    agent, _ = start_felix_agent(
        procs, f"127.0.0.1:{free_port()}", "lonely", "--log-summary-interval", "0.3"
    )
    wait_until(lambda: agent.output().count("lonely: not connected") >= 2, "two summaries")
    assert "failed attempts" in agent.output()


@pytest.mark.integration
def test_losing_etcd_logs_the_trouble_and_no_asyncio_noise(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    typha, _, http_port = start_typha(procs, etcd, "--etcd-watch-timeout", "3")
    etcd.kill()
    # The noise came from the first broken watch's gRPC tasks, once the
    # retry had replaced its channel: wait for a retry to fail too.
    wait_until(lambda: typha.output().count("etcd trouble") >= 2, "a retry failed too")
    etcd.spawn()
    etcd.wait_ready()
    wait_until(lambda: http_json(f"http://127.0.0.1:{http_port}/status")["in_sync"], "back")
    typha.stop()
    out = typha.output()
    assert "Task was destroyed" not in out
    assert "asynchronous generator" not in out
    assert " ERROR " not in out, out


def test_connection_lines_are_bounded_and_the_dropped_ones_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    logger = logging.getLogger("test.connlog")
    cl = ConnectionLog(logger, lambda: now[0], rate=2.0, burst=3)
    with caplog.at_level(logging.INFO, logger="test.connlog"):
        for i in range(10):
            cl.info("agent %d connected", i)
        assert [r.getMessage() for r in caplog.records] == [
            "agent 0 connected",
            "agent 1 connected",
            "agent 2 connected",
        ]
        assert cl.suppressed == 7
        now[0] = 1.0  # two lines' worth of budget
        cl.info("agent %d closed", 10)
    assert caplog.records[-1].getMessage() == (
        "agent 10 closed (7 connection lines suppressed before this one)"
    )
