"""Errors raised by the wire protocol core, and the two bases every package shares.

SyncProtoError
├── LocalMisuse               base, in every package, of "the caller did something wrong"
│   ├── UsageError            an API called in a state where that call is not allowed
│   └── ConfigError           a bad option or file given by the operator (TLS files, limits)
└── RemoteError               base, in every package, of "the other side failed or misbehaved"
    ├── ProtocolError         the peer violated the wire protocol; carries a `code`
    │   ├── FrameTooLarge     a length prefix above the negotiated maximum
    │   ├── MalformedMessage  a frame whose header or msgpack body is not what the spec says
    │   ├── HandshakeError    a hello that is missing, late, repeated or incompatible
    │   └── RateLimited       more messages than the per-connection budget allows
    └── ConnectionTimeout     the peer went silent past a deadline; carries a `code`

`typha.errors` and `felix_client.errors` derive their own local and remote errors from
`LocalMisuse` and `RemoteError`, so `except RemoteError` catches every way a peer or
the datastore can let a caller down, whichever package raised it.  A `code` is a
`CloseReason`: the metric label and the reason in the GOODBYE sent to the peer.
"""

from __future__ import annotations

from syncproto.vocabulary import CloseReason


class SyncProtoError(Exception):
    """Base class for wire protocol errors."""


class LocalMisuse(SyncProtoError):
    """The caller (this process, its operator or its code) did something wrong."""


class UsageError(LocalMisuse):
    """An API was called in a state where that call is not allowed."""


class ConfigError(LocalMisuse):
    """Invalid configuration given by the operator."""


class RemoteError(SyncProtoError):
    """The other side (a peer or the datastore) failed or misbehaved."""


class ProtocolError(RemoteError):
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


class ConnectionTimeout(RemoteError):
    """The peer was silent for longer than the protocol allows."""

    def __init__(self, code: CloseReason) -> None:
        super().__init__(code.value)
        self.code = code
