"""Errors the commands raise themselves (the layers below have their own).

typha.errors.ConfigError     local misuse: bad flags or environment (exit 2)
└── DemoRefused              `typha demo` will not write into an etcd
                             prefix that already holds keys
"""

from __future__ import annotations

from typha.errors import ConfigError


class DemoRefused(ConfigError):
    """The demo was pointed at data it could damage; the message says what to do."""
