"""Errors raised by the server.

TyphaError                    base of everything below
├── ConfigError               local misuse: a bad flag, env var or option value
│                             (also a runtime.errors.ConfigError, a LocalMisuse)
└── DatastoreError            remote: etcd could not be reached or answered something
                              unusable (also a snapshot.errors.RemoteError)

Wire protocol errors come from `syncproto.errors`, invalid values and selectors
from `calico_model.errors`.
"""

from __future__ import annotations

from runtime.errors import ConfigError as _RuntimeConfigError
from syncproto.errors import RemoteError


class TyphaError(Exception):
    """Base class for server errors."""


class ConfigError(TyphaError, _RuntimeConfigError):
    """Invalid configuration given by the operator."""


class DatastoreError(TyphaError, RemoteError):
    """The datastore is unreachable or answered something unusable."""
