"""Which pods reach which: TCP connects between pod namespaces, in process.

A socket belongs to the network namespace of the thread that created it, so
each pod gets a thread that has entered its namespace; it creates the pod's
listener and the pod's client sockets, and the event loop does the rest.  No
process is spawned per probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence

from dataplane.linux.kernel_thread import KernelThread


class PodSockets:
    """Sockets made inside one pod's network namespace (`netns`, a path)."""

    def __init__(self, name: str, netns: str) -> None:
        self.name = name
        self._thread = KernelThread(netns, name=f"pod-{name}")

    def listener(self, port: int) -> socket.socket:
        """A listening TCP socket on `port` inside the pod."""

        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(256)
            s.setblocking(False)
            return s

        return self._thread.call(make)

    def clients(self, n: int) -> list[socket.socket]:
        """`n` non-blocking TCP sockets inside the pod."""

        def make() -> list[socket.socket]:
            out = []
            for _ in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                out.append(s)
            return out

        return self._thread.call(make)

    def close(self) -> None:
        """Stop the pod's thread."""
        self._thread.close()


async def serve(listener: socket.socket) -> asyncio.Server:
    """Accept connections on `listener` and close each at once."""

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    return await asyncio.start_server(handle, sock=listener)


async def _connect(sock: socket.socket, ip: str, port: int, within: float) -> bool:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            await loop.sock_connect(sock, (ip, port))
        return True
    except (TimeoutError, OSError):
        return False
    finally:
        sock.close()


async def probe_all(
    pods: Sequence[tuple[PodSockets, str]], port: int, within: float
) -> dict[tuple[int, int], bool]:
    """One TCP connect from every pod to every other pod's `port`, all at
    once; `pods` are (sockets, ip).  Returns {(src index, dst index): connected}."""
    pairs = [(i, j) for i in range(len(pods)) for j in range(len(pods)) if i != j]
    socks = {i: pods[i][0].clients(len(pods) - 1) for i in range(len(pods))}
    tasks = []
    for i, j in pairs:
        tasks.append(_connect(socks[i].pop(), pods[j][1], port, within))
    results = await asyncio.gather(*tasks)
    for rest in socks.values():
        for s in rest:
            with contextlib.suppress(OSError):
                s.close()
    return dict(zip(pairs, results, strict=True))
