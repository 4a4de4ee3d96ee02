"""`GET /explain` on the agent's status port, bounded.

The port is reachable from the node's network (probes and scrapes need
it), so an explanation must not be a way to load the agent: one runs at a
time (another gets 429), a kernel explanation at most once per
KERNEL_INTERVAL seconds (it reads the whole table on the dataplane's
thread, which programs the kernel), and that read waits in a worker
thread, not on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from dataplane.memory import MemoryDataplane
from dataplane.trace import TraceError
from felix_client.calc.model import Endpoint
from felix_client.explain.answer import KernelTable, explain, read_kernel
from felix_client.explain.query import Query
from runtime.status_http import json_response

KERNEL_INTERVAL = 1.0

Handler = Callable[[web.Request], Awaitable[web.Response]]


class ExplainGate:
    """Whether an explanation may run now.  Use from the event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.busy = False
        self._kernel_at = -KERNEL_INTERVAL

    def refusal(self, q: Query) -> str | None:
        """Why `q` may not run now (None: it may; the caller then runs it
        and calls `done`)."""
        if self.busy:
            return "an explanation is running on this node; ask again"
        if q.kernel:
            now = self._clock()
            if now - self._kernel_at < KERNEL_INTERVAL:
                return f"at most one kernel explanation per {KERNEL_INTERVAL:g} s; ask again"
            self._kernel_at = now
        self.busy = True
        return None

    def done(self) -> None:
        """The explanation `refusal` let run has finished."""
        self.busy = False


def explain_handler(
    node: str, endpoints: Callable[[], Mapping[str, Endpoint]], dp: MemoryDataplane
) -> Handler:
    """The route: query parameters in (`Query.of`), the explanation's JSON
    with a `text` field out; 400 with `error` for a query it cannot
    answer, 429 while another runs or too soon after a kernel one."""
    gate = ExplainGate()

    async def handle(request: web.Request) -> web.Response:
        try:
            q = Query.of(request.query)
        except TraceError as exc:
            return json_response({"error": str(exc)}, status=400)
        why = gate.refusal(q)
        if why is not None:
            return json_response({"error": why}, status=429)
        try:
            kernel: KernelTable | None = None
            if q.kernel:
                loop = asyncio.get_running_loop()
                kernel = await loop.run_in_executor(None, read_kernel, dp)
            ex = explain(q, node, endpoints(), dp, kernel)
        except TraceError as exc:
            return json_response({"error": str(exc)}, status=400)
        finally:
            gate.done()
        return json_response({**ex.to_dict(), "text": ex.text()})

    return handle
