"""The HTTP side port: the status routes every daemon serves (/livez,
/readyz, /status, /metrics: runtime.status_http) and the server's own,
/convergence and /convergence/nodes."""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from aiohttp import web

from runtime.status_http import StatusSource, json_response, status_app


class Observable(StatusSource, Protocol):
    """What the side port reads from the server process."""

    def convergence(self, revision: int | None, all_disconnected: bool = False) -> dict[str, Any]:
        """The JSON object served at /convergence (None: the latest change's revision)."""
        ...

    def convergence_nodes(self, names: list[str]) -> dict[str, Any]:
        """The JSON object served at POST /convergence/nodes."""
        ...


MAX_NODES_ASKED = 10_000  # names in one POST /convergence/nodes


def build_http_app(app: Observable) -> web.Application:
    """The aiohttp application for the side port; the caller runs it."""

    async def convergence(request: web.Request) -> web.Response:
        raw = request.query.get("revision")
        revision: int | None = None
        if raw is not None:
            if not (raw.isascii() and raw.isdigit()):
                return json_response(
                    {"error": f"revision must be a non-negative integer, got {raw[:40]!r}"},
                    status=400,
                )
            revision = int(raw)
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

    web_app = status_app(app)
    web_app.router.add_get("/convergence", convergence)
    web_app.router.add_post("/convergence/nodes", convergence_nodes)
    return web_app
