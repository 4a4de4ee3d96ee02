"""The agent's readiness, one vocabulary for /readyz, /status and logs."""

from __future__ import annotations

from enum import StrEnum


class AgentReadiness(StrEnum):
    """Where a node agent stands.  Only READY answers /readyz with 200.  A
    disconnected agent, or one whose typha lost the datastore, stays READY:
    its node keeps enforcing the last state it had, which is what readiness
    promises."""

    STARTING = "starting"  # the dataplane has not held a complete state yet
    READY = "ready"  # the latest batch applied cleanly (less what `refused` lists)
    FAILING = "failing"  # the latest batch did not reach the kernel; retried
