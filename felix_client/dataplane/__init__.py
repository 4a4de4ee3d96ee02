"""Dataplane drivers behind one interface: the calculation produces
`DataplaneBatch`es, a driver applies them (`memory` keeps the tables in
memory)."""

from felix_client.dataplane.batch import (
    Action,
    ChainKey,
    Dataplane,
    DataplaneBatch,
    Direction,
    EndpointInfo,
    EndpointKind,
    IpSetId,
    Match,
    Route,
    Rule,
    Stage,
)
from felix_client.dataplane.memory import MemoryDataplane

__all__ = [
    "Action",
    "ChainKey",
    "Dataplane",
    "DataplaneBatch",
    "Direction",
    "EndpointInfo",
    "EndpointKind",
    "IpSetId",
    "Match",
    "MemoryDataplane",
    "Route",
    "Rule",
    "Stage",
]
