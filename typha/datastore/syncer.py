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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from calico_model.errors import InvalidValue
from calico_model.validation import admit
from runtime.backoff import Backoff, Jitter
from runtime.ratelimit import RateLimitedLog
from snapshot import SnapshotCache, Update
from syncproto import DatastoreStatus
from typha.datastore.etcd_api import prefix_range_end
from typha.datastore.etcd_client import EtcdConnection, WatchBatch, WatchEvent
from typha.errors import DatastoreError

log = logging.getLogger(__name__)


class Compacted(Exception):
    """The watch start revision has been compacted away: list again."""


class ResyncRequested(Exception):
    """Someone (the cache-vs-etcd check) asked for a fresh list."""


@dataclass(frozen=True, slots=True)
class WatchFailed:
    """The watch stream ended with an error (queued by its reader)."""

    error: Exception


@dataclass(frozen=True, slots=True)
class ResyncAsked:
    """request_resync() was called (queued so the watch loop acts on it in order)."""


# What the watch loop reads: etcd's responses, and the two ways it is told to stop.
WatchItem = WatchBatch | WatchFailed | ResyncAsked


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
        page_size: int = 1000,
        batch_window: float = 0.005,
        backfill_revisions: int = 0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        watch_timeout: float = 10.0,
    ) -> None:
        self._connect = connect
        self._prefix = prefix
        self._cache = cache
        self._on_change = on_change
        self._on_status = on_status
        self._page_size = page_size
        self._batch_window = batch_window
        self._backfill = backfill_revisions
        self._catch_up_to = 0
        self._loaded = False
        self.backoff = Backoff(backoff_initial, backoff_max, jitter=Jitter.HALF)
        self.watch_timeout = watch_timeout
        # The cache holds a complete state agents may be given (the first
        # list is done and, with backfill, the replay has reached the head).
        self.has_state = False
        # The watch is established and caught up: what we hold is current.
        self.following = False
        self.status = DatastoreStatus.WAITING
        self.stats = SyncerStats()
        self._rl = RateLimitedLog(log)
        self._queue: asyncio.Queue[WatchItem] | None = None
        self._resync_requested = False
        # The revision up to which every event is known to be applied: the
        # next watch starts after it.  A progress answer at P vouches only
        # for P - 1 (etcd before 3.5.8 could answer before sending the event
        # of a write at P that was still in flight).
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
        revision = 0 if self.has_state else await self._backfill_revision(conn)
        try:
            revision, valid, pages = await self._read_valid(conn, revision)
        except DatastoreError as exc:
            if revision == 0:
                raise
            log.info("no history to backfill from revision %d (%s)", revision, exc)
            self._catch_up_to = 0
            revision, valid, pages = await self._read_valid(conn, 0)
        self.stats.lists += 1
        self.stats.pages += pages
        if not self.has_state:
            self._cache.load(valid.items(), revision)
            self._loaded = True
            self.has_state = self._catch_up_to == 0
        else:
            self._resync(valid, revision)
        self._safe_revision = revision
        self._on_change()

    async def _read_valid(
        self, conn: EtcdConnection, revision: int
    ) -> tuple[int, dict[str, bytes], int]:
        valid: dict[str, bytes] = {}
        pages = 0
        final = revision
        async for at, page in conn.iter_prefix(
            self._prefix, page_size=self._page_size, revision=revision
        ):
            final = at
            pages += 1
            for kv in page:
                result = self._validated(kv.key, kv.value)
                if result is not None:
                    valid[result[0]] = result[1]
        return final, valid, pages

    async def _backfill_revision(self, conn: EtcdConnection) -> int:
        """The first list reads `backfill` revisions in the past (while etcd
        still has them) and the watch replays the rest, so a new replica starts
        with history: agents moving here from another replica resume instead
        of taking a snapshot (a rolling restart costs deltas).  0: no backfill."""
        self._catch_up_to = 0
        if self._backfill <= 0:
            return 0
        start = self._prefix.encode()
        head, _, _ = await conn.list_page(start, prefix_range_end(start), limit=1, revision=0)
        past = max(1, head - self._backfill)
        if past >= head:
            return 0
        # Not serving agents until the replay has reached `head`.
        self._catch_up_to = head
        return past

    def _check_caught_up(self, proven: int) -> None:
        """After a backfilled first list, agents are served only once the
        replay is proven complete up to the head revision of that moment:
        by an event at or past it, or by etcd's answer to a progress
        request (which it gives only to a watch that has sent everything)."""
        if self.has_state or not self._loaded or proven < self._catch_up_to:
            return
        self.has_state = True
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
        queued, or within `batch_window` of the first) become one batch.  A
        quiet stream is asked for progress; a silent one is abandoned."""
        self.stats.watches += 1
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[WatchItem] = asyncio.Queue()
        self._queue = queue
        stream = conn.watch(self._prefix, self._safe_revision + 1)
        progress_every = self.watch_timeout / 3
        tick = min(1.0, progress_every)

        async def pump() -> None:
            try:
                async for wb in stream:
                    queue.put_nowait(wb)
            except Exception as exc:
                queue.put_nowait(WatchFailed(exc))

        reader = asyncio.create_task(pump(), name="etcd-watch")
        last_heard = asked = loop.time()
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: wait_for (3.11) can swallow
                    # a cancellation that races with the get, and a swallowed
                    # cancel would keep this loop running after stop().
                    async with asyncio.timeout(tick):
                        first = await queue.get()
                except TimeoutError:
                    now = loop.time()
                    quiet = now - last_heard
                    if quiet > self.watch_timeout:
                        self.stats.watch_stalls += 1
                        raise DatastoreError(
                            f"etcd watch silent for {quiet:.1f}s: no events and no answer "
                            "to progress requests"
                        ) from None
                    catching_up = self._loaded and not self.has_state
                    if (quiet >= progress_every or catching_up) and now - asked >= tick:
                        stream.request_progress()
                        self.stats.progress_requests += 1
                        asked = now
                    continue
                last_heard = loop.time()
                group = [first]
                deadline = last_heard + self._batch_window
                while True:
                    if queue.empty():
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        try:
                            async with asyncio.timeout(remaining):
                                group.append(await queue.get())
                        except TimeoutError:
                            break
                    else:
                        group.append(queue.get_nowait())
                # Stamped with when the first response arrived, so the fan-out
                # latency histogram includes the batch window.
                self.apply_watch_group(group, last_heard)
        finally:
            self._queue = None
            stream.cancel()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def apply_watch_group(self, group: list[WatchItem], now: float) -> None:
        """Apply one group of watch items (batches, progress notifications, errors) as one cache
        update.  The watch loop calls it; tests feed it synthetic batches."""
        updates: list[Update] = []
        revision = self._cache.revision
        proven = 0  # revision up to which this group proves the watch complete
        try:
            for item in group:
                if isinstance(item, WatchFailed):
                    raise item.error
                if isinstance(item, ResyncAsked):
                    raise ResyncRequested()
                if item.compact_revision:
                    raise Compacted()
                if item.canceled:
                    raise DatastoreError(f"watch canceled: {item.cancel_reason}")
                if item.created:
                    self.following = True
                    log.info("watching %s from revision %d", self._prefix, self._safe_revision + 1)
                    continue
                # The watch delivered: etcd is back for real.
                self.backoff.reset()
                if item.events:
                    self.stats.watch_events += len(item.events)
                    updates.extend(self._updates(item.events))
                    top = max(ev.mod_revision for ev in item.events)
                    revision = max(revision, top)
                    self._safe_revision = max(self._safe_revision, top)
                    proven = max(proven, top)
                else:
                    if item.header_revision > revision:
                        self.stats.progress_notifies += 1
                        revision = item.header_revision
                    self._safe_revision = max(self._safe_revision, item.header_revision - 1)
                    proven = max(proven, item.header_revision)
        finally:
            # Whatever arrived before a failure is still applied.
            moved = updates or revision > self._cache.revision
            if moved and self._cache.apply(updates, revision, now) is not None:
                self._on_change()
            self._check_caught_up(proven)
            if self.following and self.has_state:
                self._set_status(DatastoreStatus.IN_SYNC)

    def _updates(self, events: Iterable[WatchEvent]) -> list[Update]:
        out: list[Update] = []
        for ev in events:
            result = None if ev.deleted else self._validated(ev.key, ev.value)
            if result is not None:
                out.append(result)
                continue
            # Deleted, or invalid now: absent from the state (a delete if it
            # was there).  A non-UTF-8 key was never admitted: nothing to delete.
            key = ev.key.decode(errors="replace")
            if key.encode() == ev.key:
                out.append((key, None))
        return out

    def _validated(self, raw_key: bytes, raw_value: bytes) -> tuple[str, bytes] | None:
        try:
            return admit(raw_key, raw_value, self._prefix)
        except InvalidValue as exc:
            self._invalid(raw_key.decode(errors="replace"), exc)
            return None

    def _invalid(self, key: str, exc: InvalidValue) -> None:
        self.stats.invalid[exc.reason] += 1
        self._rl.log(
            logging.WARNING,
            f"invalid:{exc.reason}",
            "ignoring invalid value at %s: %s",
            key[:200],
            exc,
        )
