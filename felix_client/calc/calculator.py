"""The agent's calculation: synced-state changes in, dataplane batches out."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sized
from typing import Any, TypeVar

from calico_model.errors import InvalidValue
from calico_model.keys import DEFAULT_PREFIX, KeyLayout, Kind, ResourceKey
from calico_model.policies import Policy, Profile, StagedAction, StagedPolicy, Tier
from calico_model.validation import Resource, check_resource
from dataplane.batch import DataplaneBatch, PoolInfo, Route, Vtep
from felix_client.calc.dispatcher import Dispatcher, Handler
from felix_client.calc.felix_config import FelixConfigCalc
from felix_client.calc.model import Block, Endpoint, Node, Pool, pool_info, vtep_of
from felix_client.calc.policy import PolicyCalc
from felix_client.calc.policy_defs import PolicyDef, ProfileDef, TierDef
from felix_client.calc.rare_collections import rare_collections
from felix_client.calc.routes import RouteCalc
from felix_client.calc.rules import Unenforceable
from runtime.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

Value = dict[str, Any] | None
# A change list this long (a snapshot, a resync) is calculated with the
# youngest garbage generation collected rarely (rare_collections).
BULK_CHANGES = 1000
# An input node: key, typed key, the (validated) value or None, its model.
_Input = Callable[[str, ResourceKey, Value, "Resource | None"], None]


class Calculator:
    """Feed it `(key, value or None)` changes; it returns what the dataplane
    must do.  Work per change is proportional to what the change affects.

    The graph: a dispatcher sends each change to the input nodes for its
    kind; those parse the value (never trusting its shape) and update the
    route calculation (`RouteCalc`) and the policy calculation
    (`PolicyCalc`); `apply` then collects what changed into one batch.
    """

    def __init__(self, node: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.node = node
        self.routes = RouteCalc(node)
        self.policy = PolicyCalc(node)
        self.programmed: dict[str, Route] = {}
        self.programmed_vteps: dict[str, Vtep] = {}
        self.programmed_pools: dict[str, PoolInfo] = {}
        self._pools_changed: dict[str, PoolInfo | None] = {}
        self.programmed_hosts: dict[str, tuple[str, ...]] = {}
        self._hosts_changed: dict[str, tuple[str, ...] | None] = {}
        self.felix_config = FelixConfigCalc(node)
        self.errors: Counter[str] = Counter()
        self._rl = RateLimitedLog(log)
        d = self.dispatcher = Dispatcher(KeyLayout(prefix))
        for kind, handler in (
            (Kind.WORKLOAD_ENDPOINT, self._on_workload),
            (Kind.HOST_ENDPOINT, self._on_host_endpoint),
            (Kind.IPAM_BLOCK, self._on_block),
            (Kind.NODE, self._on_node),
            (Kind.IP_POOL, self._on_pool),
            (Kind.NETWORK_POLICY, self._on_policy),
            (Kind.GLOBAL_NETWORK_POLICY, self._on_policy),
            (Kind.STAGED_NETWORK_POLICY, self._on_staged_policy),
            (Kind.STAGED_GLOBAL_NETWORK_POLICY, self._on_staged_policy),
            (Kind.STAGED_KUBERNETES_NETWORK_POLICY, self._on_staged_policy),
            (Kind.PROFILE, self._on_profile),
            (Kind.TIER, self._on_tier),
            (Kind.FELIX_CONFIGURATION, self._on_felix_config),
        ):
            d.register(kind, self._gated(handler))

    def _gated(self, handler: _Input) -> Handler:
        """`handler` behind the server's validation: a value validation refuses
        reaches it as a deletion (the resource is absent here as it is from
        the served state), and is counted; a valid one comes with its typed
        model where the kind has one."""

        def gated(key: str, rk: ResourceKey, value: dict[str, Any] | None) -> None:
            model = None
            if value is not None:
                try:
                    model = check_resource(rk, value)
                except InvalidValue as exc:
                    self.errors[f"invalid_{rk.kind.name.lower()}"] += 1
                    self._rl.log(logging.WARNING, "invalid", "ignoring %s: %s", key, exc)
                    value = None
            handler(key, rk, value, model)

        return gated

    def apply(self, changes: Iterable[tuple[str, Any | None]]) -> DataplaneBatch:
        """Apply changes in order; return the dataplane work they caused."""
        if isinstance(changes, Sized) and len(changes) >= BULK_CHANGES:
            with rare_collections():
                return self._apply(changes)
        return self._apply(changes)

    def _apply(self, changes: Iterable[tuple[str, Any | None]]) -> DataplaneBatch:
        dispatch = self.dispatcher.dispatch
        for key, value in changes:
            dispatch(key, value)
        batch = DataplaneBatch()
        for dst in self.routes.changed:
            _emit(
                self.programmed, dst, self.routes.effective(dst), batch.routes_set, batch.routes_del
            )
        self.routes.changed.clear()
        for name in self.routes.vteps_changed:
            node = self.routes.nodes.get(name)
            vtep = vtep_of(node) if node is not None else None
            _emit(self.programmed_vteps, name, vtep, batch.vteps_set, batch.vteps_del)
        self.routes.vteps_changed.clear()
        for key, info in self._pools_changed.items():
            _emit(self.programmed_pools, key, info, batch.pools_set, batch.pools_del)
        self._pools_changed.clear()
        for name, addrs in self._hosts_changed.items():
            _emit(self.programmed_hosts, name, addrs, batch.hosts_set, batch.hosts_del)
        self._hosts_changed.clear()
        if self.felix_config.changed:
            batch.configured = self.felix_config.effective()
            self.felix_config.changed = False
        self.policy.flush(batch)
        return batch

    # -- input nodes: parse, then feed the calculations --------------------------

    def _on_workload(self, key: str, _: ResourceKey, __: Value, model: Resource | None) -> None:
        ep = model if isinstance(model, Endpoint) else None
        self.routes.set_wep(key, ep)
        self.policy.set_endpoint(key, ep)

    def _on_host_endpoint(
        self, key: str, _: ResourceKey, __: Value, model: Resource | None
    ) -> None:
        self.policy.set_endpoint(key, model if isinstance(model, Endpoint) else None)

    def _on_block(self, key: str, _: ResourceKey, __: Value, model: Resource | None) -> None:
        self.routes.set_block(key, model if isinstance(model, Block) else None)

    def _on_node(self, _: str, rk: ResourceKey, __: Value, model: Resource | None) -> None:
        node = model if isinstance(model, Node) else None
        self.routes.set_node(rk.name, node)
        addrs = tuple(a for a in (node.ip, node.ip6) if a) if node is not None else ()
        self._hosts_changed[rk.name] = addrs or None

    def _on_pool(self, key: str, _: ResourceKey, __: Value, model: Resource | None) -> None:
        pool = model if isinstance(model, Pool) else None
        self.routes.set_pool(key, pool)
        self._pools_changed[key] = pool_info(pool) if pool is not None else None

    def _on_policy(self, key: str, _: ResourceKey, __: Value, model: Resource | None) -> None:
        pol = PolicyDef.of(model) if isinstance(model, Policy) else None
        if pol is not None:
            self._count(key, pol.problems)
        self.policy.set_policy(key, pol)

    def _on_staged_policy(
        self, key: str, _: ResourceKey, __: Value, model: Resource | None
    ) -> None:
        """A staged policy that would set a policy counts what that policy
        would decide; one that would delete one, or is Learn or Ignore, has
        nothing to count."""
        pol = None
        if isinstance(model, StagedPolicy) and model.action is StagedAction.SET:
            pol = PolicyDef.of(model.policy, staged=True)
            self._count(key, pol.problems)
        self.policy.set_policy(key, pol)

    def _on_profile(self, key: str, rk: ResourceKey, __: Value, model: Resource | None) -> None:
        prof = ProfileDef.of(model) if isinstance(model, Profile) else None
        if prof is not None:
            self._count(key, prof.problems)
        self.policy.set_profile(rk.name, prof)

    def _on_felix_config(
        self, _: str, rk: ResourceKey, value: dict[str, Any] | None, _model: Resource | None
    ) -> None:
        self.felix_config.set(rk.name, value)

    def _on_tier(self, _: str, rk: ResourceKey, __: Value, model: Resource | None) -> None:
        self.policy.set_tier(rk.name, TierDef.of(model) if isinstance(model, Tier) else None)

    def _count(self, key: str, problems: tuple[Unenforceable, ...]) -> None:
        """Rules the agent cannot enforce match nothing; say so, and count them."""
        for reason in problems:
            self.errors[f"rule_{reason}"] += 1
        if problems:
            self._rl.log(
                logging.WARNING,
                "unenforceable",
                "%s: %d rule(s) match nothing (%s): the agent cannot enforce them",
                key,
                len(problems),
                ", ".join(sorted(set(problems))),
            )


T = TypeVar("T")


def _emit(
    programmed: dict[str, T], key: str, new: T | None, sets: dict[str, T], dels: set[str]
) -> None:
    """Record in the batch what changed for `key` relative to what was
    programmed, and remember the new value."""
    if new is None:
        if programmed.pop(key, None) is not None:
            dels.add(key)
    elif programmed.get(key) != new:
        programmed[key] = new
        sets[key] = new
