"""Convergence with real processes: agents report what their dataplanes
applied, typha serves /convergence, and `typha wait-applied` returns only
once every connected agent, the slow one included, has applied a revision."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def wait_applied(revision: int, http_port: int | list[int], limit: float) -> list[str]:
    """The `typha wait-applied` command line for replicas' side ports."""
    ports = http_port if isinstance(http_port, list) else [http_port]
    return [
        str(Path(sys.executable).parent / "typha"),
        "wait-applied",
        "--revision",
        str(revision),
        "--endpoints",
        ",".join(f"127.0.0.1:{p}" for p in ports),
        "--timeout",
        str(limit),
    ]


def post_json(url: str, body: object) -> tuple[int, Any]:
    """POST a JSON body; (status, decoded answer), error statuses included."""
    req = urllib.request.Request(url, data=orjson.dumps(body), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


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
    # Every agent has the latest change, whatever etcd revisions came after it.
    assert metric(metrics, "typha_agents_applied_head") == 4


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

    # The side port refuses malformed questions, with the reason.
    status, answer = post_json(f"http://127.0.0.1:{http}/convergence/nodes", ["node-0"])
    assert status == 400
    assert "nodes" in answer["error"]
    with pytest.raises(urllib.error.HTTPError) as bad:
        http_json(f"{convergence}?disconnected=some")
    assert bad.value.code == 400
    for revision in ("abc", "-1", "+5", "1e3"):
        with pytest.raises(urllib.error.HTTPError) as bad:
            http_json(f"{convergence}?revision={revision}")
        assert bad.value.code == 400, revision


def test_an_agents_report_follows_it_to_another_replica(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    asyncio.run(seed_sample(etcd.endpoint, 4, 2))
    # A budget of 8 reports a second: the nth agent is asked for one per n/8 s.
    fast_rebalance = (
        "--rebalance-interval",
        "0.5",
        "--applied-reports-per-second",
        "8",
        "--shutdown-timeout",
        "1",
    )
    _, a_port, a_http = start_typha(procs, etcd, *fast_rebalance)
    # b is not up yet (its port held, connections refused): every agent lands on a.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    b_port = holder.getsockname()[1]
    both = f"127.0.0.1:{a_port},127.0.0.1:{b_port}"
    agents = [start_felix_agent(procs, both, f"node-{i}")[1] for i in range(4)]
    on_a = f"http://127.0.0.1:{a_http}/convergence"
    wait_until(lambda: http_json(on_a)["agents"] == 4, "all four connected to a")

    def intervals() -> set[float]:
        return {
            http_json(f"http://127.0.0.1:{p}/status")["applied_report_interval"] for p in agents
        }

    # The third agent moved a's interval to 3/8 s (half again the 0.25 s
    # floor), and every agent, in its hello or by APPLIED_INTERVAL, was told.
    wait_until(lambda: intervals() == {0.375}, "a's interval in force on every agent")
    a_metrics = http_text(f"http://127.0.0.1:{a_http}/metrics")
    assert metric(a_metrics, "typha_applied_report_interval_seconds") == 0.375

    revision = asyncio.run(put_items(etcd.endpoint, [(POLICY_KEY, orjson.dumps(POLICY))]))
    wait_until(lambda: http_json(f"{on_a}?revision={revision}")["applied"] == 4, "applied on a")

    # b starts; a sheds agents to it.  Nothing new is written: what b learns
    # of revision R, the moved agents must have told it themselves.
    holder.close()
    _, _, b_http = start_typha(procs, etcd, *fast_rebalance, agent_port=b_port)
    on_b = f"http://127.0.0.1:{b_http}/convergence"
    wait_until(lambda: http_json(on_b)["agents"] >= 1, "a sheds agents to b")

    def moved_and_reported() -> bool:
        # Every agent a lists as gone is connected to b and has told b that
        # it has revision R (a may shed them one by one: wait for the last).
        left = http_json(f"{on_a}?revision={revision}&disconnected=all")["disconnected"]
        names = [x["node"] for x in left]
        status, where = post_json(f"http://127.0.0.1:{b_http}/convergence/nodes", {"nodes": names})
        return (
            bool(names)
            and status == 200
            and all(
                where["nodes"][n]["state"] == "connected"
                and where["nodes"][n]["applied_revision"] >= revision
                for n in names
            )
        )

    wait_until(moved_and_reported, "the agents that left a report revision R to b")
    assert http_json(f"{on_b}?revision={revision}")["applied"] == http_json(on_b)["agents"]

    done = subprocess.run(
        wait_applied(revision, [a_http, b_http], 30), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    assert (summary["agents"], summary["applied"]) == (4, 4)
    # Moved, connected elsewhere and up to date: not reported as disconnected.
    assert (summary["disconnected"], summary["disconnected_count"]) == ([], 0)
