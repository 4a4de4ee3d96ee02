"""Encoders that turn snapshot/ structures into wire frames, once.

The SnapshotCache calls these; their output is shared by every connection.
"""

from __future__ import annotations

from snapshot import DeltaBatch, Snapshot, format_digest
from typha.protocol import Codec, Delta, Progress, SnapshotChunk, SnapshotEnd

# Raw (uncompressed) bytes of entries per snapshot chunk.  Small enough that a
# chunk compresses in well under a millisecond, large enough that per-frame
# overhead is noise.
CHUNK_BYTES = 256 * 1024


class FrameEncoder:
    def __init__(self, *, max_frame: int, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._codec = Codec(max_frame=max_frame)
        self._chunk_bytes = min(chunk_bytes, max_frame // 2)

    def batch(self, batch: DeltaBatch) -> bytes:
        digest = format_digest(batch.digest)
        if not batch.updates:
            return self._codec.encode(Progress(batch.prev_revision, batch.revision, digest))
        return self._codec.encode(
            Delta(batch.prev_revision, batch.revision, list(batch.updates), digest)
        )

    def snapshot(self, snap: Snapshot, compressed: bool) -> list[bytes]:
        frames: list[bytes] = []
        chunk: list[tuple[str, bytes]] = []
        size = 0
        for key, entry in snap.entries.items():
            chunk.append((key, entry.value))
            size += len(key) + len(entry.value) + 8
            if size >= self._chunk_bytes:
                frames.append(
                    self._codec.encode(SnapshotChunk(snap.revision, chunk), compress=compressed)
                )
                chunk, size = [], 0
        if chunk:
            frames.append(
                self._codec.encode(SnapshotChunk(snap.revision, chunk), compress=compressed)
            )
        frames.append(
            self._codec.encode(SnapshotEnd(snap.revision, len(snap), format_digest(snap.digest)))
        )
        return frames
