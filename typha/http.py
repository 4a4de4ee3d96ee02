"""The HTTP side port: /livez, /readyz, /status, /convergence (and
/convergence/nodes), /metrics."""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Observable(Protocol):
    """What the side port reads from the server process."""

    registry: CollectorRegistry

    def ready(self) -> bool:
        """True while the replica serves current state."""
        ...

    def status(self) -> dict[str, Any]:
        """The JSON object served at /status."""
        ...

    def convergence(self, revision: int | None, all_disconnected: bool = False) -> dict[str, Any]:
        """The JSON object served at /convergence (None: the latest change's revision)."""
        ...

    def convergence_nodes(self, names: list[str]) -> dict[str, Any]:
        """The JSON object served at POST /convergence/nodes."""
        ...


MAX_NODES_ASKED = 10_000  # names in one POST /convergence/nodes


def json_response(obj: object, status: int = 200) -> web.Response:
    """`obj` as a JSON response (orjson)."""
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def build_http_app(app: Observable) -> web.Application:
    """The aiohttp application for the side port; the caller runs it."""

    async def livez(_: web.Request) -> web.Response:
        return json_response({"live": True})

    async def readyz(_: web.Request) -> web.Response:
        ready = app.ready()
        return json_response({"ready": ready}, status=200 if ready else 503)

    async def status(_: web.Request) -> web.Response:
        return json_response(app.status())

    async def convergence(request: web.Request) -> web.Response:
        raw = request.query.get("revision")
        revision: int | None = None
        if raw is not None:
            try:
                revision = int(raw)
            except ValueError:
                revision = -1
            if revision < 0:
                return json_response(
                    {"error": f"revision must be a non-negative integer, got {raw[:40]!r}"},
                    status=400,
                )
        disconnected = request.query.get("disconnected", "")
        if disconnected not in ("", "all"):
            return json_response(
                {"error": f"disconnected must be 'all', got {disconnected[:40]!r}"}, status=400
            )
        return json_response(app.convergence(revision, all_disconnected=disconnected == "all"))

    async def convergence_nodes(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return json_response({"error": "body must be JSON"}, status=400)
        names = body.get("nodes") if isinstance(body, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return json_response({"error": 'body must be {"nodes": [names]}'}, status=400)
        if len(names) > MAX_NODES_ASKED:
            return json_response(
                {"error": f"at most {MAX_NODES_ASKED} nodes per request, got {len(names)}"},
                status=400,
            )
        return json_response(app.convergence_nodes(names))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(app.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    web_app = web.Application()
    web_app.router.add_get("/livez", livez)
    web_app.router.add_get("/readyz", readyz)
    web_app.router.add_get("/status", status)
    web_app.router.add_get("/convergence", convergence)
    web_app.router.add_post("/convergence/nodes", convergence_nodes)
    web_app.router.add_get("/metrics", metrics)
    return web_app
