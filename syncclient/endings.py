"""Why a connection ended, and what the client does about each reason: one
table instead of a ladder of `except` clauses.  Pure: the client classifies
the exception that ended a session and carries out the rule."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from syncclient.errors import DigestMismatch, ServerMisbehaved
from syncclient.session import StaleUpstream
from syncproto.errors import ConnectionTimeout, ProtocolError


class Ending(Enum):
    """How a connection ended (other than by the server's GOODBYE or close)."""

    UNREACHABLE = "unreachable"  # could not connect, or the socket failed
    PROTOCOL_ERROR = "protocol_error"  # the server broke the wire protocol
    DIGEST_MISMATCH = "digest_mismatch"  # our replica would not match the server's
    MISBEHAVED = "misbehaved"  # a bad value, an oversized snapshot
    TIMED_OUT = "timed_out"  # no pong, or the handshake took too long
    STALE_UPSTREAM = "stale_upstream"  # the replica lost the datastore: moving on
    INTERNAL_ERROR = "internal_error"  # a bug of ours


@dataclass(frozen=True, slots=True)
class Rule:
    """What to do when a connection ends one way: which counter of
    ClientStats to bump (None: none), how loudly to log `message` (formatted
    with `node`, `where` and `exc`), with a traceback or not, and whether to
    forget our revision so the next server sends a full snapshot."""

    counter: str | None
    level: int
    message: str
    forget_revision: bool = False
    traceback: bool = False


RULES: dict[Ending, Rule] = {
    Ending.UNREACHABLE: Rule(
        "connect_failures", logging.INFO, "{node}: {where} unreachable: {exc}"
    ),
    Ending.PROTOCOL_ERROR: Rule(
        "protocol_errors",
        logging.WARNING,
        "{node}: protocol error from {where}: {exc}",
        forget_revision=True,
    ),
    Ending.DIGEST_MISMATCH: Rule(
        "digest_mismatches",
        logging.WARNING,
        "{node}: {exc}; resyncing with a full snapshot",
        forget_revision=True,
    ),
    Ending.MISBEHAVED: Rule(
        "protocol_errors", logging.WARNING, "{node}: {exc}; resyncing", forget_revision=True
    ),
    Ending.TIMED_OUT: Rule(
        None, logging.WARNING, "{node}: connection to {where} timed out ({exc})"
    ),
    Ending.STALE_UPSTREAM: Rule(
        "stale_upstream_moves", logging.WARNING, "{node}: {where} {exc}; moving to another replica"
    ),
    Ending.INTERNAL_ERROR: Rule(
        "internal_errors",
        logging.ERROR,
        "{node}: internal error in the sync session; reconnecting",
        forget_revision=True,
        traceback=True,
    ),
}

# Most specific first: a DigestMismatch is a ServerMisbehaved.
_CLASSES: tuple[tuple[type[BaseException], Ending], ...] = (
    (DigestMismatch, Ending.DIGEST_MISMATCH),
    (ServerMisbehaved, Ending.MISBEHAVED),
    (ProtocolError, Ending.PROTOCOL_ERROR),
    (ConnectionTimeout, Ending.TIMED_OUT),
    (StaleUpstream, Ending.STALE_UPSTREAM),
    (OSError, Ending.UNREACHABLE),
    (TimeoutError, Ending.UNREACHABLE),
)


def classify(exc: BaseException) -> Ending:
    """The ending an exception out of a session stands for."""
    for cls, ending in _CLASSES:
        if isinstance(exc, cls):
            return ending
    return Ending.INTERNAL_ERROR
