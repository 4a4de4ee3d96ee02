"""Reading a whole datastore state from a file: one JSON object `{key:
value}`, as `felix-agent compute` and `felix-agent explain --state` take it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from runtime.errors import ConfigError


def read_state(path: str) -> dict[str, Any]:
    """The state in `path` (`-`: stdin).  Raises ConfigError saying what is
    wrong with it."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        state = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"input is not JSON: {exc}") from None
    if not isinstance(state, dict):
        raise ConfigError("input must be one JSON object {key: value}")
    return state
