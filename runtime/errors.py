"""Errors raised by the process plumbing.

ConfigError           local misuse: a bad option or file given by the operator
│                     (TLS files that do not load, say); the server's and the
│                     client library's ConfigError derive from it
└── BadAddress        a host:port that does not parse (runtime.hostport); callers
                      re-raise it as their own ConfigError naming the flag

Local misuse derives from `snapshot.errors.LocalMisuse`, as in every package.
"""

from __future__ import annotations

from snapshot.errors import LocalMisuse

__all__ = ["BadAddress", "ConfigError"]


class ConfigError(LocalMisuse):
    """Invalid configuration given by the operator."""


class BadAddress(ConfigError):
    """A host:port that does not parse; the message says why.  Callers
    re-raise it as their own ConfigError naming the flag."""
