"""Reading the whole prefix: the admission of each value, and the paged list
at one revision, optionally in the past so that the watch replays history."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from calico_model.errors import InvalidValue
from calico_model.validation import admit
from runtime.ratelimit import RateLimitedLog
from typha.datastore.etcd_api import prefix_range_end
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.fold import Validate
from typha.errors import DatastoreError

log = logging.getLogger("typha.datastore.syncer")


class Admission:
    """Admits a raw key and value under `prefix`, or refuses it: counted by
    reason in `invalid` and logged (rate limited).  Call it as a `Validate`."""

    def __init__(self, prefix: str, invalid: Counter[str]) -> None:
        self._prefix = prefix
        self._invalid = invalid
        self._rl = RateLimitedLog(log)

    def __call__(self, raw_key: bytes, raw_value: bytes) -> tuple[str, bytes] | None:
        """The canonical (key, value), or None for a refused value."""
        try:
            return admit(raw_key, raw_value, self._prefix)
        except InvalidValue as exc:
            self._invalid[exc.reason] += 1
            self._rl.log(
                logging.WARNING,
                f"invalid:{exc.reason}",
                "ignoring invalid value at %s: %s",
                raw_key.decode(errors="replace")[:200],
                exc,
            )
            return None


@dataclass(frozen=True, slots=True)
class Listing:
    """One list of the prefix: its revision, the admitted values, the pages
    read, and (after a backfilled first list) the head revision the watch
    must replay up to before agents may be served (0: none)."""

    revision: int
    valid: dict[str, bytes]
    pages: int
    catch_up_to: int = 0


async def list_prefix(
    conn: EtcdConnection, prefix: str, validate: Validate, *, page_size: int, backfill: int
) -> Listing:
    """List `prefix` in pages of `page_size` keys.  With `backfill` > 0 (a
    first list), read that many revisions in the past while etcd still has
    them, so the watch replays the rest and a new replica starts with
    history: agents moving here resume instead of taking a snapshot.  Falls
    back to the head when that history is gone."""
    past, head = 0, 0
    if backfill > 0:
        start = prefix.encode()
        head, _, _ = await conn.list_page(start, prefix_range_end(start), limit=1, revision=0)
        past = max(1, head - backfill)
        if past >= head:
            past = head = 0
    try:
        return await _read(conn, prefix, validate, page_size, past, head)
    except DatastoreError as exc:
        if past == 0:
            raise
        log.info("no history to backfill from revision %d (%s)", past, exc)
        return await _read(conn, prefix, validate, page_size, 0, 0)


async def _read(
    conn: EtcdConnection, prefix: str, validate: Validate, page_size: int, at: int, head: int
) -> Listing:
    valid: dict[str, bytes] = {}
    pages = 0
    final = at
    async for revision, page in conn.iter_prefix(prefix, page_size=page_size, revision=at):
        final = revision
        pages += 1
        for kv in page:
            result = validate(kv.key, kv.value)
            if result is not None:
                valid[result[0]] = result[1]
    return Listing(final, valid, pages, catch_up_to=head)
