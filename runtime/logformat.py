"""Log line formats shared by `typha` and `felix-agent`: ISO-8601 UTC
timestamps, as text or as one JSON object per line."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import orjson

from runtime.flags import flag


class LogFormat(StrEnum):
    """`--log-format` values."""

    TEXT = "text"  # 2026-11-27T17:04:48.071Z INFO typha.app: message
    JSON = "json"  # {"ts": "...", "level": "INFO", "logger": "typha.app", "msg": "..."}


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level_reader(error: type[Exception]) -> Callable[[str], str]:
    """A reader for `--log-level` (any case) raising the daemon's `error`."""

    def read(value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            raise error(f"--log-level: {value!r} is not one of {', '.join(LOG_LEVELS)}")
        return level

    return read


def log_format_reader(error: type[Exception]) -> Callable[[str], LogFormat]:
    """A reader for `--log-format` (text or json) raising the daemon's `error`."""

    def read(value: str) -> LogFormat:
        try:
            return LogFormat(value.lower())
        except ValueError:
            raise error(f"--log-format: {value!r} is not text or json") from None

    return read


def log_level_flag(error: type[Exception]) -> Any:
    """The `--log-level` field of a daemon's flag table (runtime.flags)."""
    return flag("INFO", "DEBUG, INFO, WARNING or ERROR", parse=log_level_reader(error))


def log_format_flag(error: type[Exception]) -> Any:
    """The `--log-format` field of a daemon's flag table."""
    return flag(
        LogFormat.TEXT,
        "text (ISO-8601 UTC time, level, logger, message) or json",
        text="text",
        parse=log_format_reader(error),
    )


def log_summary_flag() -> Any:
    """The `--log-summary-interval` field of a daemon's flag table."""
    return flag(60.0, "seconds between one-line summaries in the log (0: none)", minimum=0)


def iso_utc(created: float) -> str:
    """`created` (seconds since the epoch) as 2026-11-27T17:04:48.071Z."""
    whole = int(created)
    millis = int((created - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """`<ISO-8601 UTC> LEVEL logger: message`, then the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        """One line (more with a traceback)."""
        line = f"{iso_utc(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and exc (the
    traceback) when there is one.  Log shippers parse it without a regex."""

    def format(self, record: logging.LogRecord) -> str:
        """One line of JSON."""
        obj = {
            "ts": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(obj).decode()


def configure_logging(level: str, fmt: LogFormat = LogFormat.TEXT) -> None:
    """Send every logger's records at `level` and above to stderr in `fmt`.
    Call once, at process start."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt is LogFormat.JSON else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
