"""Errors raised by felix_client.

FelixClientError              base of everything below
├── ConfigError               local misuse: a bad address list or option
├── NotConnected              wait_in_sync() gave up, or the client was closed
└── ServerMisbehaved          the server sent something we cannot accept
    ├── DigestMismatch        our state's digest differs from the one the server sent
    └── BadValue              a value that is not a canonical JSON object

Wire-level violations raise typha.errors.ProtocolError from the shared core.
"""

from __future__ import annotations


class FelixClientError(Exception):
    """Base class for felix_client errors."""


class ConfigError(FelixClientError):
    """Invalid options given by the caller."""


class NotConnected(FelixClientError):
    """The client is closed, or did not reach sync in time."""


class ServerMisbehaved(FelixClientError):
    """The server sent something we cannot accept; the client resyncs."""


class DigestMismatch(ServerMisbehaved):
    def __init__(self, revision: int, ours: str, theirs: str) -> None:
        super().__init__(f"digest mismatch at revision {revision}: ours {ours}, server {theirs}")
        self.revision = revision
        self.ours = ours
        self.theirs = theirs


class BadValue(ServerMisbehaved):
    """A value that is not a JSON object."""
