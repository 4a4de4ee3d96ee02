"""Graph node: which policies apply to which local endpoints.

A selector index over the *local* endpoints' labels answers it; a policy
change touches only the endpoints it selects (before or after), an endpoint
change only the policies reading the labels it changed.  Its output is the
set of local endpoints whose chains must be rendered again.
"""

from __future__ import annotations

from felix_client.calc.policy_defs import PolicyDef
from felix_client.calc.selector_index import Event, SelectorIndex


class ActivePolicies:
    """Feed it policies and endpoints; take `dirty` after each batch."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.local: set[str] = set()
        self.policies: dict[str, PolicyDef] = {}
        self._index = SelectorIndex()
        self.dirty: set[str] = set()

    def set_policy(self, key: str, pol: PolicyDef | None) -> None:
        """Add, change or delete a policy."""
        self.dirty |= self._index.members(key)
        if pol is None:
            self.policies.pop(key, None)
            self._events(self._index.remove_selector(key))
        else:
            self.policies[key] = pol
            self._events(self._index.add_selector(key, pol.selector))
        self.dirty |= self._index.members(key)

    def set_endpoint(self, key: str, node: str | None, labels: dict[str, str] | None) -> None:
        """An endpoint changed (None: deleted); `node` is the node it is on.
        A local endpoint is always dirty: its profiles or IPs may matter."""
        was_local = key in self.local
        if node == self.node and labels is not None:
            self.local.add(key)
            self._events(self._index.update_item(key, labels))
        elif was_local:
            self.local.discard(key)
            self._events(self._index.update_item(key, None))
        if was_local or key in self.local:
            self.dirty.add(key)

    def touch(self, key: str) -> None:
        """Render this endpoint's chains again if it is local."""
        if key in self.local:
            self.dirty.add(key)

    def policies_for(self, key: str) -> list[PolicyDef]:
        """The policies whose selector matches this local endpoint."""
        return [self.policies[str(p)] for p in self._index.selectors_matching(key)]

    def _events(self, events: list[Event]) -> None:
        for _, key, _ in events:
            self.dirty.add(key)
