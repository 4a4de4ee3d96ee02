"""Convergence with real processes: agents report what their dataplanes
applied, typha serves /convergence, and `typha wait-applied` returns only
once every connected agent, the slow one included, has applied a revision."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from commands.demo.cluster import global_policy
from commands.demo.etcd import EmbeddedEtcd
from tests.cluster import put_items, seed_sample
from tests.conftest import (
    Proc,
    http_json,
    http_text,
    metric,
    start_felix_agent,
    start_typha,
    wait_until,
)

pytestmark = pytest.mark.integration

# A GlobalNetworkPolicy over every pod: a change each agent must program.
POLICY_KEY, POLICY = global_policy("convergence-test", 5)


def wait_applied(revision: int, http_port: int, limit: float) -> list[str]:
    """The `typha wait-applied` command line for one replica's side port."""
    return [
        str(Path(sys.executable).parent / "typha"),
        "wait-applied",
        "--revision",
        str(revision),
        "--endpoints",
        f"127.0.0.1:{http_port}",
        "--timeout",
        str(limit),
    ]


def test_wait_applied_waits_for_the_slow_agent_and_convergence_names_it(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    # Nodes with pods, so that a new policy has something to program on each.
    asyncio.run(seed_sample(etcd.endpoint, 4, 2))
    _, port, http = start_typha(procs, etcd)
    typha = f"127.0.0.1:{port}"
    fast = [start_felix_agent(procs, typha, f"node-{i}")[1] for i in range(3)]
    _, slow = start_felix_agent(procs, typha, "node-3", "--dataplane-delay", "2")
    convergence = f"http://127.0.0.1:{http}/convergence"

    def report(revision: int) -> dict[str, object]:
        return http_json(f"{convergence}?revision={revision}")

    first = http_json(f"http://127.0.0.1:{http}/status")["revision"]
    wait_until(lambda: report(first)["applied"] == 4, "every agent applies the first state")

    revision = asyncio.run(put_items(etcd.endpoint, [(POLICY_KEY, orjson.dumps(POLICY))]))
    waiter = subprocess.Popen(
        wait_applied(revision, http, 120),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        seen_lagging: list[object] = []

        def fast_done_slow_listed() -> bool:
            r = report(revision)
            if r["applied"] == 3 and [x["node"] for x in r["lagging"]] == ["node-3"]:  # type: ignore[union-attr]
                seen_lagging.append(r)
                return True
            return False

        wait_until(fast_done_slow_listed, "the fast agents apply it while the slow one lags")
        out, err = waiter.communicate(timeout=120)
        # wait-applied returned: the slow agent must have applied it by now.
        assert waiter.returncode == 0, err.decode()
        assert http_json(f"http://127.0.0.1:{slow}/status")["applied_revision"] >= revision
        summary = orjson.loads(out)
        assert (summary["agents"], summary["applied"], summary["converged"]) == (4, 4, True)
        assert report(revision)["lagging"] == []
    finally:
        if waiter.poll() is None:
            waiter.kill()
    for port_ in fast:
        assert http_json(f"http://127.0.0.1:{port_}/status")["applied_revision"] >= revision
    metrics = http_text(f"http://127.0.0.1:{http}/metrics")
    assert metric(metrics, "typha_applied_reports_total") >= 8
    assert metric(metrics, "typha_applied_latency_seconds_count") >= 4


def test_a_disconnected_agent_is_reported_and_wait_applied_times_out_naming_laggards(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    asyncio.run(seed_sample(etcd.endpoint, 2, 2))
    _, port, http = start_typha(procs, etcd)
    typha = f"127.0.0.1:{port}"
    gone, _ = start_felix_agent(procs, typha, "node-0")
    start_felix_agent(procs, typha, "node-1", "--dataplane-delay", "10")
    convergence = f"http://127.0.0.1:{http}/convergence"
    wait_until(lambda: http_json(convergence)["applied"] == 2, "both agents apply the state")
    # A change with something to program: the slow dataplane sits on it.
    revision = asyncio.run(put_items(etcd.endpoint, [(POLICY_KEY, orjson.dumps(POLICY))]))
    gone.stop(signal.SIGKILL)
    wait_until(
        lambda: [x["node"] for x in http_json(convergence)["disconnected"]] == ["node-0"],
        "the killed agent is reported disconnected",
    )
    assert http_json(convergence)["agents"] == 1
    done = subprocess.run(
        wait_applied(revision, http, 0.5),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "behind: node-1 at " in done.stderr
    summary = orjson.loads(done.stdout)
    assert summary["converged"] is False
    assert [x["node"] for x in summary["disconnected"]] == ["node-0"]
