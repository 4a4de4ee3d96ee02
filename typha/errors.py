"""Errors raised by the typha package.

TyphaError                    base of everything below
├── ConfigError               local misuse: a bad flag, env var or option value
├── UsageError                local misuse of an API (e.g. sending before the handshake)
├── ProtocolError             remote misbehaviour on the agent wire protocol
│   ├── FrameTooLarge         a length prefix above the negotiated maximum
│   ├── MalformedMessage      a frame whose header or msgpack body is not what the spec says
│   ├── HandshakeError        a hello that is missing, late, repeated or incompatible
│   └── RateLimited           more messages than the per-connection budget allows
├── ConnectionTimeout         the peer went silent past the handshake or idle timeout
├── DatastoreError            etcd could not be reached or answered something unusable
└── SelectorError             a label selector that does not parse (names the position)

Protocol errors carry a short machine-readable `code`, used as the metric label
and as the reason in the GOODBYE message sent to the peer.
"""

from __future__ import annotations


class TyphaError(Exception):
    """Base class for typha errors."""


class ConfigError(TyphaError):
    """Invalid configuration given by the operator."""


class UsageError(TyphaError):
    """An API was called in a state where that call is not allowed."""


class ProtocolError(TyphaError):
    """The peer sent something that violates the wire protocol."""

    code = "protocol_error"


class FrameTooLarge(ProtocolError):
    code = "frame_too_large"


class MalformedMessage(ProtocolError):
    code = "malformed"


class HandshakeError(ProtocolError):
    code = "handshake"


class RateLimited(ProtocolError):
    code = "rate_limited"


class ConnectionTimeout(TyphaError):
    """The peer was silent for longer than the protocol allows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.code = reason


class DatastoreError(TyphaError):
    """The datastore is unreachable or answered something unusable."""


class SelectorError(TyphaError):
    """A Calico label selector that does not parse."""

    def __init__(self, text: str, position: int, message: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"bad selector {shown!r} at {position}: {message}")
        self.text = text
        self.position = position
        self.message = message
