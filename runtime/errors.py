"""Errors raised by the process plumbing.

ConfigError           local misuse: a bad option or file given by the operator
                      (TLS files that do not load, say); the server's and the
                      agent's ConfigError derive from it

Local misuse derives from `snapshot.errors.LocalMisuse`, as in every package.
"""

from __future__ import annotations

from snapshot.errors import LocalMisuse

__all__ = ["ConfigError"]


class ConfigError(LocalMisuse):
    """Invalid configuration given by the operator."""
