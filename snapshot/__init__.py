"""Versioned, immutable network state with a shared delta history.

Pure data structures: no sockets, no event loop.
"""

from snapshot.cache import CacheStats, SnapshotCache
from snapshot.digest import (
    RunningDigest,
    canonical_json,
    digest_of,
    entry_hash,
    entry_hash_canonical,
    format_digest,
    parse_digest,
)
from snapshot.errors import HistoryUnavailable, RevisionRegression, SnapshotError
from snapshot.state import DeltaBatch, Entry, Snapshot, Update

__all__ = [
    "CacheStats",
    "DeltaBatch",
    "Entry",
    "HistoryUnavailable",
    "RevisionRegression",
    "RunningDigest",
    "Snapshot",
    "SnapshotCache",
    "SnapshotError",
    "Update",
    "canonical_json",
    "digest_of",
    "entry_hash",
    "entry_hash_canonical",
    "format_digest",
    "parse_digest",
]
