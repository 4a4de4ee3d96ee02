"""The syncer's decisions, pure: a group of watch responses folded into one
cache update, a fresh list turned into the difference from what the cache
holds, and when a quiet watch is asked for progress or given up.  No I/O,
no clock, no logging: tests drive them with plain values and the syncer
carries out what they return."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from snapshot import SnapshotCache, Update
from typha.datastore.etcd_client import WatchBatch, WatchEvent
from typha.errors import DatastoreError


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

# Admits one raw key and value (the valid, canonical pair) or refuses it (None).
Validate = Callable[[bytes, bytes], tuple[str, bytes] | None]


@dataclass(slots=True)
class Fold:
    """What one group of watch items comes to.  The caller must apply
    `updates` at `revision` (if either moved), take `safe_revision` as the
    next watch's start minus one, then raise `stop` if set: whatever arrived
    before a failure is applied all the same."""

    revision: int
    safe_revision: int
    updates: list[Update] = field(default_factory=list)
    proven: int = 0  # revision up to which this group proves the watch complete
    created: bool = False  # the watch was established
    delivered: bool = False  # etcd sent something real: it is back for good
    events: int = 0
    progress_notifies: int = 0
    stop: Exception | None = None


def fold_watch(
    group: Iterable[WatchItem], *, revision: int, safe_revision: int, validate: Validate
) -> Fold:
    """Fold `group` (in arrival order) over a cache at `revision` whose watch
    has every event up to `safe_revision`.  A progress answer at P vouches
    only for P - 1 (etcd before 3.5.8 could answer before sending the event
    of a write at P still in flight)."""
    fold = Fold(revision=revision, safe_revision=safe_revision)
    for item in group:
        if isinstance(item, WatchFailed):
            fold.stop = item.error
            break
        if isinstance(item, ResyncAsked):
            fold.stop = ResyncRequested()
            break
        if item.compact_revision:
            fold.stop = Compacted()
            break
        if item.canceled:
            fold.stop = DatastoreError(f"watch canceled: {item.cancel_reason}")
            break
        if item.created:
            fold.created = True
            continue
        fold.delivered = True
        if item.events:
            fold.events += len(item.events)
            fold.updates.extend(event_updates(item.events, validate))
            top = max(ev.mod_revision for ev in item.events)
            fold.revision = max(fold.revision, top)
            fold.safe_revision = max(fold.safe_revision, top)
            fold.proven = max(fold.proven, top)
        else:
            if item.header_revision > fold.revision:
                fold.progress_notifies += 1
                fold.revision = item.header_revision
            fold.safe_revision = max(fold.safe_revision, item.header_revision - 1)
            fold.proven = max(fold.proven, item.header_revision)
    return fold


def event_updates(events: Iterable[WatchEvent], validate: Validate) -> list[Update]:
    """Watch events as updates: a valid put is its canonical value; a delete,
    or a put that is invalid now, is an absence (a delete if it was there).
    A key that is not UTF-8 was never admitted: nothing to delete."""
    out: list[Update] = []
    for ev in events:
        result = None if ev.deleted else validate(ev.key, ev.value)
        if result is not None:
            out.append(result)
            continue
        key = ev.key.decode(errors="replace")
        if key.encode() == ev.key:
            out.append((key, None))
    return out


def list_diff(cache: SnapshotCache, valid: Mapping[str, bytes], revision: int) -> list[Update]:
    """The updates that turn what `cache` holds into `valid`, listed at
    `revision`: deletions of what is gone, then every new or changed value.
    Raises DatastoreError if etcd's revision went backwards."""
    if revision < cache.revision:
        raise DatastoreError(
            f"etcd revision went backwards ({revision} < {cache.revision}); "
            "was it restored from a backup?"
        )
    current = cache.current.entries
    updates: list[Update] = [(key, None) for key in current if key not in valid]
    for key, value in valid.items():
        old = current.get(key)
        if old is None or old.value != value:
            updates.append((key, value))
    return updates


class Quiet(Enum):
    """What a watch that has been quiet for a while calls for."""

    WAIT = "wait"
    ASK_PROGRESS = "ask_progress"  # ask etcd to prove the watch is current
    STALLED = "stalled"  # no answer for too long: etcd is frozen or unreachable


@dataclass(slots=True)
class Liveness:
    """When to ask a quiet watch for progress, and when to give up on it.
    etcd answers a progress request only once every event up to the
    revision it names has been sent, so an answer proves the watch current
    and silence past `timeout` proves it dead.  The caller must call
    `heard(now)` on every response and `quiet(now)` every `tick` seconds
    without one."""

    timeout: float
    last_heard: float
    asked: float = 0.0

    @property
    def tick(self) -> float:
        """How often to check a quiet watch."""
        return min(1.0, self.timeout / 3)

    def heard(self, now: float) -> None:
        """A response (anything at all) arrived."""
        self.last_heard = now

    def quiet(self, now: float, *, catching_up: bool) -> Quiet:
        """Nothing arrived for a tick.  `catching_up`: a backfill replay is
        under way, whose end only a progress answer can prove."""
        quiet = now - self.last_heard
        if quiet > self.timeout:
            return Quiet.STALLED
        if (quiet >= self.timeout / 3 or catching_up) and now - self.asked >= self.tick:
            self.asked = now
            return Quiet.ASK_PROGRESS
        return Quiet.WAIT


@dataclass(slots=True)
class ReplayGate:
    """After a first list made in the past (backfill), agents are served only
    once the watch's replay is proven complete up to the head revision of
    that moment: by an event at or past it, or by etcd's answer to a
    progress request (which it gives only to a watch that has sent
    everything)."""

    until: int = 0  # the head revision to reach; 0: nothing to replay

    def listed(self, head: int) -> bool:
        """The first list is loaded, made `head` revisions ago (0: at the
        head).  True if its state is complete already."""
        self.until = head
        return head == 0

    @property
    def replaying(self) -> bool:
        """The replay has yet to be proven complete."""
        return self.until > 0

    def proven(self, revision: int) -> bool:
        """The watch is proven complete up to `revision`; True once, when
        that completes the replay."""
        if not self.until or revision < self.until:
            return False
        self.until = 0
        return True
