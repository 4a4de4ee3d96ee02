"""The node agent: a SyncClient plus the agent's /status port.

Route and ACL calculation is not implemented yet: `routes` and `acl_rules`
are reported as 0 until it is (the fields are part of the fixed contract).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import orjson
from aiohttp import web

from felix_client.client import SyncClient


class Agent:
    def __init__(self, client: SyncClient, *, node: str, dataplane: str = "memory") -> None:
        self.client = client
        self.node = node
        self.dataplane = dataplane
        self.updates_applied = 0
        client.add_listener(self._on_changes)

    def _on_changes(self, changes: list[tuple[str, Any]], revision: int) -> None:
        self.updates_applied += len(changes)

    def status(self) -> dict[str, Any]:
        c = self.client
        return {
            "node": self.node,
            "connected": c.connected,
            "in_sync": c.in_sync,
            "revision": c.revision,
            "keys": len(c.state),
            "digest": c.digest,
            "routes": 0,
            "acl_rules": 0,
            "server": c.server,
            "dataplane": self.dataplane,
            "updates_applied": self.updates_applied,
            "digest_mismatches": c.stats.digest_mismatches,
            "snapshots": c.stats.snapshots,
            "deltas": c.stats.deltas,
        }

    def http_app(self) -> web.Application:
        async def status(_: web.Request) -> web.Response:
            return web.Response(body=orjson.dumps(self.status()), content_type="application/json")

        async def livez(_: web.Request) -> web.Response:
            return web.Response(body=b'{"live":true}', content_type="application/json")

        app = web.Application()
        app.router.add_get("/status", status)
        app.router.add_get("/livez", livez)
        return app


async def run_agent(
    typha: str,
    node: str,
    http_host: str,
    http_port: int,
    dataplane: str,
    stop: asyncio.Event,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> None:
    async with SyncClient(
        typha, node=node, ssl_context=ssl_context, server_name=server_name
    ) as client:
        agent = Agent(client, node=node, dataplane=dataplane)
        runner = web.AppRunner(agent.http_app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, http_host, http_port).start()
            await stop.wait()
        finally:
            await runner.cleanup()
