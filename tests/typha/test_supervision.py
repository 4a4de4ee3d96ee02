"""Supervision: a long-running task that dies is logged at ERROR, makes the
process unready and not in sync while it is down, and is restarted; the
agent's session loop survives a bug in its own handling.  Faults are
injected into one task's loop of a real server on a real etcd."""

from __future__ import annotations

import asyncio
import logging
import operator
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd
from felix_client import SyncClient
from runtime.hostport import HostPort
from syncclient.replica import Replica
from tests.conftest import async_wait_until
from typha.app import TyphaApp
from typha.config import ServeConfig
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration


@pytest.fixture
async def app(etcd: EmbeddedEtcd) -> AsyncIterator[TyphaApp]:
    conn = EtcdConnection([etcd.endpoint])
    for i in range(5):
        await conn.put(f"/calico/t/k{i}", orjson.dumps({"i": i}))
    await conn.close()
    typha = TyphaApp(
        ServeConfig(
            etcd_endpoints=(etcd.endpoint,),
            listen=HostPort("127.0.0.1", 0),
            http_listen=HostPort("127.0.0.1", 0),
            server_id="sup",
            source_check_interval=0.2,
            rebalance_interval=0.2,
        )
    )
    await typha.start()
    await async_wait_until(typha.ready, "typha ready")
    yield typha
    await typha.stop()


def fail_once(obj: object, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make `obj.name` raise RuntimeError on its next call only."""
    original: Callable[..., object] = getattr(obj, name)
    calls: list[int] = []

    def broken(*args: object, **kw: object) -> object:
        if not calls:
            calls.append(1)
            raise RuntimeError(f"injected failure in {name}")
        return original(*args, **kw)

    monkeypatch.setattr(obj, name, broken)
    return calls


async def put(etcd: EmbeddedEtcd, key: str) -> str:
    conn = EtcdConnection([etcd.endpoint])
    await conn.put(key, orjson.dumps({"k": key}))
    await conn.close()
    return (await read_etcd_state([etcd.endpoint])).digest


@pytest.mark.parametrize(
    ("task", "target", "method"),
    [
        ("syncer", "syncer", "apply_watch_group"),
        ("fanout-timers", "server.fanout", "handle_timer"),
        ("fanout-housekeeping", "server.fanout", "housekeeping"),
        ("source-check", "source_check", "check_once"),
        ("rebalancer", "rebalancer", "_balance"),
    ],
)
async def test_a_task_that_dies_is_reported_and_restarted(
    app: TyphaApp,
    etcd: EmbeddedEtcd,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    task: str,
    target: str,
    method: str,
) -> None:
    at_failure: list[tuple[bool, bool]] = []  # (ready, syncer in sync) when it died
    app.supervisor.on_failure = lambda name: at_failure.append((app.ready(), app.syncer.following))
    caplog.set_level(logging.ERROR, logger="typha.supervisor")
    calls = fail_once(operator.attrgetter(target)(app), method, monkeypatch)
    if task == "syncer":
        await put(etcd, "/calico/t/trigger")  # the next watch batch hits the fault
    await async_wait_until(lambda: app.supervisor.failures[task] == 1, f"{task} failed once")
    assert calls == [1]
    ((was_ready, syncer_in_sync),) = at_failure
    assert not was_ready  # unready while it was down
    # A dead syncer reports itself out of sync; other tasks leave it alone.
    assert syncer_in_sync is (task != "syncer")
    assert any(f"task {task} failed" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info for r in caplog.records)  # with its traceback
    await async_wait_until(lambda: app.supervisor.healthy and app.ready(), "restarted")
    digest = await put(etcd, "/calico/t/after")
    await async_wait_until(lambda: app.cache.digest_hex == digest, "following etcd again")
    assert app.supervisor.failures[task] == 1


async def test_the_agent_session_survives_a_bug_in_its_handling(
    app: TyphaApp, etcd: EmbeddedEtcd, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SyncClient(f"127.0.0.1:{app.agent_port}", node="n", backoff_max=0.5) as client:
        await asyncio.wait_for(client.wait_in_sync(), 30)
        fail_once(Replica, "apply_delta", monkeypatch)
        digest = await put(etcd, "/calico/t/boom")
        await async_wait_until(lambda: client.stats.internal_errors == 1, "the bug hit")
        await async_wait_until(
            lambda: client.in_sync and client.digest == digest, "reconnected and converged"
        )
        assert client.stats.connects == 2
