"""Immutable, versioned state: one Snapshot per batch plus the DeltaBatch chain.

Values are stored as canonical JSON bytes (see snapshot.digest) so that the
bytes that go on the wire, the bytes that are hashed, and the bytes a client
verifies are the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import immutables

# (key, canonical JSON bytes) for a put, (key, None) for a delete.
Update = tuple[str, bytes | None]


@dataclass(frozen=True, slots=True)
class Entry:
    """One key's value in a snapshot: the canonical JSON bytes and the entry's
    digest hash."""

    value: bytes
    hash: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole state at `revision`, after batch number `seq`.

    `entries` is a HAMT, so consecutive snapshots share structure and holding
    one per batch costs memory proportional to the change, not the state.
    """

    revision: int
    seq: int
    entries: immutables.Map[str, Entry]
    digest: int

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(slots=True, eq=False)
class DeltaBatch:
    """The changes that take the state from `prev_revision` to `revision`.

    An empty `updates` is a progress batch: the revision moved, nothing changed.
    `frame` holds the wire encoding, produced once by the cache's encoder and
    written unchanged to every client.
    """

    seq: int
    prev_revision: int
    revision: int
    updates: tuple[Update, ...]
    digest: int
    prev_digest: int = 0
    created: float = 0.0  # caller's clock, for age-bounded history
    frame: bytes = field(default=b"", repr=False)
