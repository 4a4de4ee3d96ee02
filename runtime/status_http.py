"""The HTTP status app both daemons serve on their side port: `/livez`,
`/readyz` (503 while not ready), `/status` (JSON) and `/metrics`
(Prometheus text); each daemon adds its own routes to the app it gets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class StatusSource(Protocol):
    """What the status routes read from the process."""

    registry: CollectorRegistry

    def ready(self) -> bool:
        """True while the process does its job (the server: in sync with the
        datastore; the agent: its dataplane has applied a full state)."""
        ...

    def status(self) -> dict[str, Any]:
        """The JSON object served at /status."""
        ...


def json_response(obj: object, status: int = 200) -> web.Response:
    """`obj` as a JSON response (orjson)."""
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def status_app(
    source: StatusSource, before_metrics: Callable[[], Awaitable[None]] | None = None
) -> web.Application:
    """An aiohttp application with the four status routes; the caller may
    add routes, then runs it.  `before_metrics` is awaited before each
    /metrics answer (to refresh, off the event loop, what costs too much
    to read on it)."""

    async def livez(_: web.Request) -> web.Response:
        return json_response({"live": True})

    async def readyz(_: web.Request) -> web.Response:
        ready = source.ready()
        return json_response({"ready": ready}, status=200 if ready else 503)

    async def status(_: web.Request) -> web.Response:
        return json_response(source.status())

    async def metrics(_: web.Request) -> web.Response:
        if before_metrics is not None:
            await before_metrics()
        return web.Response(
            body=generate_latest(source.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app
