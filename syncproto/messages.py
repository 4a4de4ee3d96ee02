"""Messages: typed views of frame bodies, with strict decoding.

Every decoder checks the shape of what it is given and raises
MalformedMessage (never KeyError, TypeError or a msgpack exception), because
whatever arrives here came from a peer we do not trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import zstandard

from syncproto.errors import HandshakeError, MalformedMessage
from syncproto.frames import FLAG_ZSTD, Frame, MsgType, encode_frame
from syncproto.vocabulary import DatastoreStatus, SyncMode

PROTOCOL_VERSION = 1
CAP_ZSTD = "zstd"
CAP_RESUME = "resume"
CAP_DATASTORE_STATUS = "datastore_status"
CAP_APPLIED = "applied"
# Sent by a leaf replica syncing from this one: it has no dataplane, so it is
# no agent for convergence (it never reports APPLIED).
CAP_REPLICA = "replica"


Update = tuple[str, bytes | None]

_packer_opts: dict[str, Any] = {"use_bin_type": True}


def pack(obj: Any) -> bytes:
    """msgpack-encode `obj` (binary strings as bin)."""
    return msgpack.packb(obj, **_packer_opts)  # type: ignore[no-any-return]


def unpack(body: bytes) -> Any:
    """msgpack-decode a body; raises MalformedMessage on anything invalid."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedMessage(f"body is not valid msgpack: {exc}") from None


def _map(obj: Any, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedMessage(f"{what}: body must be a map, got {type(obj).__name__}")
    return obj


def _field(d: dict[str, Any], name: str, typ: type | tuple[type, ...], what: str) -> Any:
    if name not in d:
        raise MalformedMessage(f"{what}: missing field {name!r}")
    v = d[name]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise MalformedMessage(f"{what}: field {name!r} has type {type(v).__name__}")
    return v


def _optional_count(d: dict[str, Any], name: str, what: str) -> int:
    """A field that older peers omit (0 then): a non-negative int below 2**32."""
    if name not in d:
        return 0
    v = _field(d, name, int, what)
    if not 0 <= v < 1 << 32:
        raise MalformedMessage(f"{what}: field {name!r} out of range")
    return int(v)


def _digest_field(d: dict[str, Any], what: str) -> str:
    v = _field(d, "digest", str, what)
    if len(v) != 32 or any(c not in "0123456789abcdef" for c in v):
        raise MalformedMessage(f"{what}: digest must be 32 lowercase hex digits")
    return str(v)


def _updates(raw: Any, what: str, *, allow_delete: bool) -> list[Update]:
    if not isinstance(raw, list):
        raise MalformedMessage(f"{what}: updates must be a list")
    out: list[Update] = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 2:
            raise MalformedMessage(f"{what}: each update must be [key, value]")
        key, value = item
        if not isinstance(key, str):
            raise MalformedMessage(f"{what}: key must be a string")
        if not (isinstance(value, bytes) or (allow_delete and value is None)):
            raise MalformedMessage(f"{what}: value for {key!r} must be bytes")
        out.append((key, value))
    return out


def _sync_mode(raw: str) -> SyncMode:
    try:
        return SyncMode(raw)
    except ValueError:
        raise HandshakeError(f"unknown sync mode {raw[:40]!r}") from None


@dataclass(frozen=True, slots=True)
class ClientHello:
    """CLIENT_HELLO: who the client is, what it supports, and the revision and digest it holds (0
    and "" for none)."""

    node: str
    caps: frozenset[str] = frozenset()
    version: int = PROTOCOL_VERSION
    revision: int = 0
    digest: str = ""
    client: str = ""


@dataclass(frozen=True, slots=True)
class ServerHello:
    """SERVER_HELLO: the server's name and capabilities, whether a snapshot or a resume
    follows, and (with CAP_APPLIED) how often the client should report, at most."""

    server: str
    caps: frozenset[str] = frozenset()
    version: int = PROTOCOL_VERSION
    sync: SyncMode = SyncMode.SNAPSHOT
    max_frame: int = 0
    applied_interval_ms: int = 0  # 0: the client's own default


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """SNAPSHOT_CHUNK: some of the entries of the snapshot at `revision`."""

    revision: int
    entries: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class SnapshotEnd:
    """SNAPSHOT_END: the snapshot at `revision` is complete, with its key count and digest."""

    revision: int
    keys: int
    digest: str


@dataclass(frozen=True, slots=True)
class Delta:
    """DELTA: the changes from `prev_revision` to `revision` (whole values; None deletes) and the
    digest after them."""

    prev_revision: int
    revision: int
    updates: list[Update]
    digest: str


@dataclass(frozen=True, slots=True)
class Progress:
    """PROGRESS: nothing under the prefix changed from `prev_revision` to `revision`."""

    prev_revision: int
    revision: int
    digest: str


@dataclass(frozen=True, slots=True)
class Ping:
    """PING: the peer must answer with a PONG carrying `token`."""

    token: int


@dataclass(frozen=True, slots=True)
class Pong:
    """PONG: the answer to a PING."""

    token: int


@dataclass(frozen=True, slots=True)
class Goodbye:
    """GOODBYE: the sender is closing; `reason` is a CloseReason value (or one we do not know)."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DatastoreStatusMsg:
    """The replica's standing with the datastore; sent after the server
    hello and on every change, to clients that advertised the capability."""

    status: DatastoreStatus


@dataclass(frozen=True, slots=True)
class Applied:
    """APPLIED (client to server): the client's dataplane has applied every
    change up to `revision`.  Sent only to servers that advertised
    CAP_APPLIED, at most once per reporting interval."""

    revision: int


@dataclass(frozen=True, slots=True)
class AppliedInterval:
    """APPLIED_INTERVAL (server to client, with CAP_APPLIED): from now on send
    APPLIED at most every `interval_ms` (the server's agent count changed)."""

    interval_ms: int


Message = (
    ClientHello
    | ServerHello
    | SnapshotChunk
    | SnapshotEnd
    | Delta
    | Progress
    | Ping
    | Pong
    | Goodbye
    | DatastoreStatusMsg
    | Applied
    | AppliedInterval
)


@dataclass(slots=True)
class Codec:
    """Encodes and decodes message bodies.  Holds the zstd contexts (which are
    not thread-safe: one Codec per thread) and the decompression bound.

    The contexts are created on first use: every connection has a Codec, and
    most never compress or decompress anything (snapshots are compressed once,
    by the shared encoder), so eager contexts would cost memory per connection.
    """

    max_frame: int
    # Servers refuse compressed frames from clients: a client never needs to
    # send one, and a few hundred bytes could expand to max_frame each.
    accept_compressed: bool = True
    _cctx: zstandard.ZstdCompressor | None = None
    _dctx: zstandard.ZstdDecompressor | None = None

    # -- encoding ----------------------------------------------------------

    def encode(self, msg: Message, *, compress: bool = False) -> bytes:
        """One message as a frame; `compress` applies zstd to the body (only
        snapshot chunks are sent compressed, and only to peers that accept it)."""
        return self.encode_sized(msg, compress=compress)[0]

    def encode_sized(self, msg: Message, *, compress: bool = False) -> tuple[bytes, int]:
        """The frame, and the body's size before compression."""
        mtype, revision, body = _to_wire(msg)
        raw_size = len(body)
        flags = 0
        if compress:
            if self._cctx is None:
                self._cctx = zstandard.ZstdCompressor(level=3)
            body = self._cctx.compress(body)
            flags = FLAG_ZSTD
        return encode_frame(mtype, body, revision=revision, flags=flags), raw_size

    # -- decoding ----------------------------------------------------------

    def decode(self, frame: Frame) -> Message:
        """The message in a frame; raises MalformedMessage for anything invalid."""
        body = frame.body
        if frame.flags & FLAG_ZSTD:
            if not self.accept_compressed:
                raise MalformedMessage(f"compressed {frame.type.name} not accepted from this peer")
            if self._dctx is None:
                self._dctx = zstandard.ZstdDecompressor()
            try:
                body = self._dctx.decompress(body, max_output_size=self.max_frame)
            except zstandard.ZstdError as exc:
                raise MalformedMessage(f"bad zstd body: {exc}") from None
            if len(body) > self.max_frame:
                raise MalformedMessage("decompressed body exceeds the frame limit")
        return _from_wire(frame.type, frame.revision, unpack(body))


def _to_wire(msg: Message) -> tuple[MsgType, int, bytes]:
    match msg:
        case ClientHello():
            return (
                MsgType.CLIENT_HELLO,
                0,
                pack(
                    {
                        "version": msg.version,
                        "caps": sorted(msg.caps),
                        "node": msg.node,
                        "revision": msg.revision,
                        "digest": msg.digest,
                        "client": msg.client,
                    }
                ),
            )
        case ServerHello():
            return (
                MsgType.SERVER_HELLO,
                0,
                pack(
                    {
                        "version": msg.version,
                        "caps": sorted(msg.caps),
                        "server": msg.server,
                        "sync": msg.sync,
                        "max_frame": msg.max_frame,
                        "applied_interval_ms": msg.applied_interval_ms,
                    }
                ),
            )
        case SnapshotChunk():
            return MsgType.SNAPSHOT_CHUNK, msg.revision, pack({"entries": msg.entries})
        case SnapshotEnd():
            return (
                MsgType.SNAPSHOT_END,
                msg.revision,
                pack({"keys": msg.keys, "digest": msg.digest}),
            )
        case Delta():
            return (
                MsgType.DELTA,
                msg.revision,
                pack(
                    {
                        "prev": msg.prev_revision,
                        "updates": msg.updates,
                        "digest": msg.digest,
                    }
                ),
            )
        case Progress():
            return (
                MsgType.PROGRESS,
                msg.revision,
                pack({"prev": msg.prev_revision, "digest": msg.digest}),
            )
        case Ping():
            return MsgType.PING, 0, pack({"token": msg.token})
        case Pong():
            return MsgType.PONG, 0, pack({"token": msg.token})
        case Goodbye():
            return MsgType.GOODBYE, 0, pack({"reason": msg.reason, "detail": msg.detail})
        case DatastoreStatusMsg():
            return MsgType.DATASTORE_STATUS, 0, pack({"status": msg.status.value})
        case Applied():
            # The revision travels in the header; the body is an empty map.
            return MsgType.APPLIED, msg.revision, pack({})
        case AppliedInterval():
            return MsgType.APPLIED_INTERVAL, 0, pack({"interval_ms": msg.interval_ms})
    raise TypeError(f"not a message: {msg!r}")  # pragma: no cover


def _caps(d: dict[str, Any], what: str) -> frozenset[str]:
    raw = _field(d, "caps", list, what)
    if not all(isinstance(c, str) for c in raw):
        raise MalformedMessage(f"{what}: caps must be strings")
    return frozenset(raw)


def _from_wire(mtype: MsgType, revision: int, obj: Any) -> Message:
    what = mtype.name
    d = _map(obj, what)
    if mtype is MsgType.CLIENT_HELLO:
        return ClientHello(
            version=_field(d, "version", int, what),
            caps=_caps(d, what),
            node=_field(d, "node", str, what),
            revision=_field(d, "revision", int, what),
            digest=str(d.get("digest") or ""),
            client=str(d.get("client") or ""),
        )
    if mtype is MsgType.SERVER_HELLO:
        return ServerHello(
            version=_field(d, "version", int, what),
            caps=_caps(d, what),
            server=_field(d, "server", str, what),
            sync=_sync_mode(_field(d, "sync", str, what)),
            max_frame=_field(d, "max_frame", int, what),
            applied_interval_ms=_optional_count(d, "applied_interval_ms", what),
        )
    if mtype is MsgType.SNAPSHOT_CHUNK:
        entries = _updates(d.get("entries"), what, allow_delete=False)
        return SnapshotChunk(revision, entries)  # type: ignore[arg-type]
    if mtype is MsgType.SNAPSHOT_END:
        return SnapshotEnd(revision, _field(d, "keys", int, what), _digest_field(d, what))
    if mtype is MsgType.DELTA:
        return Delta(
            _field(d, "prev", int, what),
            revision,
            _updates(d.get("updates"), what, allow_delete=True),
            _digest_field(d, what),
        )
    if mtype is MsgType.PROGRESS:
        return Progress(_field(d, "prev", int, what), revision, _digest_field(d, what))
    if mtype is MsgType.PING:
        return Ping(_field(d, "token", int, what))
    if mtype is MsgType.PONG:
        return Pong(_field(d, "token", int, what))
    if mtype is MsgType.APPLIED:
        return Applied(revision)
    if mtype is MsgType.APPLIED_INTERVAL:
        interval = _optional_count(d, "interval_ms", what)
        if interval == 0:
            raise MalformedMessage(f"{what}: interval_ms must be a positive integer")
        return AppliedInterval(interval)
    if mtype is MsgType.DATASTORE_STATUS:
        raw = _field(d, "status", str, what)
        try:
            return DatastoreStatusMsg(DatastoreStatus(raw))
        except ValueError:
            raise MalformedMessage(f"{what}: unknown status {raw[:40]!r}") from None
    return Goodbye(_field(d, "reason", str, what), str(d.get("detail") or ""))
