"""`typha status` against real replicas, agents and etcd: the view sums every
replica, names the slowest agent while it lags, and says (with exit 1) when a
replica stops answering.  The view's logic is also checked on its own."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

from commands.demo.etcd import EmbeddedEtcd
from commands.status import ReplicaAnswer, build_view, collect, render
from tests.cluster import put_items, seed_sample
from tests.conftest import Proc, http_json, start_felix_agent, start_typha, wait_until
from tests.typha.test_convergence import POLICY, POLICY_KEY


def status_cmd(endpoints: str, *extra: str) -> subprocess.CompletedProcess[str]:
    typha = str(Path(sys.executable).parent / "typha")
    return subprocess.run(
        [typha, "status", "--endpoints", endpoints, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_shows_every_replica_the_slowest_agent_and_a_replica_that_stops(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    asyncio.run(seed_sample(etcd.endpoint, 3, 2))
    a, a_port, a_http = start_typha(procs, etcd, "--server-id", "replica-a")
    _, b_port, b_http = start_typha(procs, etcd, "--server-id", "replica-b")
    start_felix_agent(procs, f"127.0.0.1:{a_port}", "node-0")
    start_felix_agent(procs, f"127.0.0.1:{b_port}", "node-1")
    start_felix_agent(procs, f"127.0.0.1:{b_port}", "node-2", "--dataplane-delay", "4")
    endpoints = f"127.0.0.1:{a_http},127.0.0.1:{b_http}"

    def view_json() -> dict[str, object]:
        done = status_cmd(endpoints, "-o", "json")
        out: dict[str, object] = orjson.loads(done.stdout)
        out["rc"] = done.returncode
        return out

    wait_until(
        lambda: (
            view_json()["convergence"]
            == {  # type: ignore[comparison-overlap]
                "revision": http_json(f"http://127.0.0.1:{a_http}/convergence")["revision"],
                "agents": 3,
                "applied": 3,
                "not_reporting": 0,
                "disconnected": 0,
            }
        ),
        "status counts the three agents on two replicas, all applied",
    )
    view = view_json()
    assert view["rc"] == 0
    assert view["problems"] == []
    assert view["ok"] is True
    rows = {r["server_id"]: r for r in view["replicas"]}  # type: ignore[attr-defined]
    assert set(rows) == {"replica-a", "replica-b"}
    assert (rows["replica-a"]["agents"], rows["replica-b"]["agents"]) == (1, 2)
    assert all(r["readiness"] == "serving" and r["in_sync"] for r in rows.values())
    assert rows["replica-a"]["digest"] == http_json(f"http://127.0.0.1:{a_http}/status")["digest"]

    # A change the slow agent sits on: the view names it, on its replica.
    revision = asyncio.run(put_items(etcd.endpoint, [(POLICY_KEY, orjson.dumps(POLICY))]))
    seen: list[object] = []

    def slow_one_named() -> bool:
        v = asyncio.run(collect(endpoints))
        if v.target == revision and [s["node"] for s in v.slowest] == ["node-2"]:
            seen.append(v)
            return True
        return False

    wait_until(slow_one_named, "status names node-2 as the slowest while it lags")
    lagging = seen[0]
    assert lagging.slowest[0]["replica"] == "replica-b"  # type: ignore[attr-defined]
    assert lagging.slowest[0]["behind"] > 0  # type: ignore[attr-defined]
    table = render(lagging)  # type: ignore[arg-type]
    assert "SLOWEST AGENTS" in table
    assert "node-2" in table

    # A replica killed: status says so, with exit 1, and still shows the other.
    a.stop(signal.SIGKILL)
    done = status_cmd(endpoints)
    assert done.returncode == 1
    assert f"127.0.0.1:{a_http} does not answer" in done.stdout
    assert "replica-b" in done.stdout
    assert "serving" in done.stdout


def _status(server_id: str, revision: int, digest: str, **kw: object) -> dict[str, object]:
    return {
        "server_id": server_id,
        "readiness": "serving",
        "in_sync": True,
        "revision": revision,
        "keys": 5,
        "digest": digest,
        "tasks_down": [],
        **kw,
    }


def _conv(revision: int, agents: int, applied: int, lagging: list[object]) -> dict[str, object]:
    return {"revision": revision, "agents": agents, "applied": applied, "lagging": lagging}


def test_replicas_with_different_states_at_one_revision_are_a_problem() -> None:
    same = build_view(
        [
            ReplicaAnswer("a:1", _status("a", 7, "ff"), _conv(7, 1, 1, [])),
            ReplicaAnswer("b:1", _status("b", 7, "ff"), _conv(7, 1, 1, [])),
        ]
    )
    assert same.problems == []
    split = build_view(
        [
            ReplicaAnswer("a:1", _status("a", 7, "ff"), _conv(7, 1, 1, [])),
            ReplicaAnswer("b:1", _status("b", 7, "00"), _conv(7, 1, 1, [])),
        ]
    )
    assert len(split.problems) == 1
    assert "different states" in split.problems[0]
    # Different revisions may differ: one replica is a moment behind.
    behind = build_view(
        [
            ReplicaAnswer("a:1", _status("a", 9, "ff"), _conv(9, 1, 1, [])),
            ReplicaAnswer("b:1", _status("b", 7, "00"), _conv(9, 1, 0, [])),
        ]
    )
    assert behind.problems == []
    assert [r["behind"] for r in behind.replicas] == [0, 2]


def test_not_serving_tasks_down_and_silence_are_each_listed() -> None:
    view = build_view(
        [
            ReplicaAnswer("a:1", _status("a", 7, "ff", readiness="stale", in_sync=False), None),
            ReplicaAnswer("b:1", _status("b", 7, "ff", tasks_down=["source_check"]), None),
            ReplicaAnswer("c:1", None, None),
        ]
    )
    assert view.problems == ["a is stale", "b: tasks down: source_check", "c:1 does not answer"]
    assert build_view([]).problems == ["no replica found"]


def test_slowest_agents_are_merged_across_replicas_lowest_first() -> None:
    view = build_view(
        [
            ReplicaAnswer(
                "a:1",
                _status("a", 20, "ff"),
                _conv(20, 3, 1, [{"node": "n1", "applied_revision": 12}]),
            ),
            ReplicaAnswer(
                "b:1",
                _status("b", 20, "ff"),
                _conv(20, 2, 0, [{"node": "n3", "applied_revision": 15}, {"node": "bad"}]),
            ),
        ]
    )
    assert [(s["node"], s["behind"], s["replica"]) for s in view.slowest] == [
        ("n1", 8, "a"),
        ("n3", 5, "b"),
    ]
    assert (view.agents, view.applied) == (5, 1)
    text = render(view)
    assert "1 of 5 agents applied it" in text
    assert "PROBLEMS  none" in text
