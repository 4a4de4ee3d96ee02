"""A snapshot's calculation runs off the event loop, in order with what
follows it, and reaches the dataplane as one batch."""

from __future__ import annotations

import asyncio
import threading

from commands.demo.cluster import seed_cluster
from felix_client import SyncClient
from felix_client.agent import OFFLOAD_CHANGES, Agent
from felix_client.calc import compute
from felix_client.readiness import AgentReadiness


async def test_a_snapshot_is_calculated_off_the_loop_and_applied_in_order() -> None:
    state = dict(seed_cluster(250, 20))  # 6,000 keys
    assert len(state) >= OFFLOAD_CHANGES
    client = SyncClient("127.0.0.1:9", node="node-3")  # never started
    agent = Agent(client, node="node-3")
    batches: list[int] = []
    original = agent.dataplane.apply

    def record(batch: object) -> None:
        batches.append(agent.applied_revision)
        original(batch)  # type: ignore[arg-type]

    agent.dataplane.apply = record  # type: ignore[method-assign]

    agent._on_changes(list(state.items()), 10)
    ticked = asyncio.Event()
    asyncio.get_running_loop().call_soon(ticked.set)
    await asyncio.sleep(0)
    # The loop ran a callback while the snapshot was still being calculated.
    assert ticked.is_set()
    assert agent.applied_revision == 0

    # A small delta arriving meanwhile waits its turn.
    key = next(k for k in state if "/workloadendpoints/" in k)
    agent._on_changes([(key, None)], 11)
    assert agent.applied_revision == 0
    await agent.wait_applied()
    assert agent.applied_revision == 11
    assert batches == [0, 10]  # one batch for the snapshot, then the delta's

    del state[key]
    expected = compute(state, "node-3")
    assert agent.dataplane.routes == expected.routes
    assert agent.dataplane.ipsets == expected.ipsets
    assert agent.dataplane.chains == expected.chains
    assert agent.apply_time.count == 2
    await agent.close()


async def test_small_changes_are_applied_before_the_listener_returns() -> None:
    state = dict(seed_cluster(2, 2))
    assert len(state) < OFFLOAD_CHANGES
    agent = Agent(SyncClient("127.0.0.1:9", node="node-0"), node="node-0")
    agent._on_changes(list(state.items()), 5)
    assert agent.applied_revision == 5
    assert agent.dataplane.routes == compute(state, "node-0").routes


async def test_a_snapshot_the_dataplane_refuses_counts_one_failure_and_unreadies() -> None:
    state = dict(seed_cluster(250, 20))
    agent = Agent(SyncClient("127.0.0.1:9", node="node-3"), node="node-3")

    def refuse(batch: object) -> None:
        raise OSError("the kernel said no")

    agent.dataplane.apply = refuse  # type: ignore[method-assign]
    assert agent.readiness() is AgentReadiness.STARTING
    agent._on_changes(list(state.items()), 10)
    await agent.wait_applied()
    assert agent.apply_failures == 1
    assert agent.applied_revision == 0
    assert agent.ready() is False
    assert agent.status()["readiness"] == "starting"  # never held a complete state


async def test_closing_while_a_snapshot_is_calculated_drops_what_waits() -> None:
    state = dict(seed_cluster(250, 20))
    agent = Agent(SyncClient("127.0.0.1:9", node="node-3"), node="node-3")
    agent._on_changes(list(state.items()), 10)
    key = next(k for k in state if "/workloadendpoints/" in k)
    agent._on_changes([(key, None)], 11)  # queued behind the snapshot
    await asyncio.sleep(0)
    await agent.close()  # the queue is emptied under the calculation in flight
    assert agent.applied_revision in (0, 10)
    await agent.wait_applied()  # nothing left running, nothing raised


async def test_the_agents_of_one_process_calculate_in_one_thread() -> None:
    # Pure-Python calculation gains nothing from a second thread, and each
    # one more takes turns from the event loop that answers the pings.
    threads: set[str] = set()
    agents = []
    for node in ("node-1", "node-2", "node-3"):
        agent = Agent(SyncClient("127.0.0.1:9", node=node), node=node)
        original = agent.calc.apply

        def apply(changes: object, original: object = original) -> object:
            threads.add(threading.current_thread().name)
            return original(changes)  # type: ignore[operator]

        agent.calc.apply = apply  # type: ignore[method-assign]
        agents.append(agent)
    state = list(dict(seed_cluster(250, 20)).items())
    for agent in agents:
        agent._on_changes(state, 10)
    for agent in agents:
        await agent.wait_applied()
        assert agent.applied_revision == 10
        await agent.close()
    assert len(threads) == 1
    assert next(iter(threads)).startswith("calc")


async def test_short_lists_queued_behind_a_snapshot_are_calculated_on_the_loop() -> None:
    # Through the calculation thread each would cost a round trip worth more
    # than its work: in a busy process the queues then only grew.
    state = dict(seed_cluster(250, 20))
    agent = Agent(SyncClient("127.0.0.1:9", node="node-3"), node="node-3")
    threads: list[tuple[int, str]] = []
    original = agent.calc.apply

    def apply(changes: list[tuple[str, object]]) -> object:
        threads.append((len(changes), threading.current_thread().name))
        return original(changes)

    agent.calc.apply = apply  # type: ignore[assignment, method-assign]
    agent._on_changes(list(state.items()), 10)
    key = next(k for k in state if "/workloadendpoints/" in k)
    agent._on_changes([(key, None)], 11)
    await agent.wait_applied()
    assert agent.applied_revision == 11
    assert threads[0][1].startswith("calc")
    assert threads[1] == (1, threading.main_thread().name)
    await agent.close()
