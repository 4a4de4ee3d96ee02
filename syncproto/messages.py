"""Messages: typed views of frame bodies, with strict decoding.

Every decoder checks the shape of what it is given and raises
MalformedMessage (never KeyError, TypeError or a msgpack exception), because
whatever arrives here came from a peer we do not trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any, ClassVar

import msgpack
import zstandard

from syncproto.errors import HandshakeError, MalformedMessage
from syncproto.frames import FLAG_ZSTD, Frame, encode_frame
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


class MsgType(IntEnum):
    """Message type numbers (the frame header's type byte); values never change."""

    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    SNAPSHOT_CHUNK = 3
    SNAPSHOT_END = 4
    DELTA = 5
    PROGRESS = 6
    PING = 7
    PONG = 8
    GOODBYE = 9
    DATASTORE_STATUS = 10
    APPLIED = 11
    APPLIED_INTERVAL = 12


class Sender(Enum):
    """Which side may send a message."""

    CLIENT = "client"
    SERVER = "server"
    EITHER = "either"


class Body:
    """A received body and the checks its fields get: every failure is a
    MalformedMessage naming the message and the field."""

    __slots__ = ("_d", "what")

    def __init__(self, obj: Any, what: str) -> None:
        if not isinstance(obj, dict):
            raise MalformedMessage(f"{what}: body must be a map, got {type(obj).__name__}")
        self._d: dict[str, Any] = obj
        self.what = what

    def field(self, name: str, typ: type | tuple[type, ...]) -> Any:
        """A required field of type `typ` (a bool is no int)."""
        if name not in self._d:
            raise MalformedMessage(f"{self.what}: missing field {name!r}")
        v = self._d[name]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise MalformedMessage(f"{self.what}: field {name!r} has type {type(v).__name__}")
        return v

    def integer(self, name: str) -> int:
        """A required integer."""
        return int(self.field(name, int))

    def text(self, name: str) -> str:
        """A required string."""
        return str(self.field(name, str))

    def optional_text(self, name: str) -> str:
        """A string older peers may omit ("" then)."""
        return str(self._d.get(name) or "")

    def count(self, name: str) -> int:
        """A field older peers omit (0 then): a non-negative int below 2**32."""
        if name not in self._d:
            return 0
        v = self.integer(name)
        if not 0 <= v < 1 << 32:
            raise MalformedMessage(f"{self.what}: field {name!r} out of range")
        return v

    def digest(self) -> str:
        """The state digest: 32 lowercase hex digits."""
        v = self.text("digest")
        if len(v) != 32 or any(c not in "0123456789abcdef" for c in v):
            raise MalformedMessage(f"{self.what}: digest must be 32 lowercase hex digits")
        return v

    def caps(self) -> frozenset[str]:
        """Capability names."""
        raw = self.field("caps", list)
        if not all(isinstance(c, str) for c in raw):
            raise MalformedMessage(f"{self.what}: caps must be strings")
        return frozenset(raw)

    def updates(self, name: str, *, allow_delete: bool) -> list[Update]:
        """[key, value] pairs; a None value (a delete) only if `allow_delete`."""
        raw = self._d.get(name)
        what = self.what
        if not isinstance(raw, list):
            raise MalformedMessage(f"{what}: {name} must be a list")
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


# Each message below declares, side by side: its type number (TYPE), who may
# send it (SENT_BY), the capability both sides must have agreed for it (CAP,
# None: always allowed), whether it belongs to the handshake (HANDSHAKE),
# its fields, `to_wire` (the header revision and the body map) and
# `from_wire` (the strict decoder).  Adding a message is one more class here
# and its number in MsgType; the codec and the connections' generic checks
# find it through MESSAGES.


@dataclass(frozen=True, slots=True)
class ClientHello:
    """CLIENT_HELLO: who the client is, what it supports, and the revision and digest it holds (0
    and "" for none)."""

    TYPE: ClassVar[MsgType] = MsgType.CLIENT_HELLO
    SENT_BY: ClassVar[Sender] = Sender.CLIENT
    CAP: ClassVar[str | None] = None
    HANDSHAKE: ClassVar[bool] = True

    node: str
    caps: frozenset[str] = frozenset()
    version: int = PROTOCOL_VERSION
    revision: int = 0
    digest: str = ""
    client: str = ""

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return 0, {
            "version": self.version,
            "caps": sorted(self.caps),
            "node": self.node,
            "revision": self.revision,
            "digest": self.digest,
            "client": self.client,
        }

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> ClientHello:
        """Decode; raises MalformedMessage."""
        return cls(
            version=body.integer("version"),
            caps=body.caps(),
            node=body.text("node"),
            revision=body.integer("revision"),
            digest=body.optional_text("digest"),
            client=body.optional_text("client"),
        )


@dataclass(frozen=True, slots=True)
class ServerHello:
    """SERVER_HELLO: the server's name and capabilities, whether a snapshot or a resume
    follows, and (with CAP_APPLIED) how often the client should report, at most."""

    TYPE: ClassVar[MsgType] = MsgType.SERVER_HELLO
    SENT_BY: ClassVar[Sender] = Sender.SERVER
    CAP: ClassVar[str | None] = None
    HANDSHAKE: ClassVar[bool] = True

    server: str
    caps: frozenset[str] = frozenset()
    version: int = PROTOCOL_VERSION
    sync: SyncMode = SyncMode.SNAPSHOT
    max_frame: int = 0
    applied_interval_ms: int = 0  # 0: the client's own default

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return 0, {
            "version": self.version,
            "caps": sorted(self.caps),
            "server": self.server,
            "sync": self.sync,
            "max_frame": self.max_frame,
            "applied_interval_ms": self.applied_interval_ms,
        }

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> ServerHello:
        """Decode; raises MalformedMessage (HandshakeError for an unknown sync mode)."""
        raw_sync = body.text("sync")
        try:
            sync = SyncMode(raw_sync)
        except ValueError:
            raise HandshakeError(f"unknown sync mode {raw_sync[:40]!r}") from None
        return cls(
            version=body.integer("version"),
            caps=body.caps(),
            server=body.text("server"),
            sync=sync,
            max_frame=body.integer("max_frame"),
            applied_interval_ms=body.count("applied_interval_ms"),
        )


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """SNAPSHOT_CHUNK: some of the entries of the snapshot at `revision`."""

    TYPE: ClassVar[MsgType] = MsgType.SNAPSHOT_CHUNK
    SENT_BY: ClassVar[Sender] = Sender.SERVER
    CAP: ClassVar[str | None] = None
    HANDSHAKE: ClassVar[bool] = False

    revision: int
    entries: list[tuple[str, bytes]]

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return self.revision, {"entries": self.entries}

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> SnapshotChunk:
        """Decode; raises MalformedMessage."""
        entries = body.updates("entries", allow_delete=False)
        return cls(revision, entries)  # type: ignore[arg-type]  # no None values: checked


@dataclass(frozen=True, slots=True)
class SnapshotEnd:
    """SNAPSHOT_END: the snapshot at `revision` is complete, with its key count and digest."""

    TYPE: ClassVar[MsgType] = MsgType.SNAPSHOT_END
    SENT_BY: ClassVar[Sender] = Sender.SERVER
    CAP: ClassVar[str | None] = None
    HANDSHAKE: ClassVar[bool] = False

    revision: int
    keys: int
    digest: str

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return self.revision, {"keys": self.keys, "digest": self.digest}

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> SnapshotEnd:
        """Decode; raises MalformedMessage."""
        return cls(revision, body.integer("keys"), body.digest())


@dataclass(frozen=True, slots=True)
class Delta:
    """DELTA: the changes from `prev_revision` to `revision` (whole values; None deletes) and the
    digest after them."""

    TYPE: ClassVar[MsgType] = MsgType.DELTA
    SENT_BY: ClassVar[Sender] = Sender.SERVER
    CAP: ClassVar[str | None] = None
    HANDSHAKE: ClassVar[bool] = False

    prev_revision: int
    revision: int
    updates: list[Update]
    digest: str

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return self.revision, {
            "prev": self.prev_revision,
            "updates": self.updates,
            "digest": self.digest,
        }

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> Delta:
        """Decode; raises MalformedMessage."""
        return cls(
            body.integer("prev"),
            revision,
            body.updates("updates", allow_delete=True),
            body.digest(),
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """PROGRESS: nothing under the prefix changed from `prev_revision` to `revision`."""

    TYPE: ClassVar[MsgType] = MsgType.PROGRESS
    SENT_BY: ClassVar[Sender] = Sender.SERVER
    CAP: ClassVar[str | None] = None
    HANDSHAKE: ClassVar[bool] = False

    prev_revision: int
    revision: int
    digest: str

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return self.revision, {"prev": self.prev_revision, "digest": self.digest}

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> Progress:
        """Decode; raises MalformedMessage."""
        return cls(body.integer("prev"), revision, body.digest())


@dataclass(frozen=True, slots=True)
class Ping:
    """PING: the peer must answer with a PONG carrying `token`."""

    TYPE: ClassVar[MsgType] = MsgType.PING
    SENT_BY: ClassVar[Sender] = Sender.EITHER
    CAP: ClassVar[str | None] = None
    HANDSHAKE: ClassVar[bool] = False

    token: int

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return 0, {"token": self.token}

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> Ping:
        """Decode; raises MalformedMessage."""
        return cls(body.integer("token"))


@dataclass(frozen=True, slots=True)
class Pong:
    """PONG: the answer to a PING."""

    TYPE: ClassVar[MsgType] = MsgType.PONG
    SENT_BY: ClassVar[Sender] = Sender.EITHER
    CAP: ClassVar[str | None] = None
    HANDSHAKE: ClassVar[bool] = False

    token: int

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return 0, {"token": self.token}

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> Pong:
        """Decode; raises MalformedMessage."""
        return cls(body.integer("token"))


@dataclass(frozen=True, slots=True)
class Goodbye:
    """GOODBYE: the sender is closing; `reason` is a CloseReason value (or one we do not know)."""

    TYPE: ClassVar[MsgType] = MsgType.GOODBYE
    SENT_BY: ClassVar[Sender] = Sender.EITHER
    CAP: ClassVar[str | None] = None
    HANDSHAKE: ClassVar[bool] = False

    reason: str
    detail: str = ""

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return 0, {"reason": self.reason, "detail": self.detail}

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> Goodbye:
        """Decode; raises MalformedMessage."""
        return cls(body.text("reason"), body.optional_text("detail"))


@dataclass(frozen=True, slots=True)
class DatastoreStatusMsg:
    """DATASTORE_STATUS: the replica's standing with the datastore; sent after the server
    hello and on every change, to clients that advertised the capability."""

    TYPE: ClassVar[MsgType] = MsgType.DATASTORE_STATUS
    SENT_BY: ClassVar[Sender] = Sender.SERVER
    CAP: ClassVar[str | None] = CAP_DATASTORE_STATUS
    HANDSHAKE: ClassVar[bool] = False

    status: DatastoreStatus

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return 0, {"status": self.status.value}

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> DatastoreStatusMsg:
        """Decode; raises MalformedMessage."""
        raw = body.text("status")
        try:
            return cls(DatastoreStatus(raw))
        except ValueError:
            raise MalformedMessage(f"{body.what}: unknown status {raw[:40]!r}") from None


@dataclass(frozen=True, slots=True)
class Applied:
    """APPLIED (client to server): the client's dataplane has applied every
    change up to `revision`.  Sent only to servers that advertised
    CAP_APPLIED, at most once per reporting interval."""

    TYPE: ClassVar[MsgType] = MsgType.APPLIED
    SENT_BY: ClassVar[Sender] = Sender.CLIENT
    CAP: ClassVar[str | None] = CAP_APPLIED
    HANDSHAKE: ClassVar[bool] = False

    revision: int

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body: the revision travels in the header."""
        return self.revision, {}

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> Applied:
        """Decode; raises MalformedMessage."""
        return cls(revision)


@dataclass(frozen=True, slots=True)
class AppliedInterval:
    """APPLIED_INTERVAL (server to client, with CAP_APPLIED): from now on send
    APPLIED at most every `interval_ms` (the server's agent count changed)."""

    TYPE: ClassVar[MsgType] = MsgType.APPLIED_INTERVAL
    SENT_BY: ClassVar[Sender] = Sender.SERVER
    CAP: ClassVar[str | None] = CAP_APPLIED
    HANDSHAKE: ClassVar[bool] = False

    interval_ms: int

    def to_wire(self) -> tuple[int, dict[str, Any]]:
        """Header revision and body."""
        return 0, {"interval_ms": self.interval_ms}

    @classmethod
    def from_wire(cls, revision: int, body: Body) -> AppliedInterval:
        """Decode; raises MalformedMessage."""
        interval = body.count("interval_ms")
        if interval == 0:
            raise MalformedMessage(f"{body.what}: interval_ms must be a positive integer")
        return cls(interval)


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
MESSAGES: tuple[type[Message], ...] = (
    ClientHello,
    ServerHello,
    SnapshotChunk,
    SnapshotEnd,
    Delta,
    Progress,
    Ping,
    Pong,
    Goodbye,
    DatastoreStatusMsg,
    Applied,
    AppliedInterval,
)
_BY_TYPE: dict[int, type[Message]] = {m.TYPE: m for m in MESSAGES}
if set(_BY_TYPE) != set(MsgType):  # pragma: no cover - a declaration is missing
    raise RuntimeError("every MsgType needs exactly one message class")
KNOWN_TYPES = frozenset(_BY_TYPE)


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
        revision, fields = msg.to_wire()
        body = pack(fields)
        raw_size = len(body)
        flags = 0
        if compress:
            if self._cctx is None:
                self._cctx = zstandard.ZstdCompressor(level=3)
            body = self._cctx.compress(body)
            flags = FLAG_ZSTD
        return encode_frame(msg.TYPE, body, revision=revision, flags=flags), raw_size

    # -- decoding ----------------------------------------------------------

    def decode(self, frame: Frame) -> Message:
        """The message in a frame; raises MalformedMessage for anything invalid."""
        cls = _BY_TYPE.get(frame.type)
        if cls is None:
            raise MalformedMessage(f"unknown message type {frame.type}")
        what = cls.TYPE.name
        body = frame.body
        if frame.flags & FLAG_ZSTD:
            if not self.accept_compressed:
                raise MalformedMessage(f"compressed {what} not accepted from this peer")
            if self._dctx is None:
                self._dctx = zstandard.ZstdDecompressor()
            try:
                body = self._dctx.decompress(body, max_output_size=self.max_frame)
            except zstandard.ZstdError as exc:
                raise MalformedMessage(f"bad zstd body: {exc}") from None
            if len(body) > self.max_frame:
                raise MalformedMessage("decompressed body exceeds the frame limit")
        return cls.from_wire(frame.revision, Body(unpack(body), what))
