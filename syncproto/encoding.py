"""Encoders that turn snapshot/ structures into wire frames, once.

The SnapshotCache calls these; their output is shared by every connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from snapshot import DeltaBatch, Snapshot, format_digest
from syncproto import Codec, Delta, Progress, SnapshotChunk, SnapshotEnd

# Raw (uncompressed) bytes of entries per snapshot chunk.  Small enough that a
# chunk compresses in well under a millisecond, large enough that per-frame
# overhead is noise.
CHUNK_BYTES = 256 * 1024


@dataclass(slots=True)
class EncoderStats:
    """Counters of the encoder's work, for metrics."""

    batch_frames: int = 0
    batch_bytes: int = 0
    snapshot_raw_bytes: int = 0  # msgpack bodies before compression
    snapshot_wire_bytes: int = 0  # frames as sent (compressed where the client asked)


class FrameEncoder:
    """Turns cache structures into wire frames.  The cache calls `batch` once per delta batch and
    `snapshot` once per snapshot and variant; the frames are shared by every connection."""

    def __init__(self, *, max_frame: int, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._codec = Codec(max_frame=max_frame)
        self._chunk_bytes = min(chunk_bytes, max_frame // 2)
        self.stats = EncoderStats()

    def batch(self, batch: DeltaBatch) -> bytes:
        """The frame of one batch: a DELTA, or a PROGRESS when nothing changed."""
        digest = format_digest(batch.digest)
        if not batch.updates:
            frame = self._codec.encode(Progress(batch.prev_revision, batch.revision, digest))
        else:
            delta = Delta(batch.prev_revision, batch.revision, list(batch.updates), digest)
            frame = self._codec.encode(delta)
        self.stats.batch_frames += 1
        self.stats.batch_bytes += len(frame)
        return frame

    def merged(self, batch: DeltaBatch, compressed: bool) -> bytes:
        """The frame of a merged catch-up batch (see SnapshotCache.catch_up_frame):
        a DELTA, or a PROGRESS when nothing changed net; zstd-compressed if
        `compressed` and it has updates."""
        digest = format_digest(batch.digest)
        if not batch.updates:
            return self._codec.encode(Progress(batch.prev_revision, batch.revision, digest))
        delta = Delta(batch.prev_revision, batch.revision, list(batch.updates), digest)
        return self._codec.encode(delta, compress=compressed)

    def snapshot(self, snap: Snapshot, compressed: bool) -> list[bytes]:
        """The frames of a full snapshot (chunks, then SNAPSHOT_END), zstd-compressed if
        `compressed`."""
        frames: list[bytes] = []
        chunk: list[tuple[str, bytes]] = []
        size = 0
        for key, entry in snap.entries.items():
            chunk.append((key, entry.value))
            size += len(key) + len(entry.value) + 8
            if size >= self._chunk_bytes:
                frames.append(self._chunk(snap.revision, chunk, compressed))
                chunk, size = [], 0
        if chunk:
            frames.append(self._chunk(snap.revision, chunk, compressed))
        end = SnapshotEnd(snap.revision, len(snap), format_digest(snap.digest))
        frames.append(self._codec.encode(end))
        self.stats.snapshot_wire_bytes += sum(len(f) for f in frames)
        return frames

    def _chunk(self, revision: int, entries: list[tuple[str, bytes]], compressed: bool) -> bytes:
        frame, raw = self._codec.encode_sized(SnapshotChunk(revision, entries), compress=compressed)
        self.stats.snapshot_raw_bytes += raw
        return frame
