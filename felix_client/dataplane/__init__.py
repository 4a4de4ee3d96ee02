"""Dataplane drivers behind one interface: the calculation produces
`DataplaneBatch`es, a driver applies them (`memory` keeps the tables in
memory)."""

from felix_client.dataplane.batch import (
    ChainKey,
    Dataplane,
    DataplaneBatch,
    Match,
    Route,
    Rule,
    ipset_name,
)
from felix_client.dataplane.memory import MemoryDataplane

__all__ = [
    "ChainKey",
    "Dataplane",
    "DataplaneBatch",
    "Match",
    "MemoryDataplane",
    "Route",
    "Rule",
    "ipset_name",
]
