"""Is another replica in sync with the datastore?  Asked before leaving a
stale one.

If every replica has lost the datastore (etcd itself is down or frozen),
moving helps nobody: each agent would drop its connection and resync with a
replica that knows no more, all of them at the same moment.  So an agent
leaves a stale replica only for one that says it is in sync.  The probe
connects to each other address, says hello as a replica (it is no agent
for convergence, and asks no APPLIED) at the revision the agent holds, so
an in-sync replica answers with a resume, and reads until that replica's
DATASTORE_STATUS.  A replica that does not answer in time counts as not in
sync.  The probe is a thin asyncio adapter over the sans-I/O ClientConnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from syncproto import (
    CAP_DATASTORE_STATUS,
    CAP_REPLICA,
    CAP_RESUME,
    ClientConnection,
    DatastoreStatus,
    DatastoreStatusMsg,
    Limits,
)
from syncproto.errors import ProtocolError

PROBE_CAPS = frozenset({CAP_RESUME, CAP_DATASTORE_STATUS, CAP_REPLICA})


@dataclass(frozen=True, slots=True)
class Probe:
    """Who asks and how: the agent's node name and the revision and digest
    it holds (an in-sync replica then answers with a resume), the protocol
    limits, how long a replica has to answer, and TLS."""

    node: str
    revision: int
    digest: str
    limits: Limits
    answer_within: float
    ssl_context: ssl.SSLContext | None = None
    server_name: str | None = None  # TLS: the name to verify (else the host's)

    async def in_sync(self, host: str, ip: str, port: int) -> bool:
        """Whether the replica at ip:port (an address of `host`) says it is
        in sync with the datastore, within `answer_within` seconds.  Never
        raises for what the peer does: any failure is False."""
        loop = asyncio.get_running_loop()
        core = ClientConnection(
            node=self.node,
            now=loop.time(),
            limits=self.limits,
            revision=self.revision,
            digest=self.digest if self.revision else "",
            caps=PROBE_CAPS,
        )
        tls = self.ssl_context
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.answer_within):
                reader, writer = await asyncio.open_connection(
                    ip, port, ssl=tls, server_hostname=(self.server_name or host) if tls else None
                )
                writer.write(b"".join(core.data_to_send()))
                while True:
                    data = await reader.read(1 << 16)
                    if not data:
                        return False
                    for msg in core.receive_data(data, loop.time()):
                        if isinstance(msg, DatastoreStatusMsg):
                            return msg.status is DatastoreStatus.IN_SYNC
                    if out := core.data_to_send():  # a PONG, say
                        writer.write(b"".join(out))
        except (OSError, TimeoutError, ProtocolError, ssl.SSLError):
            return False
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def first_in_sync(
        self, candidates: Iterable[tuple[str, str, int]]
    ) -> tuple[str, str, int] | None:
        """The first of `candidates` (host, ip, port), asked one after the
        other, that says it is in sync; None if none does."""
        for host, ip, port in candidates:
            if await self.in_sync(host, ip, port):
                return host, ip, port
        return None
