"""The agent's calculation graph: routes and ACLs for one node, kept
incrementally (`Calculator`), and the from-scratch reference (`compute`)."""

from felix_client.calc.calculator import Calculator
from felix_client.calc.full import Tables, compute

__all__ = ["Calculator", "Tables", "compute"]
