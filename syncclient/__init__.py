"""The client library for typha: discovery, connect, handshake, resume,
reconnect, the local replica and applied reports (`SyncClient`, over the
sans-I/O `ClientSession`).  Knows nothing of the node agent, Calico or the
dataplane; `felix_client` (the agent) is one of its users, and keeps these
names importable as its own."""

from syncclient.client import SyncClient
from syncclient.client_stats import ClientStats
from syncclient.errors import (
    BadValue,
    ConfigError,
    DigestMismatch,
    NotConnected,
    ServerMisbehaved,
    SyncClientError,
)
from syncclient.replica import Change, Replica

__all__ = [
    "BadValue",
    "Change",
    "ClientStats",
    "ConfigError",
    "DigestMismatch",
    "NotConnected",
    "Replica",
    "ServerMisbehaved",
    "SyncClient",
    "SyncClientError",
]
