"""The cache-vs-etcd check: trust, but verify.

Every `interval` seconds it reads the served prefix from etcd *at the
revision the cache has reached* and compares digests.  A mismatch means the
cache silently diverged (a bug, a lost event): it is logged with the keys that
differ, counted, and repaired by asking the syncer to list again, which sends
agents the difference as ordinary deltas.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from snapshot import Snapshot, SnapshotCache
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import EtcdEntries, read_entries
from typha.errors import DatastoreError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CheckStats:
    """Counters of the source check, for metrics."""

    checks: int = 0
    matches: int = 0
    mismatches: int = 0
    skipped: int = 0


class Resyncable(Protocol):
    """What the check needs of the syncer."""

    following: bool

    def request_resync(self) -> None:
        """List again and send agents the difference."""
        ...


class SourceCheck:
    """Compares the cache with etcd every `interval` and asks the syncer to list again when they
    differ."""

    def __init__(
        self,
        connect: Callable[[], EtcdConnection],
        prefix: str,
        cache: SnapshotCache,
        syncer: Resyncable,
        interval: float,
    ) -> None:
        self._connect = connect
        self._prefix = prefix
        self._cache = cache
        self._syncer = syncer
        self._interval = interval
        self.stats = CheckStats()

    async def run(self) -> None:
        """Check every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            await self.check_once()

    async def check_once(self) -> bool | None:
        """True: digests match; False: mismatch (a resync was requested);
        None: could not check now (not in sync, etcd unreachable, compacted)."""
        snap: Snapshot = self._cache.current  # immutable: safe to compare later
        if not self._syncer.following or snap.revision == 0:
            self.stats.skipped += 1
            return None
        conn = self._connect()
        try:
            await conn.authenticate()
            truth = await read_entries(conn, self._prefix, revision=snap.revision)
        except DatastoreError as exc:
            self.stats.skipped += 1
            log.info("cache-vs-etcd check skipped at revision %d: %s", snap.revision, exc)
            return None
        finally:
            await conn.close()
        self.stats.checks += 1
        if truth.digest == snap.digest:
            self.stats.matches += 1
            return True
        self.stats.mismatches += 1
        log.error(
            "cache diverged from etcd at revision %d (%s); resyncing",
            snap.revision,
            describe_difference(snap, truth),
        )
        self._syncer.request_resync()
        return False


def describe_difference(snap: Snapshot, truth: EtcdEntries, limit: int = 5) -> str:
    """A short description of the keys that differ between a snapshot and etcd, for the log."""
    ours = snap.entries
    missing = [k for k in truth.entries if k not in ours]
    extra = [k for k in ours if k not in truth.entries]
    changed = [k for k, v in truth.entries.items() if k in ours and ours[k].value != v]
    parts = []
    for name, keys in (("missing", missing), ("extra", extra), ("different", changed)):
        if keys:
            parts.append(f"{len(keys)} {name}: {', '.join(sorted(keys)[:limit])}")
    return "; ".join(parts) or "same keys and values, digest differs"
