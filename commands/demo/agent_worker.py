"""A worker process of `typha demo`: runs a share of the demo's agents (each
a SyncClient feeding the route/ACL calculation, as `felix-agent` does) and
reports on them to the demo, so that a large fleet uses every core and the
demo's own loop (typha, churn, the live view) stays responsive.

    python -m commands.demo.agent_worker PARENT_PID TYPHA_ADDRESS NODE[,NODE...]

Writes one JSON object per line to stdout every REPORT_INTERVAL seconds:
`{"agents": [[connected, in_sync, revision, digest], ...],
  "deliveries": [[from_revision, to_revision, monotonic_time], ...],
  "first": {"node", "routes", "acl_rules", "ip_sets"}}`
(CLOCK_MONOTONIC is system-wide, so the demo can compare the times with its
own).  Ends when its stdin closes, and dies with the demo.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson
import uvloop

from commands.demo.orphans import die_with_parent
from felix_client import SyncClient
from felix_client.agent import Agent
from syncclient.replica import Replica

REPORT_INTERVAL = 0.25


async def run(typha: str, nodes: list[str]) -> None:
    """Run one agent per entry of `nodes` until stdin closes."""
    loop = asyncio.get_running_loop()
    deliveries: list[tuple[int, int, float]] = []
    clients: list[SyncClient] = []
    agents: list[Agent] = []
    for node in nodes:
        client = SyncClient(typha, node=node, replica=Replica(keep_values=False))
        last = [0]

        def on_update(_: object, revision: int, last: list[int] = last) -> None:
            deliveries.append((last[0], revision, time.monotonic()))
            last[0] = revision

        client.add_listener(on_update)
        agents.append(Agent(client, node=node))
        clients.append(client)
        await client.start()
    stdin_closed = asyncio.Event()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        await reader.read()
        stdin_closed.set()

    watcher = asyncio.create_task(watch_stdin())
    out = sys.stdout.buffer
    try:
        while not stdin_closed.is_set():
            report: dict[str, Any] = {
                "agents": [[c.connected, c.in_sync, c.revision, c.digest] for c in clients],
                "deliveries": deliveries,
            }
            first = agents[0] if agents else None
            if first is not None:
                report["first"] = {
                    "node": first.node,
                    "routes": len(first.dataplane.routes),
                    "acl_rules": first.dataplane.acl_rules,
                    "ip_sets": len(first.dataplane.ipsets),
                }
            out.write(orjson.dumps(report) + b"\n")
            out.flush()
            deliveries = []
            try:
                async with asyncio.timeout(REPORT_INTERVAL):
                    await stdin_closed.wait()
            except TimeoutError:
                pass
    finally:
        watcher.cancel()
        for client, agent in zip(clients, agents, strict=True):
            await client.close()
            await agent.close()


def main(argv: list[str]) -> int:
    """Entry point; see the module docstring for the arguments."""
    die_with_parent(int(argv[0]))
    nodes = [n for n in argv[2].split(",") if n]
    uvloop.run(run(argv[1], nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
