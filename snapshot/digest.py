"""The state digest: one number that server, agents and etcd readers agree on.

A fixed contract (docs/architecture.md): for every (key, value) in the synced view,
``h = blake2b(key + b"\\0" + canonical_json(value), digest_size=16)`` read as a
big-endian integer; the digest is the sum of ``h`` over the state mod 2**128,
written as 32 lowercase hex digits.  Because it is a sum, adding or removing
one entry costs O(1), so both ends maintain it incrementally.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from hashlib import blake2b
from typing import Any

import orjson

MODULUS = 1 << 128
ZERO_DIGEST = "0" * 32


def canonical_json(value: Any) -> bytes:
    """The canonical encoding the digest is defined over (sorted keys, orjson).

    The result is a copy of exactly its own length: orjson hands back its
    output buffer, which keeps at least 4 KiB (8 KiB for a typical 800-byte
    resource) however short the JSON, and the server stores these bytes for
    every key it holds."""
    return bytes(memoryview(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)))


def entry_hash_canonical(key: str, canonical: bytes) -> int:
    """Hash of one entry whose value is already in canonical JSON bytes."""
    return int.from_bytes(blake2b(key.encode() + b"\0" + canonical, digest_size=16).digest(), "big")


def entry_hash(key: str, value: Any) -> int:
    """Hash of one entry, value given as the decoded JSON object."""
    return entry_hash_canonical(key, canonical_json(value))


def format_digest(digest: int) -> str:
    """A digest as 32 lowercase hex digits."""
    return f"{digest % MODULUS:032x}"


def parse_digest(text: str) -> int:
    """Parse a 32-hex-digit digest; raises ValueError on anything else."""
    if len(text) != 32:
        raise ValueError(f"digest must be 32 hex digits, got {len(text)} characters")
    return int(text, 16)


def digest_of(state: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> str:
    """Digest of a whole state, computed from scratch (for checks, not hot paths)."""
    items = state.items() if isinstance(state, Mapping) else state
    total = 0
    for key, value in items:
        total += entry_hash(key, value)
    return format_digest(total)


class RunningDigest:
    """A digest maintained incrementally.  The caller must remove exactly the
    hash it added for a key before adding the key's new hash."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = value % MODULUS

    def add(self, h: int) -> None:
        """Add one entry's hash."""
        self.value = (self.value + h) % MODULUS

    def remove(self, h: int) -> None:
        """Remove one entry's hash."""
        self.value = (self.value - h) % MODULUS

    def hex(self) -> str:
        """The digest as 32 lowercase hex digits."""
        return format_digest(self.value)
