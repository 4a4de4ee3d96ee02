"""What a replica's state comes from: etcd (`typha.datastore.syncer.Syncer`)
or, in a tiered fan-out, other typha replicas (`typha.upstream.UpstreamSource`,
over the client library)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from runtime.backoff import Backoff
from snapshot import SnapshotCache
from syncproto import DatastoreStatus
from typha.datastore.syncer import SyncerStats


class StateSource(Protocol):
    """Keeps the cache equal to the datastore's state, calling the server's
    `on_change` after each batch it applied.  `run()` runs until cancelled."""

    has_state: bool  # the cache holds a complete state agents may be given
    following: bool  # ... and it is current (what /readyz reports)
    status: DatastoreStatus  # what agents are told
    stats: SyncerStats
    backoff: Backoff

    async def run(self) -> None:
        """Feed the cache until cancelled."""
        ...

    def request_resync(self) -> None:
        """Read the whole state again and send agents the difference."""
        ...


# (cache, on_change, on_status) -> the source feeding that cache
SourceFactory = Callable[
    [SnapshotCache, Callable[[], None], Callable[[DatastoreStatus], None]], StateSource
]
