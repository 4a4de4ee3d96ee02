"""A thin layer over etcd3aio: paged prefix lists and a single raw watch stream.

We deliberately do not use etcd3aio's WatchService: after a broken stream it
resumes on its own from the last header revision it saw, which can skip
events we never received.  Here a broken stream simply ends with an error and
the syncer re-watches from the revision it has itself applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from typha.datastore.etcd_api import (
    AuthService,
    Channel,
    ChannelSpec,
    KVService,
    LeaseService,
    RpcError,
    SortOrder,
    SortTarget,
    WatchCreateRequest,
    WatchRequest,
    WatchStub,
    describe,
    open_channel,
    prefix_range_end,
)
from typha.errors import DatastoreError

EVENT_DELETE = 1


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key and its value as read from etcd, with the revision it was last modified at."""

    key: bytes
    value: bytes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event: a put or a delete of `key`, made at `mod_revision`."""

    deleted: bool
    key: bytes
    value: bytes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """One watch response: events (possibly none) and the header revision."""

    header_revision: int
    events: list[WatchEvent]
    compact_revision: int = 0
    created: bool = False
    canceled: bool = False
    cancel_reason: str = ""


@dataclass(frozen=True, slots=True)
class EtcdOptions:
    """How to reach etcd: endpoints, TLS material (PEM bytes), credentials."""

    endpoints: tuple[str, ...]
    ca_cert: bytes | None = None
    cert_chain: bytes | None = None
    cert_key: bytes | None = None
    server_name: str | None = None
    username: str = ""
    password: str = ""
    timeout: float = 10.0


TXN_MAX_OPS = 128  # etcd's default --max-txn-ops
MAX_MESSAGE = 512 * 1024 * 1024
# HTTP/2 pings on the channel while a call (the watch) is open: a frozen or
# partitioned etcd fails the call within KEEPALIVE_TIME + KEEPALIVE_TIMEOUT
# instead of never.  etcd refuses pings more often than every 5 s
# (--grpc-keepalive-min-time) and pings without an open call.
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000
CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.lb_policy_name", "round_robin"),
    # gRPC shares subchannels between channels by default, so a fresh
    # channel would inherit a dead member's reconnect backoff; our own retry
    # loop is the backoff that counts.
    ("grpc.use_local_subchannel_pool", 1),
    # etcd sends a watch's backlog (a replay, a catch-up after a pause) in
    # large responses; gRPC's default 4 MiB limit would break the stream on
    # every retry.
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
)


class _RequestStream:
    """The requests of one watch, as the async iterator gRPC reads from its
    own task.  A plain iterator, not an async generator: gRPC's reader task
    may be cancelled mid-`get`, and finalising a suspended async generator
    then logs "aclose(): asynchronous generator is already running".
    `close()` ends the iteration, so that task finishes instead of being
    left pending ("Task was destroyed but it is pending")."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, request: Any) -> None:
        self._queue.put_nowait(request)

    def close(self) -> None:
        self._queue.put_nowait(None)

    def __aiter__(self) -> _RequestStream:
        return self

    async def __anext__(self) -> Any:
        request = await self._queue.get()
        if request is None:
            raise StopAsyncIteration
        return request


class WatchStream:
    """One open watch: iterate it for WatchBatches; `request_progress()` asks
    etcd for a progress response, which etcd sends only once every event up
    to the revision it names has been sent on this stream."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...], create: Any) -> None:
        self._requests = _RequestStream()
        self._requests.put(WatchRequest(create_request=create))
        self._call = stub.Watch(self._requests, metadata=metadata or None)

    def request_progress(self) -> None:
        """Ask etcd for a progress notification on this watch."""
        self._requests.put(WatchRequest(progress_request={}))

    def cancel(self) -> None:
        """End the watch stream (idempotent)."""
        self._requests.close()
        self._call.cancel()

    async def __aiter__(self) -> AsyncIterator[WatchBatch]:
        try:
            async for resp in self._call:
                yield WatchBatch(
                    header_revision=resp.header.revision,
                    events=[
                        WatchEvent(
                            ev.type == EVENT_DELETE, ev.kv.key, ev.kv.value, ev.kv.mod_revision
                        )
                        for ev in resp.events
                    ],
                    compact_revision=resp.compact_revision,
                    created=resp.created,
                    canceled=resp.canceled,
                    cancel_reason=resp.cancel_reason,
                )
        except RpcError as exc:
            raise DatastoreError(f"watch stream broke: {describe(exc)}") from exc
        finally:
            self.cancel()
        raise DatastoreError("watch stream ended")


class EtcdConnection:
    """One gRPC channel to an etcd cluster.  Every method raises
    DatastoreError (never a gRPC exception) when etcd cannot answer.
    With credentials, call `authenticate()` before anything else."""

    def __init__(self, endpoints: Sequence[str] | EtcdOptions, *, timeout: float = 10.0) -> None:
        opts = (
            endpoints
            if isinstance(endpoints, EtcdOptions)
            else EtcdOptions(tuple(endpoints), timeout=timeout)
        )
        self.options = opts
        self._channel: Channel = open_channel(
            ChannelSpec(
                opts.endpoints,
                options=CHANNEL_OPTIONS,
                ca_cert=opts.ca_cert,
                cert_chain=opts.cert_chain,
                cert_key=opts.cert_key,
                server_name=opts.server_name,
            )
        )
        self._kv = KVService(self._channel, max_attempts=1)
        self._lease = LeaseService(self._channel, max_attempts=1)
        self._watch_stub: Any = WatchStub(self._channel)
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._timeout = opts.timeout

    async def authenticate(self) -> None:
        """Exchange the username and password for a token (no-op without them)."""
        if not self.options.username:
            return
        auth = AuthService(self._channel, max_attempts=1)
        try:
            resp = await auth.authenticate(
                self.options.username, self.options.password, timeout=self._timeout
            )
        except Exception as exc:
            raise DatastoreError(f"etcd authentication failed: {describe(exc)}") from exc
        self._kv.set_token(resp.token)
        self._lease.set_token(resp.token)
        self._metadata = (("token", resp.token),)

    async def enable_auth(self, root_user: str, password: str) -> None:
        """Turn on etcd's authentication with `root_user` (created here) as
        its root user.  For tools and tests, on an etcd without auth."""
        auth = AuthService(self._channel, max_attempts=1)
        try:
            await auth.user_add(root_user, password, timeout=self._timeout)
            await auth.user_grant_role(root_user, "root", timeout=self._timeout)
            await auth.auth_enable(timeout=self._timeout)
        except Exception as exc:
            raise DatastoreError(f"enabling etcd auth failed: {describe(exc)}") from exc

    async def close(self) -> None:
        """Close the channel; the connection cannot be used afterwards."""
        await self._channel.close()

    async def put_many(self, items: Sequence[tuple[str, bytes | None]]) -> int:
        """Puts (value) and deletes (None) in transactions of at most
        TXN_MAX_OPS; returns the last revision.  For tools and tests."""
        revision = 0
        for start in range(0, len(items), TXN_MAX_OPS):
            ops = [
                KVService.txn_op_put(k, v) if v is not None else KVService.txn_op_delete(k)
                for k, v in items[start : start + TXN_MAX_OPS]
            ]
            try:
                resp = await self._kv.txn([], ops, timeout=self._timeout)
            except Exception as exc:
                raise DatastoreError(f"txn failed: {describe(exc)}") from exc
            revision = int(resp.header.revision)
        return revision

    async def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; returns its id."""
        try:
            resp = await self._lease.grant(ttl, timeout=self._timeout)
        except Exception as exc:
            raise DatastoreError(f"lease grant failed: {describe(exc)}") from exc
        return int(resp.ID)

    async def revoke(self, lease: int) -> None:
        """Revoke a lease (its keys disappear)."""
        try:
            await self._lease.revoke(lease, timeout=self._timeout)
        except Exception as exc:
            raise DatastoreError(f"lease revoke failed: {describe(exc)}") from exc

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Write one key; returns the new etcd revision.  The server writes
        only its own registration (outside the served prefix); tools and
        tests write through this too."""
        try:
            resp = await self._kv.put(key, value, lease=lease, timeout=self._timeout)
        except Exception as exc:
            raise DatastoreError(f"put failed: {describe(exc)}") from exc
        return int(resp.header.revision)

    async def delete(self, key: str) -> int:
        """Delete one key; returns the etcd revision after the delete."""
        try:
            resp = await self._kv.delete(key, timeout=self._timeout)
        except Exception as exc:
            raise DatastoreError(f"delete failed: {describe(exc)}") from exc
        return int(resp.header.revision)

    async def count_prefix(self, prefix: str) -> int:
        """How many keys lie under `prefix`."""
        key = prefix.encode()
        try:
            resp = await self._kv.get(
                key, prefix_range_end(key), count_only=True, timeout=self._timeout
            )
        except Exception as exc:
            raise DatastoreError(f"count failed: {describe(exc)}") from exc
        return int(resp.count)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix`; returns how many were deleted."""
        key = prefix.encode()
        try:
            resp = await self._kv.delete(key, prefix_range_end(key), timeout=self._timeout)
        except Exception as exc:
            raise DatastoreError(f"delete failed: {describe(exc)}") from exc
        return int(resp.deleted)

    async def compact(self, revision: int) -> None:
        """Compact etcd's history up to `revision`."""
        try:
            await self._kv.compact(revision, timeout=self._timeout)
        except Exception as exc:
            raise DatastoreError(f"compact failed: {describe(exc)}") from exc

    async def list_page(
        self, start: bytes, end: bytes, *, limit: int, revision: int
    ) -> tuple[int, list[KeyValue], bool]:
        """One page of [start, end) sorted by key at `revision` (0 = latest).
        Returns (header revision, items, more)."""
        try:
            resp = await self._kv.get(
                start,
                end,
                revision=revision,
                limit=limit,
                sort_order=SortOrder.ASCEND,
                sort_target=SortTarget.KEY,
                timeout=self._timeout,
            )
        except Exception as exc:
            raise DatastoreError(f"list failed: {describe(exc)}") from exc
        items = [KeyValue(kv.key, kv.value, kv.mod_revision) for kv in resp.kvs]
        return resp.header.revision, items, bool(resp.more)

    async def iter_prefix(
        self, prefix: str, *, page_size: int, revision: int = 0
    ) -> AsyncIterator[tuple[int, list[KeyValue]]]:
        """Every key under `prefix`, page by page, all read at one revision
        (0: the latest, fixed by the first page): yields (revision, page).
        Consuming pages as they come keeps only one page of raw values in
        memory at a time."""
        start = prefix.encode()
        end = prefix_range_end(start)
        while True:
            rev, page, more = await self.list_page(start, end, limit=page_size, revision=revision)
            if revision == 0:
                revision = rev
            yield revision, page
            if not more or not page:
                return
            start = page[-1].key + b"\0"

    async def list_prefix(
        self, prefix: str, *, page_size: int, revision: int = 0
    ) -> tuple[int, list[KeyValue], int]:
        """Every key under `prefix`, all pages read at one revision.
        Returns (revision, items, pages)."""
        items: list[KeyValue] = []
        pages = 0
        final = revision
        async for at, page in self.iter_prefix(prefix, page_size=page_size, revision=revision):
            final = at
            pages += 1
            items.extend(page)
        return final, items, pages

    def watch(self, prefix: str, start_revision: int) -> WatchStream:
        """One watch stream on `prefix` from `start_revision`, with progress
        notifications.  Iterating it ends by raising DatastoreError when the
        stream breaks."""
        key = prefix.encode()
        create = WatchCreateRequest(
            key=key,
            range_end=prefix_range_end(key),
            start_revision=start_revision,
            progress_notify=True,
        )
        return WatchStream(self._watch_stub, self._metadata, create)
