"""The `memory` dataplane driver: keeps the tables in memory, touches no
kernel.  What the tests and the demo compare against the from-scratch
computation."""

from __future__ import annotations

import time

from dataplane.batch import (
    ChainKey,
    DataplaneBatch,
    EndpointInfo,
    IpSetId,
    PoolInfo,
    Route,
    Rule,
    Vtep,
)
from dataplane.host_settings import ConfiguredSettings
from dataplane.ownership import Gate, Ownership
from dataplane.policy_counters import CounterKey, Reading


class MemoryDataplane:
    """Records the resulting tables (the `memory` driver).

    `delay` (testing only) makes every batch take that many seconds more,
    blocking, as a slow kernel would: for watching what waits on an agent's
    dataplane (convergence reports, readiness).  Leave it 0 in production."""

    def __init__(self, delay: float = 0.0, ownership: Ownership | None = None) -> None:
        self.delay = delay
        self.gate = Gate(ownership or Ownership())
        self.routes: dict[str, Route] = {}
        self.ipsets: dict[IpSetId, set[str]] = {}
        self.chains: dict[ChainKey, tuple[Rule, ...]] = {}
        self.endpoints: dict[str, EndpointInfo] = {}
        self.vteps: dict[str, Vtep] = {}
        self.pools: dict[str, PoolInfo] = {}
        self.hosts: dict[str, tuple[str, ...]] = {}  # every node's addresses
        self.configured = ConfiguredSettings()  # the datastore's FelixConfiguration
        self.batches = 0
        self.ops = 0

    def apply(self, batch: DataplaneBatch) -> None:
        """Apply one batch, in the order the Dataplane protocol gives."""
        self.stall()
        self.record(batch)

    def stall(self) -> None:
        """Block for the testing `delay`, if there is one."""
        if self.delay > 0:
            time.sleep(self.delay)

    def record(self, batch: DataplaneBatch) -> DataplaneBatch:
        """Update the in-memory tables with what of `batch` the agent owns
        (`ownership.Gate`; no delay); returns that part, the one to program."""
        batch = self.gate.admit(batch)
        self.batches += 1
        self.ops += batch.ops()
        for node in batch.vteps_del:
            self.vteps.pop(node, None)
        self.vteps.update(batch.vteps_set)
        for pool in batch.pools_del:
            self.pools.pop(pool, None)
        self.pools.update(batch.pools_set)
        for node in batch.hosts_del:
            self.hosts.pop(node, None)
        self.hosts.update(batch.hosts_set)
        if batch.configured is not None:
            self.configured = batch.configured
        for dst in batch.routes_del:
            self.routes.pop(dst, None)
        self.routes.update(batch.routes_set)
        # Order matters: a set both deleted and created in one batch is replaced.
        for name in batch.ipsets_delete:
            self.ipsets.pop(name, None)
        for name in batch.ipsets_create:
            self.ipsets.setdefault(name, set())
        for name, members in batch.ipset_add.items():
            self.ipsets.setdefault(name, set()).update(members)
        for name, members in batch.ipset_remove.items():
            self.ipsets.get(name, set()).difference_update(members)
        self.endpoints.update(batch.endpoints_set)
        for key in batch.chains_del:
            self.chains.pop(key, None)
        self.chains.update(batch.chains_set)
        for ep in batch.endpoints_del:
            self.endpoints.pop(ep, None)
        return batch

    @property
    def refused(self) -> dict[str, str]:
        """What the agent would not program, by key (`route <dst>` for a
        route), with the reason; until it is deleted or corrected."""
        return self.gate.refused

    def consistent(self) -> bool:
        """Whether the dataplane holds what the tables say (always, here)."""
        return True

    def kernel_status(self) -> dict[str, int | str]:
        """What the driver did to a kernel (nothing, for this one)."""
        return {}

    def policy_counters(self) -> dict[CounterKey, Reading]:
        """What each policy rule matched (nothing here: no packet passes)."""
        return {}

    def configuration(self) -> dict[str, object]:
        """For /status: the datastore's FelixConfiguration fields this agent
        does not apply, and those it could not read (this driver applies
        none: it programs nothing)."""
        return self.configured.to_dict()

    @property
    def acl_rules(self) -> int:
        """Rules over every chain."""
        return sum(len(c) for c in self.chains.values())
