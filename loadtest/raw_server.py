"""The raw ceiling: a bare uvloop server writing the same batch bytes to N sockets.

    python -m loadtest.raw_server --listen H:P

Thin agents connect and send a hello; each gets a SERVER_HELLO and an empty
SNAPSHOT_END (so it counts as in sync).  Batches arrive on stdin as
length-prefixed frames (4-byte big-endian length, then the frame) and each is
written, unchanged, once to every connection: the least work any fan-out
server can do for the same deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys

import uvloop

from runtime.hostport import parse_hostport
from syncproto import Codec, ServerHello, SnapshotEnd

LEN = struct.Struct(">I")


class Conn(asyncio.Protocol):
    """One connection to the raw ceiling server: greeted once, then written to."""

    def __init__(self, conns: set[Conn], hello: bytes) -> None:
        self.conns = conns
        self.hello = hello
        self.transport: asyncio.Transport | None = None
        self.greeted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport."""
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """The first bytes are the hello: answer it and start sending."""
        if not self.greeted and self.transport is not None:
            self.greeted = True
            self.transport.write(self.hello)
            self.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop writing to this connection."""
        self.conns.discard(self)


async def main_async(listen: str) -> None:
    """Serve on `listen`: frames read from stdin are written to every connection."""
    where = parse_hostport(listen, port_zero=True)
    host, port = where.host, where.port
    codec = Codec(max_frame=1 << 24)
    hello = codec.encode(ServerHello(server="raw", max_frame=1 << 24)) + codec.encode(
        SnapshotEnd(1, 0, "0" * 32)
    )
    conns: set[Conn] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(conns, hello), host, port, backlog=4096)
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("READY", flush=True)
    while True:
        try:
            (n,) = LEN.unpack(await reader.readexactly(4))
            frame = await reader.readexactly(n)
        except asyncio.IncompleteReadError:
            break
        for c in conns:
            if c.transport is not None:
                c.transport.write(frame)
    server.close()


def main() -> None:
    """Entry point of `python -m loadtest.raw_server`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--listen", required=True)
    uvloop.run(main_async(p.parse_args().listen))


if __name__ == "__main__":
    main()
