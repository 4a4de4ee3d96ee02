"""Client library for typha, and the `felix-agent` node agent."""

from felix_client.client import ClientStats, SyncClient
from felix_client.errors import (
    BadValue,
    ConfigError,
    DigestMismatch,
    FelixClientError,
    NotConnected,
    ServerMisbehaved,
)
from felix_client.replica import Change, Replica

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
]
