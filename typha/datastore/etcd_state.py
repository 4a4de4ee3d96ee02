"""Read the served state straight from etcd: what the cache *should* hold.

Used by the cache-vs-etcd check, the demo's final check and the tests.  The
same validation applies as in the syncer, so invalid values are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from calico_model.errors import InvalidValue
from calico_model.validation import admit
from snapshot import entry_hash_canonical, format_digest
from typha.datastore.etcd_client import EtcdConnection, EtcdOptions


@dataclass(frozen=True, slots=True)
class EtcdState:
    """The valid state straight from etcd: revision, key count and digest."""

    revision: int
    digest: str
    keys: int
    invalid: int


@dataclass(frozen=True, slots=True)
class EtcdEntries:
    """The valid entries straight from etcd at one revision, and how many were invalid."""

    revision: int
    entries: dict[str, bytes]  # key -> canonical JSON
    invalid: int

    @property
    def digest(self) -> int:
        """The state digest of the entries."""
        return sum(entry_hash_canonical(k, v) for k, v in self.entries.items()) % (1 << 128)


async def read_entries(
    conn: EtcdConnection, prefix: str, *, revision: int = 0, page_size: int = 5000
) -> EtcdEntries:
    """The valid entries under `prefix` at `revision` (0: the latest)."""
    revision, items, _ = await conn.list_prefix(prefix, page_size=page_size, revision=revision)
    entries: dict[str, bytes] = {}
    invalid = 0
    for kv in items:
        try:
            key, canonical = admit(kv.key, kv.value, prefix)
        except InvalidValue:
            invalid += 1
            continue
        entries[key] = canonical
    return EtcdEntries(revision, entries, invalid)


async def read_etcd_state(
    endpoints: Sequence[str] | EtcdOptions, prefix: str = "/calico/"
) -> EtcdState:
    """Read the served prefix straight from etcd, validated as the server would, and summarise
    it."""
    conn = EtcdConnection(endpoints)
    try:
        await conn.authenticate()
        got = await read_entries(conn, prefix)
    finally:
        await conn.close()
    return EtcdState(got.revision, format_digest(got.digest), len(got.entries), got.invalid)
