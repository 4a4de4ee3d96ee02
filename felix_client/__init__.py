"""The `felix-agent` node agent: configuration, the calculation graph
(`calc/`), the agent process and its metrics.  The client library it syncs
with lives in `syncclient`; its names stay importable from here."""

from syncclient import (
    BadValue,
    Change,
    ClientStats,
    ConfigError,
    DigestMismatch,
    NotConnected,
    Replica,
    ServerMisbehaved,
    SyncClient,
    SyncClientError,
)

# The client library's base error, by the name it had here.
FelixClientError = SyncClientError

__all__ = [
    "BadValue",
    "Change",
    "ClientStats",
    "ConfigError",
    "DigestMismatch",
    "FelixClientError",
    "NotConnected",
    "Replica",
    "ServerMisbehaved",
    "SyncClient",
    "SyncClientError",
]
