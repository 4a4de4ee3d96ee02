"""SnapshotCache: the server's versioned state and its bounded delta history.

Pure data structure: no I/O, no event loop.  The syncer calls `apply` with the
updates of one datastore batch; connections remember the `seq` they have
reached and call `batches_after(seq)` to get what they missed, so there are no
per-client queues: every client walks the same shared chain.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import immutables

from snapshot.digest import MODULUS, entry_hash_canonical, format_digest
from snapshot.errors import HistoryUnavailable, RevisionRegression
from snapshot.state import DeltaBatch, Entry, Snapshot, Update

BatchEncoder = Callable[[DeltaBatch], bytes]
SnapshotEncoder = Callable[[Snapshot, bool], list[bytes]]
# A merged batch as one frame, zstd-compressed if asked (the bool).
MergedEncoder = Callable[[DeltaBatch, bool], bytes]

# Catch-up frames kept for the current head: one per (start, variant) asked.
CATCH_UP_MEMO = 64


@dataclass(slots=True)
class CacheStats:
    """Counters of the cache's work, for metrics."""

    batches: int = 0
    updates_applied: int = 0
    updates_suppressed: int = 0
    history_trimmed: int = 0
    snapshots_encoded: int = 0
    snapshots_reused: int = 0
    catch_ups_encoded: int = 0
    catch_ups_reused: int = 0
    catch_up_bytes: int = 0  # bytes of the catch-up frames encoded
    # Bytes of the latest snapshot encoding, by variant (True: compressed).
    snapshot_bytes: dict[bool, int] = field(default_factory=dict)


class SnapshotCache:
    """Holds the current Snapshot and the DeltaBatches after older ones.

    The caller must feed revisions in non-decreasing order.  `encode_batch`
    turns a batch into its wire frame exactly once; `encode_snapshot` turns a
    snapshot into its list of frames, memoised per snapshot so that every
    client connecting while it is current shares one encoding.
    """

    def __init__(
        self,
        *,
        encode_batch: BatchEncoder | None = None,
        encode_snapshot: SnapshotEncoder | None = None,
        encode_merged: MergedEncoder | None = None,
        max_merged_bytes: int = 4 * 1024 * 1024,
        max_history_batches: int = 10_000,
        max_history_bytes: int = 64 * 1024 * 1024,
        max_history_age: float = 300.0,
    ) -> None:
        self._encode_batch = encode_batch
        self._encode_snapshot = encode_snapshot
        self._encode_merged = encode_merged
        self._max_merged_bytes = max_merged_bytes
        # (start seq, compressed?) -> catch-up frame, valid for _catch_up_head only.
        self._catch_up: dict[tuple[int, bool], bytes] = {}
        self._catch_up_head = -1
        self._max_batches = max_history_batches
        self._max_bytes = max_history_bytes
        self._max_age = max_history_age
        self._current = Snapshot(revision=0, seq=0, entries=immutables.Map(), digest=0)
        self._changed_revision = 0
        self._history: deque[DeltaBatch] = deque()
        self._history_bytes = 0
        # (snapshot, compressed?) -> frames; only the current snapshot is kept.
        self._encoded: dict[bool, tuple[Snapshot, list[bytes]]] = {}
        self.stats = CacheStats()

    # -- reading ---------------------------------------------------------

    @property
    def current(self) -> Snapshot:
        """The snapshot at the head revision."""
        return self._current

    @property
    def revision(self) -> int:
        """The head revision."""
        return self._current.revision

    @property
    def changed_revision(self) -> int:
        """The revision of the latest change to the state: the head revision
        less the progress batches since.  A client at this revision or later
        holds the head state."""
        return self._changed_revision

    @property
    def seq(self) -> int:
        """The sequence number of the head snapshot (one per batch)."""
        return self._current.seq

    @property
    def digest_hex(self) -> str:
        """The head snapshot's digest, as 32 hex digits."""
        return format_digest(self._current.digest)

    @property
    def oldest_seq(self) -> int:
        """The lowest `seq` from which `batches_after` still answers."""
        if self._history:
            return self._history[0].seq - 1
        return self._current.seq

    def batches_after(self, seq: int) -> Sequence[DeltaBatch]:
        """Every batch with a sequence number above `seq`, oldest first.

        Raises HistoryUnavailable if some of them have been trimmed: the
        caller must then fall back to a full snapshot.
        """
        if seq >= self._current.seq:
            return ()
        if seq < self.oldest_seq:
            raise HistoryUnavailable(f"seq {seq} is older than the history ({self.oldest_seq})")
        start = seq - self._history[0].seq + 1
        return [self._history[i] for i in range(start, len(self._history))]

    def catch_up_frame(self, seq: int, *, compressed: bool) -> bytes | None:
        """One DELTA frame taking a client at `seq` to the head: the net
        updates of every batch after it (a key's last value; deletes of keys
        the client may never have had are harmless), `prev` the first
        batch's, the head's revision and digest; zstd-compressed if
        `compressed`.  Memoised for the current head, so every client
        resuming from the same position shares one encoding.  None when
        there is no merged encoder, fewer than two batches, or the merged
        values exceed `max_merged_bytes` (send the batches' own frames).
        Raises HistoryUnavailable like `batches_after`."""
        if self._encode_merged is None:
            return None
        head = self._current.seq
        if self._catch_up_head != head:
            self._catch_up.clear()
            self._catch_up_head = head
        key = (seq, compressed)
        frame = self._catch_up.get(key)
        if frame is not None:
            self.stats.catch_ups_reused += 1
            return frame
        batches = self.batches_after(seq)
        if len(batches) < 2:
            return None
        net: dict[str, bytes | None] = {}
        size = 0
        for batch in batches:
            for k, v in batch.updates:
                net[k] = v
                size += len(k) + (len(v) if v is not None else 0)
            if size > self._max_merged_bytes:
                return None
        first, last = batches[0], batches[-1]
        merged = DeltaBatch(
            seq=last.seq,
            prev_revision=first.prev_revision,
            revision=last.revision,
            updates=tuple(net.items()),
            digest=last.digest,
            prev_digest=first.prev_digest,
        )
        frame = self._encode_merged(merged, compressed)
        if len(self._catch_up) >= CATCH_UP_MEMO:
            self._catch_up.clear()
        self._catch_up[key] = frame
        self.stats.catch_ups_encoded += 1
        self.stats.catch_up_bytes += len(frame)
        return frame

    def resume_seq(self, revision: int, digest: int | None) -> int | None:
        """The seq a client holding `revision` (with `digest`, if known) can
        resume from, or None if it needs a full snapshot.

        Updates carry whole values, so replaying a batch that straddles the
        client's revision is harmless: a client at 11 may be sent the batch
        10->12 (another replica may have cut its batches differently).  Where
        the server knows the digest at exactly `revision` it checks it.
        """
        cur = self._current
        if revision > cur.revision or revision <= 0:
            return None
        if revision == cur.revision:
            return cur.seq if digest is None or digest == cur.digest else None
        for batch in reversed(self._history):
            if batch.prev_revision <= revision < batch.revision:
                known = batch.prev_revision == revision and digest is not None
                if known and batch.prev_digest != digest:
                    return None
                return batch.seq - 1
            if batch.revision <= revision:
                # `revision` falls between batches only if it is a revision at
                # which nothing under the prefix changed: resume after this one.
                if batch.revision == revision and digest is not None and digest != batch.digest:
                    return None
                return batch.seq
        return None

    def snapshot_frames(self, *, compressed: bool) -> tuple[Snapshot, list[bytes]]:
        """The current snapshot and its encoded frames.  Encoded once per
        snapshot and variant: every client that connects while it is current
        shares the same bytes (a reconnect storm encodes it once)."""
        if self._encode_snapshot is None:
            raise RuntimeError("SnapshotCache was built without encode_snapshot")
        snap = self._current
        memo = self._encoded.get(compressed)
        if memo is not None and memo[0] is snap:
            self.stats.snapshots_reused += 1
            return memo
        memo = (snap, self._encode_snapshot(snap, compressed))
        # Drop encodings of older snapshots so their bytes can be freed.
        self._encoded = {k: v for k, v in self._encoded.items() if v[0] is snap}
        self._encoded[compressed] = memo
        self.stats.snapshots_encoded += 1
        self.stats.snapshot_bytes[compressed] = sum(len(f) for f in memo[1])
        return memo

    # -- writing ---------------------------------------------------------

    def load(self, items: Iterable[tuple[str, bytes]], revision: int) -> None:
        """Replace the whole state (initial list).  Clears history: nobody can
        have seen a revision before the first load."""
        entries: dict[str, Entry] = {}
        digest = 0
        for key, value in items:
            h = entry_hash_canonical(key, value)
            old = entries.get(key)
            if old is not None:
                digest -= old.hash
            entries[key] = Entry(value, h)
            digest += h
        self._current = Snapshot(
            revision=revision,
            seq=self._current.seq + 1,
            entries=immutables.Map(entries),
            digest=digest % MODULUS,
        )
        self._changed_revision = revision
        self._history.clear()
        self._history_bytes = 0

    def apply(
        self, updates: Iterable[Update], revision: int, now: float = 0.0
    ) -> DeltaBatch | None:
        """Apply one batch of updates at `revision`.

        Updates that change nothing (same value, or delete of an absent key)
        are suppressed and counted.  Returns the new batch, or None if nothing
        changed and the revision did not move either.
        """
        cur = self._current
        if revision < cur.revision:
            raise RevisionRegression(f"revision {revision} < current {cur.revision}")
        effective: dict[str, bytes | None] = {}
        digest = cur.digest
        with cur.entries.mutate() as m:
            for key, value in updates:
                old = m.get(key)
                if value is None:
                    if old is None:
                        self.stats.updates_suppressed += 1
                        continue
                    del m[key]
                    digest -= old.hash
                else:
                    if old is not None and old.value == value:
                        self.stats.updates_suppressed += 1
                        continue
                    h = entry_hash_canonical(key, value)
                    m[key] = Entry(value, h)
                    if old is not None:
                        digest -= old.hash
                    digest += h
                effective[key] = value
            entries = m.finish()
        if not effective and revision == cur.revision:
            return None
        self.stats.updates_applied += len(effective)
        return self._append(tuple(effective.items()), revision, entries, digest % MODULUS, now)

    def advance(self, revision: int, now: float = 0.0) -> DeltaBatch | None:
        """Move the revision forward with no change (a progress batch)."""
        return self.apply((), revision, now)

    def _append(
        self,
        updates: tuple[Update, ...],
        revision: int,
        entries: immutables.Map[str, Entry],
        digest: int,
        now: float,
    ) -> DeltaBatch:
        cur = self._current
        batch = DeltaBatch(
            seq=cur.seq + 1,
            prev_revision=cur.revision,
            revision=revision,
            updates=updates,
            digest=digest,
            prev_digest=cur.digest,
            created=now,
        )
        if self._encode_batch is not None:
            batch.frame = self._encode_batch(batch)
        self._current = Snapshot(revision=revision, seq=batch.seq, entries=entries, digest=digest)
        if updates:
            self._changed_revision = revision
        self._history.append(batch)
        self._history_bytes += len(batch.frame) + 64 * len(updates)
        self.stats.batches += 1
        self.trim(now)
        return batch

    def trim(self, now: float) -> None:
        """Drop history beyond the count, byte and age bounds.  Called on
        every append; call it periodically too so age applies when quiet."""
        while self._history and (
            len(self._history) > self._max_batches
            or self._history_bytes > self._max_bytes
            or now - self._history[0].created > self._max_age
        ):
            old = self._history.popleft()
            self._history_bytes -= len(old.frame) + 64 * len(old.updates)
            self.stats.history_trimmed += 1
