"""Just enough HTTP/2 and gRPC to hold one etcd watch stream cheaply.

The bench's etcd watchers stand in for a thousand agents on one host, so a
watcher must cost far less than the server it measures.  grpcio decodes every
header block and builds a protobuf object per response; here a watcher walks
frame headers, replies to SETTINGS and PING, keeps the flow-control windows
open, and reads two fields of each WatchResponse (the header's revision and
`created`/`canceled`).  Header blocks are never decoded: the stream's status
only matters when it ends, and then the watcher has failed anyway.

This is a load generator's client, not a general one: one stream, prior
knowledge h2c (what gRPC servers accept), no padding on what it sends.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
FLAG_ACK = 0x1
FLAG_END_STREAM = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW_SIZE = 0x2, 0x4
MAX_WINDOW = (1 << 31) - 1
DEFAULT_WINDOW = 65_535
STREAM = 1


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One HTTP/2 frame."""
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def _hpack_literal(name: bytes, value: bytes) -> bytes:
    # "Literal header field without indexing, new name" (RFC 7541 6.2.2):
    # nothing enters the server's dynamic table, so we never need to track it.
    if len(name) >= 127 or len(value) >= 127:
        raise ValueError("header too long for a one-byte HPACK length")
    return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value


def grpc_message(body: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + len(body).to_bytes(4, "big") + body


def opening(authority: str, path: str, request: bytes) -> bytes:
    """What a client sends first: preface, settings (windows as large as
    allowed, so a slow reader never stalls the server on flow control),
    the request headers and the first request message, stream left open."""
    settings = SETTINGS_ENABLE_PUSH.to_bytes(2, "big") + (0).to_bytes(4, "big")
    settings += SETTINGS_INITIAL_WINDOW_SIZE.to_bytes(2, "big") + MAX_WINDOW.to_bytes(4, "big")
    headers = b"".join(
        _hpack_literal(n, v)
        for n, v in (
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", authority.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        )
    )
    return (
        PREFACE
        + frame(SETTINGS, 0, 0, settings)
        + frame(WINDOW_UPDATE, 0, 0, (MAX_WINDOW - DEFAULT_WINDOW).to_bytes(4, "big"))
        + frame(HEADERS, FLAG_END_HEADERS, STREAM, headers)
        + frame(DATA, 0, STREAM, grpc_message(request))
    )


def _varint(buf: bytes | memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


@dataclass
class WatchResponse:
    """The fields of an etcd WatchResponse that the bench reads."""

    revision: int = 0
    created: bool = False
    canceled: bool = False


def scan_watch_response(msg: bytes | memoryview) -> WatchResponse:
    """Read header.revision (1.3), created (3) and canceled (4) from an
    encoded etcdserverpb.WatchResponse; skips every other field unread."""
    out = WatchResponse()
    i, end = 0, len(msg)
    while i < end:
        tag, i = _varint(msg, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(msg, i)
            if field == 3:
                out.created = bool(value)
            elif field == 4:
                out.canceled = bool(value)
        elif wire == 2:
            length, i = _varint(msg, i)
            if field == 1:
                j, stop = i, i + length
                while j < stop:
                    htag, j = _varint(msg, j)
                    if htag & 7 != 0:
                        raise ValueError(f"unexpected wire type in ResponseHeader: {htag}")
                    hval, j = _varint(msg, j)
                    if htag >> 3 == 3:
                        out.revision = hval
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


class StreamEnded(Exception):
    """The server ended the watch (RST_STREAM, GOAWAY, trailers or cancel)."""


class H2WatchReader:
    """Sans-I/O reader of one gRPC server stream: feed it bytes, get the
    complete gRPC messages and the bytes to send back (SETTINGS and PING
    acknowledgements, window updates: once `reopen_after` bytes have been
    read, both windows are widened by as much again)."""

    def __init__(self, reopen_after: int = MAX_WINDOW // 2) -> None:
        self._reopen_after = reopen_after
        self._buf = bytearray()
        self._msg = bytearray()
        self._consumed = 0

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """Take bytes from the socket; returns (messages, bytes to send).
        Raises StreamEnded when the server ends the stream or the connection."""
        buf = self._buf
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data  # the common case: no copy of what was read
        msgs: list[bytes] = []
        out = bytearray()
        i, n = 0, len(view)
        while n - i >= 9:
            length = (view[i] << 16) | (view[i + 1] << 8) | view[i + 2]
            if n - i < 9 + length:
                break
            kind, flags = view[i + 3], view[i + 4]
            start = i + 9
            i = start + length
            if kind == DATA:
                self._consumed += length
                if flags & FLAG_PADDED:
                    self._msg += view[start + 1 : i - view[start]]
                elif (
                    not self._msg
                    and length >= 5
                    and int.from_bytes(view[start + 1 : start + 5], "big") == length - 5
                ):
                    msgs.append(bytes(view[start + 5 : i]))  # one whole message per frame
                else:
                    self._msg += view[start:i]
                if self._msg:
                    msgs += self._messages()
                if flags & FLAG_END_STREAM:
                    raise StreamEnded("server ended the stream")
            elif kind == HEADERS and flags & FLAG_END_STREAM:
                raise StreamEnded("server sent trailers: the watch ended")
            elif kind == SETTINGS and not flags & FLAG_ACK:
                out += frame(SETTINGS, FLAG_ACK, 0, b"")
            elif kind == PING and not flags & FLAG_ACK:
                out += frame(PING, FLAG_ACK, 0, bytes(view[start:i]))
            elif kind in (RST_STREAM, GOAWAY):
                raise StreamEnded(f"server sent frame type {kind}")
        if buf:
            del buf[:i]
        elif i < n:
            buf += data[i:]
        if self._consumed > self._reopen_after:
            inc = self._consumed.to_bytes(4, "big")
            out += frame(WINDOW_UPDATE, 0, 0, inc) + frame(WINDOW_UPDATE, 0, STREAM, inc)
            self._consumed = 0
        return msgs, bytes(out)

    def _messages(self) -> list[bytes]:
        msgs = []
        m = self._msg
        i, n = 0, len(m)
        while n - i >= 5:
            length = int.from_bytes(m[i + 1 : i + 5], "big")
            if n - i < 5 + length:
                break
            msgs.append(bytes(m[i + 5 : i + 5 + length]))
            i += 5 + length
        del m[:i]
        return msgs
