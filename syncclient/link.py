"""One connection to a replica, in asyncio: moves bytes between the socket
and a sans-I/O `ClientSession` until either side ends it, runs the
session's deadlines, and, when the session wants to leave a stale replica,
a probe for another one in sync."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from syncclient.client_stats import ClientStats
from syncclient.dialer import Target
from syncclient.session import ClientSession

log = logging.getLogger("syncclient.client")

PROBE_POLL = 0.1  # seconds between looks at a running probe for a replica in sync


class Link:
    """`run()` it once; it returns when the server closes or says GOODBYE
    and raises what ended the session otherwise (see `syncclient.endings`).
    `close()` it afterwards, whatever happened."""

    def __init__(
        self,
        session: ClientSession,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        server: str,
        stats: ClientStats,
        tick: float,
        on_received: Callable[[ClientSession], None],
        find_in_sync: Callable[[], Coroutine[Any, Any, Target | None]],
        on_probed: Callable[[ClientSession, Target | None], None],
    ) -> None:
        self.session = session
        self.server = server
        self._reader = reader
        self._writer = writer
        self._stats = stats
        self._tick = tick
        self._on_received = on_received
        self._find_in_sync = find_in_sync
        self._on_probed = on_probed
        self._probe: asyncio.Task[Target | None] | None = None

    def send_applied(self, revision: int) -> bool:
        """Send an APPLIED report now if the connection is open and the
        server takes them; True if sent."""
        session, writer = self.session, self._writer
        if writer.is_closing() or session.closed or not session.core.send_applied(revision):
            return False
        writer.write(session.data_to_send())
        return True

    async def run(self) -> None:
        """Exchange bytes until the session ends."""
        session, writer = self.session, self._writer
        loop = asyncio.get_running_loop()
        writer.write(session.data_to_send())
        while not session.closed:
            deadline = session.next_deadline()
            wait = self._tick if deadline is None else max(deadline - loop.time(), 0.0)
            if self._probe is not None:
                wait = min(wait, PROBE_POLL)
            try:
                # Not wait_for: on 3.11 it can swallow a racing cancel.
                async with asyncio.timeout(wait):
                    data = await self._reader.read(1 << 18)
            except TimeoutError:
                data = None
            if data == b"":
                log.info("%s: server %s closed the connection", session.node, self.server)
                return
            try:
                self._step(data, loop.time())
            finally:
                out = session.data_to_send()
                if out and not writer.is_closing():
                    writer.write(out)
            await writer.drain()
        if session.goodbye is not None:
            g = session.goodbye
            log.info(
                "%s: server %s said goodbye: %s %s", session.node, self.server, g.reason, g.detail
            )

    def _step(self, data: bytes | None, now: float) -> None:
        session = self.session
        if data:
            self._stats.bytes_received += len(data)
            session.receive_data(data, now)
            if (rtt := session.core.take_rtt()) is not None:
                self._stats.ping_rtt.observe(rtt)
            self._on_received(session)
        deadline = session.next_deadline()
        if deadline is not None and now >= deadline:
            session.handle_timer(now)
        if session.wants_move and self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._find_in_sync())
        if self._probe is not None and self._probe.done():
            found, self._probe = self._probe.result(), None
            self._on_probed(session, found)

    async def close(self) -> None:
        """Send what is pending, close the socket, stop any probe."""
        if self._probe is not None:
            self._probe.cancel()
        writer = self._writer
        out = self.session.data_to_send()
        if out and not writer.is_closing():
            writer.write(out)
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
