"""Framing: a fixed 16-byte header, then a msgpack body.

    offset size field
    0      4    body length, unsigned big-endian (header not included)
    4      1    message type (MsgType)
    5      1    flags (bit 0: body is zstd-compressed)
    6      2    reserved, zero
    8      8    revision, unsigned big-endian (0 where a message has none)

The revision sits in the header so that a thin load-test agent can timestamp
a batch without decoding its body.
"""

from __future__ import annotations

import struct
from collections.abc import Container
from dataclasses import dataclass

from syncproto.errors import FrameTooLarge, MalformedMessage

HEADER = struct.Struct(">IBBHQ")
HEADER_SIZE = HEADER.size  # 16
FLAG_ZSTD = 0x01
KNOWN_FLAGS = FLAG_ZSTD
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: header fields and the raw body.  `type` is the
    header's type byte (the message types are declared in `messages`)."""

    type: int
    flags: int
    revision: int
    body: bytes


def encode_frame(mtype: int, body: bytes, *, revision: int = 0, flags: int = 0) -> bytes:
    """One frame: header plus `body`.  The caller checks the size limit."""
    return HEADER.pack(len(body), mtype, flags, 0, revision) + body


class FrameDecoder:
    """Incremental frame parser.  Never buffers more than one header plus
    `max_frame` body bytes: a longer length prefix is rejected as soon as its
    header arrives, and so is a type not in `known_types` (None: any type;
    the codec refuses what it does not know when it decodes the body)."""

    def __init__(
        self, max_frame: int = DEFAULT_MAX_FRAME, known_types: Container[int] | None = None
    ) -> None:
        self.max_frame = max_frame
        self._known = known_types
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return the frames now complete.  Raises ProtocolError."""
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        n = len(buf)
        while n - pos >= HEADER_SIZE:
            length, mtype, flags, reserved, revision = HEADER.unpack_from(buf, pos)
            if length > self.max_frame:
                raise FrameTooLarge(f"frame body of {length} bytes exceeds limit {self.max_frame}")
            if self._known is not None and mtype not in self._known:
                raise MalformedMessage(f"unknown message type {mtype}")
            if flags & ~KNOWN_FLAGS or reserved:
                raise MalformedMessage(f"unknown flags {flags:#x} / reserved {reserved:#x}")
            end = pos + HEADER_SIZE + length
            if end > n:
                break
            frames.append(Frame(mtype, flags, revision, bytes(buf[pos + HEADER_SIZE : end])))
            pos = end
        if pos:
            del buf[:pos]
        return frames
