"""The datastore syncer: one paged list, then one watch, feeding the cache.

It tracks the revision itself (the cache's revision is the last one applied)
and after any break re-watches from that revision + 1.  If etcd has compacted
past it, it lists again and turns the difference into ordinary updates, so
agents see deltas rather than a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from etcd3aio import prefix_range_end

from snapshot import SnapshotCache, Update
from typha.errors import DatastoreError
from typha.etcd_client import EtcdConnection, KeyValue, WatchBatch, WatchEvent
from typha.ratelimit import RateLimitedLog
from typha.validation import InvalidValue, validate

log = logging.getLogger(__name__)


class Compacted(Exception):
    """The watch start revision has been compacted away: list again."""


class ResyncRequested(Exception):
    """Someone (the cache-vs-etcd check) asked for a fresh list."""


_RESYNC = object()  # queued into the watch loop by request_resync()


@dataclass(slots=True)
class SyncerStats:
    lists: int = 0
    pages: int = 0
    watches: int = 0
    watch_events: int = 0
    progress_notifies: int = 0
    compactions: int = 0
    errors: int = 0
    resync_updates: int = 0
    resyncs_requested: int = 0
    invalid: Counter[str] = field(default_factory=Counter)


class Syncer:
    """Keeps `cache` equal to the valid part of etcd under `prefix`.

    `on_change` is called (synchronously) after every batch the cache
    accepted, so the server can fan it out.
    """

    def __init__(
        self,
        connect: Callable[[], EtcdConnection],
        prefix: str,
        cache: SnapshotCache,
        on_change: Callable[[], None],
        *,
        page_size: int = 1000,
        batch_window: float = 0.005,
        backfill_revisions: int = 0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
    ) -> None:
        self._connect = connect
        self._prefix = prefix
        self._cache = cache
        self._on_change = on_change
        self._page_size = page_size
        self._batch_window = batch_window
        self._backfill = backfill_revisions
        self._catch_up_to = 0
        self._loaded = False
        self.catch_up_grace = 5.0
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.in_sync = False
        self.listed = False
        self.stats = SyncerStats()
        self._rl = RateLimitedLog(log)
        self._queue: asyncio.Queue[WatchBatch | Exception | object] | None = None
        self._resync_requested = False

    def request_resync(self) -> None:
        """List again and send agents the difference, as soon as possible."""
        self._resync_requested = True
        if self._queue is not None:
            self._queue.put_nowait(_RESYNC)

    async def run(self) -> None:
        """Run until cancelled.  Never raises for datastore trouble."""
        backoff = self._backoff_initial
        need_list = not self.listed  # once loaded, a restarted run re-watches
        while True:
            conn = self._connect()
            try:
                await conn.authenticate()
                if need_list or self._resync_requested:
                    self._resync_requested = False
                    await self._list(conn)
                    need_list = False
                backoff = self._backoff_initial
                await self._watch(conn)
            except ResyncRequested:
                self.stats.resyncs_requested += 1
                need_list = True
            except Compacted:
                self.stats.compactions += 1
                log.warning("watch revision %d compacted; listing again", self._cache.revision + 1)
                need_list = True
            except DatastoreError as exc:
                self.stats.errors += 1
                self.in_sync = False
                delay = random.uniform(backoff / 2, backoff)
                self._rl.log(
                    logging.WARNING, "etcd", "etcd trouble (%s); retrying in %.2fs", exc, delay
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self._backoff_max)
            finally:
                await conn.close()

    # -- list --------------------------------------------------------------

    async def _list(self, conn: EtcdConnection) -> None:
        revision, items, pages = (
            await self._first_list(conn)
            if not self.listed
            else (await conn.list_prefix(self._prefix, page_size=self._page_size))
        )
        self.stats.lists += 1
        self.stats.pages += pages
        valid: dict[str, bytes] = {}
        for kv in items:
            result = self._validated(kv.key, kv.value)
            if result is not None:
                valid[result[0]] = result[1]
        if not self.listed:
            self._cache.load(valid.items(), revision)
            self._loaded = True
            self.listed = self._catch_up_to == 0
        else:
            self._resync(valid, revision)
        self._on_change()

    async def _first_list(self, conn: EtcdConnection) -> tuple[int, list[KeyValue], int]:
        """The first list reads `backfill` revisions in the past (while etcd
        still has them) and the watch replays the rest, so a new replica starts
        with history: agents moving here from another replica resume instead
        of taking a snapshot (a rolling restart costs deltas)."""
        self._catch_up_to = 0
        if self._backfill > 0:
            start = self._prefix.encode()
            head, _, _ = await conn.list_page(start, prefix_range_end(start), limit=1, revision=0)
            past = max(1, head - self._backfill)
            if past < head:
                try:
                    listed = await conn.list_prefix(
                        self._prefix, page_size=self._page_size, revision=past
                    )
                    # Not serving agents until the replay has reached `head`.
                    self._catch_up_to = head
                    return listed
                except DatastoreError as exc:
                    log.info("no history to backfill from revision %d (%s)", past, exc)
        return await conn.list_prefix(self._prefix, page_size=self._page_size)

    def _grace_expired(self, watch_generation: int) -> None:
        # Only if this very watch is still healthy: a stream that broke (say
        # on an oversized replay) must not make a partial state look current.
        if self.in_sync and self.stats.watches == watch_generation:
            self._check_caught_up(grace_expired=True)

    def _check_caught_up(self, *, grace_expired: bool = False) -> None:
        """After a backfilled first list, agents are served once the replay
        reached the head revision of that moment, or once the replay has had
        `catch_up_grace` seconds: if nothing under the prefix changed since
        the last event, the state we hold is the current one (etcd sends
        progress notifications only every 10 minutes by default)."""
        if self.listed or not self._loaded:
            return
        if self._cache.revision >= self._catch_up_to or grace_expired:
            self.listed = True
            log.info("history backfilled; serving from revision %d", self._cache.revision)
            self._on_change()

    def _resync(self, valid: dict[str, bytes], revision: int) -> None:
        """Turn a fresh list into updates against what the cache holds."""
        if revision < self._cache.revision:
            raise DatastoreError(
                f"etcd revision went backwards ({revision} < {self._cache.revision}); "
                "was it restored from a backup?"
            )
        updates: list[Update] = []
        current = self._cache.current.entries
        for key in current:
            if key not in valid:
                updates.append((key, None))
        for key, value in valid.items():
            old = current.get(key)
            if old is None or old.value != value:
                updates.append((key, value))
        self.stats.resync_updates += len(updates)
        self._cache.apply(updates, revision, asyncio.get_running_loop().time())

    # -- watch -------------------------------------------------------------

    async def _watch(self, conn: EtcdConnection) -> None:
        """Follow one watch stream.  Responses that arrive together (already
        queued, or within `batch_window` of the first) become one batch."""
        self.stats.watches += 1
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[WatchBatch | Exception | object] = asyncio.Queue()
        self._queue = queue

        async def pump() -> None:
            try:
                async for wb in conn.watch(self._prefix, self._cache.revision + 1):
                    queue.put_nowait(wb)
            except Exception as exc:
                queue.put_nowait(exc)

        reader = asyncio.create_task(pump(), name="etcd-watch")
        try:
            while True:
                group = [await queue.get()]
                deadline = loop.time() + self._batch_window
                while True:
                    if queue.empty():
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        try:
                            group.append(await asyncio.wait_for(queue.get(), remaining))
                        except TimeoutError:
                            break
                    else:
                        group.append(queue.get_nowait())
                self._apply_group(group, loop.time())
        finally:
            self._queue = None
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def _apply_group(self, group: list[WatchBatch | Exception | object], now: float) -> None:
        updates: list[Update] = []
        revision = self._cache.revision
        try:
            for item in group:
                if isinstance(item, Exception):
                    raise item
                if not isinstance(item, WatchBatch):
                    raise ResyncRequested()
                if item.compact_revision:
                    raise Compacted()
                if item.canceled:
                    raise DatastoreError(f"watch canceled: {item.cancel_reason}")
                if item.created:
                    self.in_sync = True
                    log.info("watching %s from revision %d", self._prefix, revision + 1)
                    if not self.listed:
                        gen = self.stats.watches
                        asyncio.get_running_loop().call_later(
                            self.catch_up_grace, self._grace_expired, gen
                        )
                elif item.events:
                    self.stats.watch_events += len(item.events)
                    updates.extend(self._updates(item.events))
                    revision = max(revision, max(ev.mod_revision for ev in item.events))
                elif item.header_revision > revision:
                    self.stats.progress_notifies += 1
                    revision = item.header_revision
        finally:
            # Whatever arrived before a failure is still applied.
            moved = updates or revision > self._cache.revision
            if moved and self._cache.apply(updates, revision, now) is not None:
                self._on_change()
            self._check_caught_up()

    def _updates(self, events: Iterable[WatchEvent]) -> list[Update]:
        out: list[Update] = []
        for ev in events:
            result = None if ev.deleted else self._validated(ev.key, ev.value)
            if result is not None:
                out.append(result)
                continue
            # Deleted, or invalid now: absent from the state (a delete if it
            # was there).  A non-UTF-8 key was never admitted: nothing to delete.
            with contextlib.suppress(UnicodeDecodeError):
                out.append((ev.key.decode(), None))
        return out

    def _validated(self, raw_key: bytes, raw_value: bytes) -> tuple[str, bytes] | None:
        try:
            key = raw_key.decode()
        except UnicodeDecodeError:
            self._invalid(repr(raw_key), InvalidValue("key_not_utf8", "key is not UTF-8"))
            return None
        try:
            return key, validate(key, raw_value, self._prefix).canonical
        except InvalidValue as exc:
            self._invalid(key, exc)
            return None

    def _invalid(self, key: str, exc: InvalidValue) -> None:
        self.stats.invalid[exc.reason] += 1
        self._rl.log(
            logging.WARNING, f"invalid:{exc.reason}", "ignoring invalid value at %s: %s", key, exc
        )
