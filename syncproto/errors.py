"""Errors raised by the wire protocol core.

SyncProtoError                base of this package's errors
├── UsageError                local misuse: an API called in a state where it is not allowed
├── ProtocolError             remote: the peer violated the wire protocol; carries a `code`
│   ├── FrameTooLarge         a length prefix above the negotiated maximum
│   ├── MalformedMessage      a frame whose header or msgpack body is not what the spec says
│   ├── HandshakeError        a hello that is missing, late, repeated or incompatible
│   └── RateLimited           more messages than the per-connection budget allows
└── ConnectionTimeout         remote: the peer went silent past a deadline; carries a `code`

Local misuse also derives from `snapshot.errors.LocalMisuse`, remote trouble from
`snapshot.errors.RemoteError` (re-exported here), as in every package: `except
RemoteError` catches every way a peer, the datastore or its data can let a caller
down, whichever package raised it.  A `code` is a `CloseReason`: the metric label
and the reason in the GOODBYE sent to the peer.
"""

from __future__ import annotations

from snapshot.errors import LocalMisuse, RemoteError
from syncproto.vocabulary import CloseReason

__all__ = [
    "ConnectionTimeout",
    "FrameTooLarge",
    "HandshakeError",
    "LocalMisuse",
    "MalformedMessage",
    "ProtocolError",
    "RateLimited",
    "RemoteError",
    "SyncProtoError",
    "UsageError",
]


class SyncProtoError(Exception):
    """Base class for wire protocol errors."""


class UsageError(SyncProtoError, LocalMisuse):
    """An API was called in a state where that call is not allowed."""


class ProtocolError(SyncProtoError, RemoteError):
    """The peer sent something that violates the wire protocol."""

    code = CloseReason.PROTOCOL_ERROR


class FrameTooLarge(ProtocolError):
    """A frame whose length prefix exceeds the maximum we accept."""

    code = CloseReason.FRAME_TOO_LARGE


class MalformedMessage(ProtocolError):
    """A frame whose header or body does not decode to a valid message."""

    code = CloseReason.MALFORMED


class HandshakeError(ProtocolError):
    """A hello that is missing, repeated, late or incompatible."""

    code = CloseReason.HANDSHAKE


class RateLimited(ProtocolError):
    """More inbound messages than the per-connection budget allows."""

    code = CloseReason.RATE_LIMITED


class ConnectionTimeout(SyncProtoError, RemoteError):
    """The peer was silent for longer than the protocol allows."""

    def __init__(self, code: CloseReason) -> None:
        super().__init__(code.value)
        self.code = code
