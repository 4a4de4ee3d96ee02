"""Dataplane drivers behind one interface: the calculation produces
`DataplaneBatch`es, a driver applies them (`memory` keeps the tables in
memory)."""

from dataplane.batch import (
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
    RouteKind,
    Rule,
    Stage,
    Vtep,
)
from dataplane.memory import MemoryDataplane

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
    "RouteKind",
    "Rule",
    "Stage",
    "Vtep",
]
