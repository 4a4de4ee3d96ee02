"""Errors raised by the client library.

SyncClientError               base of everything below
├── ConfigError               local misuse: a bad address list or option
│                             (also a runtime.errors.ConfigError, a LocalMisuse)
├── NotConnected              wait_in_sync() cannot succeed: the client is closed
├── ValuesNotKept             local misuse: `state` read from a replica that keeps
│                             only hashes (also a snapshot.errors.LocalMisuse)
└── ServerMisbehaved          remote: the server sent something we cannot accept
    │                         (also a snapshot.errors.RemoteError); the client resyncs
    ├── DigestMismatch        our state's digest differs from the one the server sent
    └── BadValue              a value that is not a canonical JSON object

Wire-level violations raise `syncproto.errors.ProtocolError`, also a RemoteError.
"""

from __future__ import annotations

from runtime.errors import ConfigError as _RuntimeConfigError
from snapshot.errors import LocalMisuse
from syncproto.errors import RemoteError


class SyncClientError(Exception):
    """Base class for the client library's errors."""


class ConfigError(SyncClientError, _RuntimeConfigError):
    """Invalid options given by the caller."""


class NotConnected(SyncClientError):
    """The client is closed (before or while someone waited for sync)."""


class ValuesNotKept(SyncClientError, LocalMisuse):
    """The replica was built to keep only each key's hash: it has no values."""


class ServerMisbehaved(SyncClientError, RemoteError):
    """The server sent something we cannot accept; the client resyncs."""


class DigestMismatch(ServerMisbehaved):
    """The state we hold does not hash to the digest the server sent."""

    def __init__(self, revision: int, ours: str, theirs: str) -> None:
        super().__init__(f"digest mismatch at revision {revision}: ours {ours}, server {theirs}")
        self.revision = revision
        self.ours = ours
        self.theirs = theirs


class BadValue(ServerMisbehaved):
    """A value that is not a JSON object."""
