"""Load-adaptive fan-out: after a long pass the next one waits, so what
arrives meanwhile shares it; an idle server passes at once."""

from __future__ import annotations

import asyncio

from snapshot import SnapshotCache
from typha.fanout.server import AgentServer


async def test_a_pass_after_a_long_one_is_held_back_and_takes_everything_since() -> None:
    cache = SnapshotCache()
    server = AgentServer(cache, server_id="t", ready=lambda: True, pacing=1.0)
    server.notify()
    await asyncio.sleep(0)
    assert server.stats.fanouts == 1  # idle: at once
    assert server.stats.paced_passes == 0

    loop = asyncio.get_running_loop()
    server._next_pass_at = loop.time() + 0.05  # as if the last pass took 25 ms
    for _ in range(5):  # five batches arrive while the server is "busy"
        server.notify()
    await asyncio.sleep(0)
    assert server.stats.fanouts == 1  # held back
    assert server.stats.paced_passes == 1  # scheduled once, for all five
    for _ in range(100):
        if server.stats.fanouts == 2:
            break
        await asyncio.sleep(0.01)
    assert server.stats.fanouts == 2


async def test_pacing_zero_never_holds_a_pass_back() -> None:
    server = AgentServer(SnapshotCache(), server_id="t", ready=lambda: True, pacing=0.0)
    for expected in (1, 2, 3):
        server.notify()
        await asyncio.sleep(0)
        assert server.stats.fanouts == expected
    assert server.stats.paced_passes == 0
