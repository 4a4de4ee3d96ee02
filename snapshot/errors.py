"""Errors raised by the snapshot package.

SnapshotError                 base of everything below
├── RevisionRegression        a batch or progress tried to move the revision backwards
│                             (local misuse: the syncer fed the cache out of order)
└── HistoryUnavailable        a caller asked for batches the bounded history no longer holds
"""


class SnapshotError(Exception):
    """Base class for snapshot cache errors."""


class RevisionRegression(SnapshotError):
    """The caller tried to apply a revision older than the cache's current one."""


class HistoryUnavailable(SnapshotError):
    """The requested position has been trimmed from the bounded history."""
