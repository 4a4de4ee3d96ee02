"""The protocol's closed vocabularies, as enums.

Their values are what travels on the wire (and what metrics use as labels), so
a value never changes once released; new members may be added.  A peer that
sends a value we do not know is a protocol error, except in GOODBYE, whose
reason is informational and kept as the peer's text.
"""

from __future__ import annotations

from enum import StrEnum


class SyncMode(StrEnum):
    """How the server answers a hello (SERVER_HELLO `sync`)."""

    SNAPSHOT = "snapshot"  # a full snapshot follows; the client drops what it lacked
    RESUME = "resume"  # only what changed since the client's revision follows


class DatastoreStatus(StrEnum):
    """How the serving replica stands with the datastore (DATASTORE_STATUS)."""

    IN_SYNC = "in_sync"  # watching, caught up: what it serves is current
    WAITING = "waiting"  # cannot reach the datastore (or its watch is stalled)
    RESYNCING = "resyncing"  # listing again (after compaction or a failed check)


class CloseReason(StrEnum):
    """Why a connection ended: the GOODBYE reason we send and the metric label.

    `PEER` and `PEER_CLOSED` are never sent: they record that the other side
    said GOODBYE, or closed the connection without one.
    """

    # the peer broke the protocol
    PROTOCOL_ERROR = "protocol_error"
    FRAME_TOO_LARGE = "frame_too_large"
    MALFORMED = "malformed"
    HANDSHAKE = "handshake"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"  # TLS peer not on the allow-lists
    # the peer went silent
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    PONG_TIMEOUT = "pong_timeout"
    FRAME_TIMEOUT = "frame_timeout"
    # the server's own policy
    SLOW_CLIENT = "slow_client"
    TOO_FAR_BEHIND = "too_far_behind"
    CONNECTION_LIMIT = "connection_limit"
    SHUTDOWN = "shutdown"
    REBALANCE = "rebalance"
    INTERNAL_ERROR = "internal_error"
    # the client's own policy
    UPSTREAM_STALE = "upstream_stale"
    # recorded only
    PEER = "peer"
    PEER_CLOSED = "peer_closed"
