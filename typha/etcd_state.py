"""Read the served state straight from etcd: what the digest *should* be.

Used by the demo's final check and by tests; the same validation applies as
in the syncer, so invalid values are left out here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from snapshot import entry_hash_canonical, format_digest
from typha.etcd_client import EtcdConnection
from typha.validation import InvalidValue, validate


@dataclass(frozen=True, slots=True)
class EtcdState:
    revision: int
    digest: str
    keys: int
    invalid: int


async def read_etcd_state(endpoints: Sequence[str], prefix: str = "/calico/") -> EtcdState:
    conn = EtcdConnection(endpoints)
    try:
        revision, items, _ = await conn.list_prefix(prefix, page_size=5000)
    finally:
        await conn.close()
    total = keys = invalid = 0
    for kv in items:
        try:
            key = kv.key.decode()
            v = validate(key, kv.value, prefix)
        except (InvalidValue, UnicodeDecodeError):
            invalid += 1
            continue
        total += entry_hash_canonical(key, v.canonical)
        keys += 1
    return EtcdState(revision, format_digest(total), keys, invalid)
