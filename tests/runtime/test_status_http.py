"""The status routes both daemons serve, over a real socket."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from runtime.status_http import status_app


class Source:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        Counter("probe_things", "things", registry=self.registry).inc(3)
        self.is_ready = False

    def ready(self) -> bool:
        return self.is_ready

    def status(self) -> dict[str, Any]:
        return {"node": "n1", "in_sync": self.is_ready}


async def _exchange(source: Source) -> list[tuple[str, int, str]]:
    app = status_app(source)

    async def extra(_: web.Request) -> web.Response:
        return web.Response(text="own route")

    app.router.add_get("/extra", extra)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    out = []
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/livez", "/readyz", "/status", "/metrics", "/extra"):
                async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
                    out.append((path, resp.status, await resp.text()))
            source.is_ready = True
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                out.append(("/readyz", resp.status, await resp.text()))
    finally:
        await runner.cleanup()
    return out


def test_the_four_routes_and_a_route_of_the_callers_own() -> None:
    got = asyncio.run(_exchange(Source()))
    assert got[0] == ("/livez", 200, '{"live":true}')
    assert got[1] == ("/readyz", 503, '{"ready":false}')
    assert got[2] == ("/status", 200, '{"node":"n1","in_sync":false}')
    assert got[3][1] == 200
    assert "probe_things_total 3.0" in got[3][2]
    assert got[4] == ("/extra", 200, "own route")
    assert got[5] == ("/readyz", 200, '{"ready":true}')
