"""The agent's calculation: routes and ACLs for one node, kept incrementally."""

from felix_client.calc.calculator import Calculator
from felix_client.calc.full import Tables, compute
from felix_client.dataplane import DataplaneBatch, MemoryDataplane, Route, Rule

__all__ = [
    "Calculator",
    "DataplaneBatch",
    "MemoryDataplane",
    "Route",
    "Rule",
    "Tables",
    "compute",
]
