"""A leaf replica's state source: the client library syncing from other
typha replicas (`typha serve --upstream-typha`), feeding the leaf's cache.

Revisions stay etcd's, so an agent resumes across tiers as across replicas,
and the digest is verified at every hop: the client checks the upstream's,
the leaf's cache computes its own from the same canonical bytes, and its
agents check that.  Every value passes the same validation as a root's
etcd input (`calico_model.validation.admit`) before the leaf serves it: an
upstream that serves what a root would refuse (another version, a bug, a
compromise) cannot get it past the leaf.  Refused values are absent, counted
by reason and logged, as at the root.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence

from calico_model.errors import InvalidValue
from calico_model.keys import DEFAULT_PREFIX
from calico_model.validation import admit
from runtime.backoff import Backoff
from runtime.ratelimit import RateLimitedLog
from snapshot import SnapshotCache, Update
from snapshot.errors import RevisionRegression
from syncclient import Replica, SyncClient
from syncclient.replica import Change
from syncproto import DatastoreStatus
from syncproto.connection import REPLICA_CAPS
from typha.datastore.syncer import SyncerStats

log = logging.getLogger("typha.upstream")


class UpstreamSource:
    """Implements `typha.source.StateSource` over a SyncClient."""

    def __init__(
        self,
        addresses: str,
        cache: SnapshotCache,
        on_change: Callable[[], None],
        on_status: Callable[[DatastoreStatus], None],
        *,
        server_id: str,
        tick: float = 0.2,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._cache = cache
        self._prefix = prefix
        self._rl = RateLimitedLog(log)
        self._on_change = on_change
        self._on_status = on_status
        self._tick = tick
        self._replica = Replica()
        # Named after this replica, so the upstream's logs say which leaf it is.
        self.client = SyncClient(
            addresses,
            node=f"typha:{server_id}",
            replica=self._replica,
            caps=REPLICA_CAPS,
            ssl_context=ssl_context,
            server_name=server_name,
        )
        self.client.add_listener(self._applied)
        self.has_state = False
        self.following = False
        self.status = DatastoreStatus.WAITING
        self.stats = SyncerStats()
        self.backoff = Backoff(0.1, 5.0)  # mirrors the client's, for the metric

    def _applied(self, changes: Sequence[Change], revision: int) -> None:
        """The client committed a snapshot, delta or progress: pass it on."""
        cache = self._cache
        now = asyncio.get_running_loop().time()
        values = self._replica.values
        if not self.has_state:
            cache.load(self._valid(values.items()), revision)
            self.has_state = True
            self.stats.lists += 1
        else:
            updates: list[Update] = [
                (k, None if v is None else self._admit(k, values[k])) for k, v in changes
            ]
            try:
                if cache.apply(updates, revision, now) is None:
                    return
            except RevisionRegression:
                # A snapshot from an upstream behind us: its state is older
                # than what we serve.  Serve it whole (agents resync), since
                # no delta leads backwards.
                log.warning(
                    "upstream %s is at revision %d, behind our %d: reloading",
                    self.client.server,
                    revision,
                    cache.revision,
                )
                cache.load(self._valid(values.items()), revision)
            if changes:
                self.stats.watch_events += len(changes)
            else:
                self.stats.progress_notifies += 1
        self._update_status()
        self._on_change()

    def _admit(self, key: str, raw: bytes) -> bytes | None:
        """The canonical value the leaf may serve, or None (absent)."""
        try:
            return admit(key.encode(), raw, self._prefix)[1]
        except InvalidValue as exc:
            self.stats.invalid[exc.reason] += 1
            self._rl.log(
                logging.WARNING,
                f"invalid:{exc.reason}",
                "upstream served an invalid value at %s: %s; ignoring it",
                key,
                exc,
            )
            return None

    def _valid(self, items: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, bytes]]:
        for key, raw in items:
            value = self._admit(key, raw)
            if value is not None:
                yield key, value

    def _update_status(self) -> None:
        client = self.client
        following = self.has_state and client.in_sync and client.upstream_in_sync
        self.following = following
        status = DatastoreStatus.IN_SYNC if following else DatastoreStatus.WAITING
        if status is not self.status:
            log.info(
                "upstream %s: datastore status %s -> %s",
                client.server or "(none)",
                self.status.value,
                status.value,
            )
            self.status = status
            self._on_status(status)

    async def run(self) -> None:
        """Sync until cancelled; the client reconnects by itself, and its
        standing is mirrored into ours every `tick`."""
        await self.client.start()
        try:
            while True:
                await asyncio.sleep(self._tick)
                st = self.client.stats
                self.stats.watches = st.connects
                self.stats.errors = st.connect_failures + st.protocol_errors
                self.backoff.upper = self.client.reconnect_backoff
                self._update_status()
        finally:
            self.following = False
            await self.client.close()

    def request_resync(self) -> None:
        """Nothing to do: every hop verifies the digest, and a mismatch makes
        the client take a full snapshot from upstream by itself."""
