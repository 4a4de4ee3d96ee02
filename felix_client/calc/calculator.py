"""The agent's calculation: synced-state changes in, dataplane batches out."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from felix_client.calc.dataplane import DataplaneBatch, Route
from felix_client.calc.model import Block, Endpoint, Node, Pool, kind_of
from felix_client.calc.policy import PolicyCalc
from felix_client.calc.routes import RouteCalc
from felix_client.calc.rules import PolicyDef, ProfileDef
from typha.errors import SelectorError
from typha.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


class Calculator:
    """Feed it `(key, value or None)` changes; it returns what the dataplane
    must do.  Work per change is proportional to what the change affects."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.routes = RouteCalc(node)
        self.policy = PolicyCalc(node)
        self.programmed: dict[str, Route] = {}
        self.errors: Counter[str] = Counter()
        self._rl = RateLimitedLog(log)

    def apply(self, changes: Iterable[tuple[str, Any | None]]) -> DataplaneBatch:
        for key, value in changes:
            self._dispatch(key, value)
        batch = DataplaneBatch()
        for dst in self.routes.changed:
            route = self.routes.effective(dst)
            if route is None:
                if self.programmed.pop(dst, None) is not None:
                    batch.routes_del.add(dst)
            elif self.programmed.get(dst) != route:
                self.programmed[dst] = route
                batch.routes_set[dst] = route
        self.routes.changed.clear()
        self.policy.flush(batch)
        return batch

    def _dispatch(self, key: str, value: Any | None) -> None:
        kind = kind_of(key)
        if value is not None and not isinstance(value, dict):
            value = None
        if kind == "wep" or kind == "hep":
            ep = Endpoint.parse(value, host=kind == "hep") if value is not None else None
            if kind == "wep":
                self.routes.set_wep(key, ep)
            self.policy.set_endpoint(key, ep)
        elif kind == "block":
            self.routes.set_block(key, Block.parse(value) if value is not None else None)
        elif kind == "node":
            name = key.rsplit("/", 1)[1]
            self.routes.set_node(name, Node.parse(value) if value is not None else None)
        elif kind == "pool":
            self.routes.set_pool(key, Pool.parse(value) if value is not None else None)
        elif kind in ("policy", "gnp"):
            pol = None
            if value is not None:
                try:
                    pol = PolicyDef.parse(value, namespaced=kind == "policy")
                except SelectorError as exc:
                    # A bad selector disables that policy; the rest carries on.
                    self.errors["bad_selector"] += 1
                    self._rl.log(logging.WARNING, "sel", "disabling policy %s: %s", key, exc)
            self.policy.set_policy(key, pol)
        elif kind == "profile":
            name = key.rsplit("/", 1)[1]
            prof = None
            if value is not None:
                try:
                    prof = ProfileDef.parse(value)
                except SelectorError as exc:
                    self.errors["bad_selector"] += 1
                    self._rl.log(logging.WARNING, "sel", "disabling profile %s: %s", key, exc)
            self.policy.set_profile(name, prof)
