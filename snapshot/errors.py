"""Errors raised by the snapshot package, and the two roots every package's
errors derive from (this is the bottom layer: everyone can import it).

LocalMisuse                   root, in every package, of "the caller did something wrong"
RemoteError                   root, in every package, of "the other side (a peer, the
                              datastore, data it wrote) failed or misbehaved"

SnapshotError                 base of this package's errors
├── RevisionRegression        local misuse (also a LocalMisuse): a batch or progress tried
│                             to move the revision backwards (the syncer fed the cache out
│                             of order)
└── HistoryUnavailable        a caller asked for batches the bounded history no longer
                              holds: an expected outcome, answered with a full snapshot
"""


class LocalMisuse(Exception):
    """The caller (this process, its operator or its code) did something wrong."""


class RemoteError(Exception):
    """The other side (a peer, the datastore, or data it holds) failed or misbehaved."""


class SnapshotError(Exception):
    """Base class for snapshot cache errors."""


class RevisionRegression(SnapshotError, LocalMisuse):
    """The caller tried to apply a revision older than the cache's current one."""


class HistoryUnavailable(SnapshotError):
    """The requested position has been trimmed from the bounded history."""
