"""The agent's local replica of the synced state, with its running digest.

Pure: no I/O.  Every mutating method returns the changes it made, `(key,
value)` for a put and `(key, None)` for a delete, so the agent can apply
exactly those and nothing more.  The changes decode each value as it is
read (`Changes`): a snapshot's changes are every key, and holding them all
decoded at once would cost several times the state.

Values are kept as the canonical JSON bytes the server sent, and decoded
when read: a decoded Python dict costs several times its JSON, and at
200,000 keys that difference is most of an agent's memory.  A replica built
with `keep_values=False` keeps only each key's hash: all that verifying the
digest and turning a later full snapshot into changes need.  The node agent
builds it so (its calculation holds what it uses of each value, parsed), and
a second copy of the state is then neither held nor, during a reconnect's
snapshot, doubled.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import orjson

from snapshot import RunningDigest, entry_hash_canonical, format_digest
from syncclient.errors import BadValue, DigestMismatch, ValuesNotKept

Change = tuple[str, Any | None]


class Changes(Sequence[Change]):
    """`(key, value or None)` pairs over canonical JSON bytes, each value
    decoded when read (afresh at each read: callers must not rely on
    identity).  The bytes were checked to decode to objects when the
    replica took them."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[str, bytes | None]]) -> None:
        self._raw = raw

    def __len__(self) -> int:
        return len(self._raw)

    def __iter__(self) -> Iterator[Change]:
        for key, raw in self._raw:
            yield key, None if raw is None else orjson.loads(raw)

    @overload
    def __getitem__(self, index: int) -> Change: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Change]: ...

    def __getitem__(self, index: int | slice) -> Change | Sequence[Change]:
        if isinstance(index, slice):
            return Changes(self._raw[index])
        key, raw = self._raw[index]
        return key, None if raw is None else orjson.loads(raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


class JsonView(Mapping[str, Any]):
    """A read-only mapping over canonical JSON bytes, decoding on access
    (each access decodes afresh: callers must not rely on identity)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[str, bytes]) -> None:
        self._raw = raw

    def __getitem__(self, key: str) -> Any:
        return orjson.loads(self._raw[key])

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class Replica:
    """The agent's copy of the served state, with its running digest.  Mutated only through
    snapshots, deltas and progress, each verified against the server's digest before anything
    is committed."""

    def __init__(self, *, keep_values: bool = True) -> None:
        self.keep_values = keep_values
        # key -> canonical JSON; stays empty unless keep_values.
        self.values: dict[str, bytes] = {}
        self._hashes: dict[str, int] = {}
        self._digest = RunningDigest()
        self.revision = 0
        self._staging: dict[str, bytes] | None = None

    @property
    def digest(self) -> str:
        """The digest of what we hold (32 hex digits)."""
        return self._digest.hex()

    @property
    def state(self) -> Mapping[str, Any]:
        """Read-only key -> JSON object view (decoded on each access).
        Raises ValuesNotKept on a replica that keeps only hashes."""
        if not self.keep_values:
            raise ValuesNotKept("this replica keeps each key's hash, not its value")
        return JsonView(self.values)

    def __len__(self) -> int:
        """The number of keys held."""
        return len(self._hashes)

    # -- full snapshot: mark and sweep ---------------------------------------

    def begin_snapshot(self) -> None:
        """A full snapshot starts: stage its chunks apart from the live state."""
        self._staging = {}

    def abandon_snapshot(self) -> None:
        """Drop a snapshot that will not be completed (frees its memory)."""
        self._staging = None

    def add_chunk(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """Stage one snapshot chunk."""
        if self._staging is None:
            self._staging = {}
        self._staging.update(entries)

    def end_snapshot(self, revision: int, digest: str) -> Changes:
        """Make the state equal to the snapshot: put what is new or changed,
        delete every key the snapshot lacked.  Verified before anything is
        changed: on DigestMismatch or BadValue the replica is as it was."""
        staging = self._staging or {}
        self._staging = None
        updates: list[tuple[str, bytes | None]] = [
            (k, None) for k in self._hashes if k not in staging
        ]
        updates.extend(staging.items())
        # Start from the sum of the per-key hashes, so a full snapshot repairs
        # even a running digest that had drifted from our values.
        return self._apply(revision, updates, digest, base=sum(self._hashes.values()))

    # -- streaming -------------------------------------------------------------

    def apply_delta(
        self, revision: int, updates: Iterable[tuple[str, bytes | None]], digest: str
    ) -> Changes:
        """Apply one delta and return what changed.  Verified before anything
        is changed: on DigestMismatch or BadValue the replica (and so whatever
        the caller derived from the changes it was told) is as it was."""
        return self._apply(revision, updates, digest, base=self._digest.value)

    def _apply(
        self,
        revision: int,
        updates: Iterable[tuple[str, bytes | None]],
        digest: str,
        *,
        base: int,
    ) -> Changes:
        # Plan (hash, decode, sum) first; commit only what verified.  A key
        # named twice in one batch ends with its last value.
        planned: dict[str, bytes | None] = dict(updates)
        total = base
        changes: list[tuple[str, bytes | None]] = []
        commits: list[tuple[str, bytes | None, int]] = []
        for key, plan in planned.items():
            old = self._hashes.get(key)
            if plan is None:
                if old is not None:
                    total -= old
                    commits.append((key, None, 0))
                    changes.append((key, None))
            else:
                h = entry_hash_canonical(key, plan)
                if old != h:
                    total += h - (old or 0)
                    commits.append((key, plan, h))
                    _check(key, plan)
                    changes.append((key, plan))
        ours = format_digest(total)
        if ours != digest:
            raise DigestMismatch(revision, ours, digest)
        values = self.values if self.keep_values else None
        for key, raw, h in commits:
            if raw is None:
                del self._hashes[key]
                if values is not None:
                    del values[key]
            else:
                self._hashes[key] = h
                if values is not None:
                    values[key] = raw
        self._digest = RunningDigest(total)
        self.revision = revision
        return Changes(changes)

    def apply_progress(self, revision: int, digest: str) -> None:
        """Advance the revision (nothing changed); raises DigestMismatch,
        leaving the revision as it was, if our state does not match."""
        ours = self._digest.hex()
        if ours != digest:
            raise DigestMismatch(revision, ours, digest)
        self.revision = revision

    def forget_revision(self) -> None:
        """Keep the values but ask for a full snapshot next time."""
        self.revision = 0


def _check(key: str, raw: bytes) -> None:
    """BadValue unless `raw` is a JSON object.  Decoded and dropped: the
    value is decoded again when the changes are read, so a snapshot's
    values are never all decoded at once."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadValue(f"value of {key!r} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadValue(f"value of {key!r} is not a JSON object")
