"""The datastore syncer: one paged list, then one watch, feeding the cache.

It tracks the revision itself (the cache's revision is the last one applied)
and after any break re-watches from there.  If etcd has compacted past it, it
lists again and turns the difference into ordinary updates, so agents see
deltas rather than a reset.

Liveness: a watch that stays silent is asked for progress; etcd answers a
progress request only once every event up to the revision it names has been
sent, so an answer proves the watch is current, and no answer within
`watch_timeout` means etcd is frozen or unreachable: the syncer drops out of
sync and reconnects.  Retries back off exponentially and the backoff resets
only once a watch has delivered something.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from runtime.backoff import Backoff, Jitter
from runtime.ratelimit import RateLimitedLog
from snapshot import SnapshotCache
from syncproto import DatastoreStatus
from typha.datastore.etcd_client import EtcdConnection, WatchStream
from typha.datastore.fold import (
    Compacted,
    Liveness,
    Quiet,
    ReplayGate,
    ResyncAsked,
    ResyncRequested,
    WatchFailed,
    WatchItem,
    fold_watch,
    list_diff,
)
from typha.datastore.listing import Admission, list_prefix
from typha.errors import DatastoreError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SyncerStats:
    """Counters of the syncer's work, for metrics."""

    lists: int = 0
    pages: int = 0
    watches: int = 0
    watch_events: int = 0
    progress_notifies: int = 0
    compactions: int = 0
    errors: int = 0
    resync_updates: int = 0
    resyncs_requested: int = 0
    progress_requests: int = 0
    watch_stalls: int = 0
    invalid: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """How the syncer reads etcd: list page size, the window that gathers
    watch responses into one batch, history to backfill on the first list,
    retry backoff, and how long a watch may stay silent."""

    page_size: int = 1000
    batch_window: float = 0.005
    backfill_revisions: int = 0
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    watch_timeout: float = 10.0


class Syncer:
    """Keeps `cache` equal to the valid part of etcd under `prefix`.

    `on_change` is called (synchronously) after every batch the cache
    accepted, so the server can fan it out; `on_status` whenever `status`
    changes.  `run()` never returns; it raises only on a bug, after marking
    itself out of sync, and a restarted `run()` re-watches from where the
    cache is.
    """

    def __init__(
        self,
        connect: Callable[[], EtcdConnection],
        prefix: str,
        cache: SnapshotCache,
        on_change: Callable[[], None],
        *,
        on_status: Callable[[DatastoreStatus], None] | None = None,
        options: SyncOptions = SyncOptions(),
    ) -> None:
        self._connect = connect
        self._prefix = prefix
        self._cache = cache
        self._on_change = on_change
        self._on_status = on_status
        self.options = options
        self._replay = ReplayGate()
        self.backoff = Backoff(options.backoff_initial, options.backoff_max, jitter=Jitter.HALF)
        # The cache holds a complete state agents may be given (the first
        # list is done and, with backfill, the replay has reached the head).
        self.has_state = False
        # The watch is established and caught up: what we hold is current.
        self.following = False
        self.status = DatastoreStatus.WAITING
        self.stats = SyncerStats()
        self._rl = RateLimitedLog(log)
        self._admit = Admission(prefix, self.stats.invalid)
        self._queue: asyncio.Queue[WatchItem] | None = None
        self._resync_requested = False
        # Every event up to here is applied (see fold_watch): the next watch
        # starts after it.
        self._safe_revision = 0

    def request_resync(self) -> None:
        """List again and send agents the difference, as soon as possible."""
        self._resync_requested = True
        if self._queue is not None:
            self._queue.put_nowait(ResyncAsked())

    def _set_status(self, status: DatastoreStatus) -> None:
        if status is not self.status:
            log.info("datastore status: %s -> %s", self.status.value, status.value)
            self.status = status
            if self._on_status is not None:
                self._on_status(status)

    def _out_of_sync(self) -> None:
        self.following = False
        self._set_status(DatastoreStatus.WAITING)

    async def run(self) -> None:
        """Run until cancelled.  Never raises for datastore trouble."""
        try:
            await self._run()
        except BaseException:
            self._out_of_sync()
            raise

    async def _run(self) -> None:
        need_list = not self.has_state  # once loaded, a restarted run re-watches
        while True:
            conn = self._connect()
            try:
                await conn.authenticate()
                if need_list or self._resync_requested:
                    self._resync_requested = False
                    if self.has_state:
                        self._set_status(DatastoreStatus.RESYNCING)
                    await self._list(conn)
                    need_list = False
                await self._watch(conn)
            except ResyncRequested:
                self.stats.resyncs_requested += 1
                need_list = True
            except Compacted:
                self.stats.compactions += 1
                log.warning("watch revision %d compacted; listing again", self._safe_revision + 1)
                need_list = True
            except DatastoreError as exc:
                self.stats.errors += 1
                self._out_of_sync()
                delay = self.backoff.delay()
                self._rl.log(
                    logging.WARNING, "etcd", "etcd trouble (%s); retrying in %.2fs", exc, delay
                )
                await asyncio.sleep(delay)
            finally:
                await conn.close()

    # -- list --------------------------------------------------------------

    async def _list(self, conn: EtcdConnection) -> None:
        """Read the whole prefix at one revision, validating page by page."""
        listing = await list_prefix(
            conn,
            self._prefix,
            self._admit,
            page_size=self.options.page_size,
            backfill=0 if self.has_state else self.options.backfill_revisions,
        )
        self.stats.lists += 1
        self.stats.pages += listing.pages
        if not self.has_state:
            self._cache.load(listing.valid.items(), listing.revision)
            self.has_state = self._replay.listed(listing.catch_up_to)
        else:
            # A fresh list becomes ordinary updates against what the cache holds.
            updates = list_diff(self._cache, listing.valid, listing.revision)
            self.stats.resync_updates += len(updates)
            self._cache.apply(updates, listing.revision, asyncio.get_running_loop().time())
        self._safe_revision = listing.revision
        self._on_change()

    # -- watch -------------------------------------------------------------

    async def _watch(self, conn: EtcdConnection) -> None:
        """Follow one watch stream.  Responses that arrive together (already
        queued, or within `batch_window` of the first) become one batch.  A
        quiet stream is asked for progress; a silent one is abandoned."""
        self.stats.watches += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        liveness = Liveness(self.options.watch_timeout, last_heard=started, asked=started)
        async with watch_queue(conn, self._prefix, self._safe_revision + 1) as (stream, queue):
            self._queue = queue
            try:
                await self._follow(stream, queue, liveness)
            finally:
                self._queue = None

    async def _follow(
        self, stream: WatchStream, queue: asyncio.Queue[WatchItem], liveness: Liveness
    ) -> None:
        """Read the watch until it fails, stalls or is told to stop."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                # asyncio.timeout, not wait_for: wait_for (3.11) can swallow
                # a cancellation that races with the get, and a swallowed
                # cancel would keep this loop running after stop().
                async with asyncio.timeout(liveness.tick):
                    first = await queue.get()
            except TimeoutError:
                now = loop.time()
                verdict = liveness.quiet(now, catching_up=self._replay.replaying)
                if verdict is Quiet.STALLED:
                    self.stats.watch_stalls += 1
                    raise DatastoreError(
                        f"etcd watch silent for {now - liveness.last_heard:.1f}s: no events "
                        "and no answer to progress requests"
                    ) from None
                if verdict is Quiet.ASK_PROGRESS:
                    stream.request_progress()
                    self.stats.progress_requests += 1
                continue
            heard = loop.time()
            liveness.heard(heard)
            group = await gather_group(queue, first, heard + self.options.batch_window)
            # Stamped with when the first response arrived, so the fan-out
            # latency histogram includes the batch window.
            self.apply_watch_group(group, heard)

    def apply_watch_group(self, group: list[WatchItem], now: float) -> None:
        """Apply one group of watch items (batches, progress notifications, errors) as one cache
        update.  The watch loop calls it; tests feed it synthetic batches."""
        fold = fold_watch(
            group,
            revision=self._cache.revision,
            safe_revision=self._safe_revision,
            validate=self._admit,
        )
        if fold.created:
            self.following = True
            log.info("watching %s from revision %d", self._prefix, self._safe_revision + 1)
        if fold.delivered:
            self.backoff.reset()
        self._safe_revision = fold.safe_revision
        self.stats.watch_events += fold.events
        self.stats.progress_notifies += fold.progress_notifies
        moved = fold.updates or fold.revision > self._cache.revision
        if moved and self._cache.apply(fold.updates, fold.revision, now) is not None:
            self._on_change()
        if self._replay.proven(fold.proven):
            self.has_state = True
            log.info("history backfilled; serving from revision %d", self._cache.revision)
            self._on_change()
        if self.following and self.has_state:
            self._set_status(DatastoreStatus.IN_SYNC)
        if fold.stop is not None:
            raise fold.stop


async def gather_group(
    queue: asyncio.Queue[WatchItem], first: WatchItem, deadline: float
) -> list[WatchItem]:
    """`first` and whatever else is queued already or arrives before
    `deadline` (loop time): the responses that become one batch."""
    loop = asyncio.get_running_loop()
    group = [first]
    while True:
        if not queue.empty():
            group.append(queue.get_nowait())
            continue
        remaining = deadline - loop.time()
        if remaining <= 0:
            return group
        try:
            async with asyncio.timeout(remaining):
                group.append(await queue.get())
        except TimeoutError:
            return group


@asynccontextmanager
async def watch_queue(
    conn: EtcdConnection, prefix: str, start: int
) -> AsyncIterator[tuple[WatchStream, asyncio.Queue[WatchItem]]]:
    """A watch on `prefix` from `start` whose responses, and the error that
    ends it (as WatchFailed), a reader task puts on the queue; cancelled
    and reaped on exit."""
    queue: asyncio.Queue[WatchItem] = asyncio.Queue()
    stream = conn.watch(prefix, start)

    async def pump() -> None:
        try:
            async for wb in stream:
                queue.put_nowait(wb)
        except Exception as exc:
            queue.put_nowait(WatchFailed(exc))

    reader = asyncio.create_task(pump(), name="etcd-watch")
    try:
        yield stream, queue
    finally:
        stream.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
