"""`typha demo` as a real process: it converges, and Ctrl-C leaves nothing running."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from collections.abc import Callable

import pytest

from commands.demo.etcd import EmbeddedEtcd
from tests.cluster import put_items
from tests.conftest import Proc, wait_until
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration


def _etcd_port(output: str) -> int:
    m = re.search(r"etcd at 127\.0\.0\.1:(\d+)", output)
    assert m, output
    return int(m.group(1))


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_with_duration_ends_ok(procs: Callable[..., Proc]) -> None:
    demo = procs(
        "typha", "demo", "--duration", "3", "--agents", "4", "--nodes", "5", "--rate", "30"
    )
    assert demo.popen.wait(120) == 0, demo.output()
    out = demo.output()
    assert "4/4 agents match etcd" in out
    assert out.strip().splitlines()[-2:] == ["OK", "embedded etcd stopped"]
    assert not _port_open(_etcd_port(out))


def test_demo_stops_cleanly_on_ctrl_c(procs: Callable[..., Proc]) -> None:
    demo = procs("typha", "demo", "--agents", "3", "--nodes", "5", "--rate", "20")
    wait_until(lambda: "3/3" in demo.output(), "demo live view with all agents connected")
    port = _etcd_port(demo.output())
    assert _port_open(port)
    assert demo.stop(signal.SIGINT, timeout=60) == 0, demo.output()
    assert "embedded etcd stopped" in demo.output()
    assert not _port_open(port)


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out |= {int(p) for p in f.read().split()}
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_sigkill_of_the_demo_leaves_neither_etcd_nor_agents_running(
    procs: Callable[..., Proc],
) -> None:
    demo = procs(
        "typha", "demo", "--agents", "4", "--agent-processes", "2", "--nodes", "5", "--rate", "20"
    )
    wait_until(lambda: "4/4" in demo.output(), "demo live view with all agents connected")
    port = _etcd_port(demo.output())
    children = _children(demo.popen.pid)
    assert len(children) == 3  # etcd and two agent workers
    demo.popen.kill()
    demo.popen.wait()
    wait_until(lambda: not any(_alive(p) for p in children), "etcd and the workers die with it")
    # A thread group's leader shows as a zombie while its other threads are
    # still exiting, and the listening socket goes with the last of them:
    # wait for it (an etcd that survived keeps it open, and this fails).
    wait_until(lambda: not _port_open(port), "etcd's client port closes")


def test_sigterm_before_the_live_phase_still_cleans_up(procs: Callable[..., Proc]) -> None:
    # A cluster large enough that seeding takes a while: the signal lands
    # before the agents start, where the demo used to ignore it.
    demo = procs("typha", "demo", "--agents", "2", "--nodes", "400", "--pods-per-node", "20")
    wait_until(lambda: "starting embedded etcd" in demo.output(), "demo starting")
    wait_until(lambda: len(_children(demo.popen.pid)) >= 1, "etcd spawned")
    (etcd_pid,) = _children(demo.popen.pid)
    assert demo.stop(signal.SIGTERM, timeout=60) == 130, demo.output()
    out = demo.output()
    assert "stopped by a signal" in out
    assert "embedded etcd stopped" in out
    assert not _alive(etcd_pid)


def test_an_existing_etcd_with_data_is_refused_and_an_empty_one_cleaned(
    procs: Callable[..., Proc], etcd: EmbeddedEtcd
) -> None:
    asyncio.run(put_items(etcd.endpoint, [("/calico/resources/v3/x", b'{"keep": true}')]))
    refused = procs("typha", "demo", "--etcd-endpoints", etcd.endpoint, "--duration", "2")
    assert refused.popen.wait(60) == 2
    err = refused.output()
    assert "already holds 1 keys under /calico/" in err
    assert "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    assert asyncio.run(read_etcd_state([etcd.endpoint])).keys == 1  # untouched

    asyncio.run(put_items(etcd.endpoint, [("/calico/resources/v3/x", None)]))
    demo = procs(
        "typha",
        "demo",
        "--etcd-endpoints",
        f"http://{etcd.endpoint}",
        "--duration",
        "2",
        "--agents",
        "2",
        "--nodes",
        "3",
    )
    assert demo.popen.wait(120) == 0, demo.output()
    assert "deleted the demo's" in demo.output()
    assert asyncio.run(read_etcd_state([etcd.endpoint])).keys == 0


def test_the_demo_at_1000_nodes_20_pods_and_100_agents_gets_every_agent_in_sync(
    procs: Callable[..., Proc],
) -> None:
    demo = procs(
        "typha",
        "demo",
        "--nodes",
        "1000",
        "--pods-per-node",
        "20",
        "--agents",
        "100",
        "--duration",
        "10",
    )
    # Each agent computes its node's tables from 24,000 keys (~2 CPU-seconds
    # here), so on a 2-core machine the fleet takes a couple of minutes.
    assert demo.popen.wait(900) == 0, demo.output()[-3000:]
    out = demo.output()
    assert "100/100 agents match etcd" in out
    assert "agents in 2 worker processes" in out or "worker processes" in out
