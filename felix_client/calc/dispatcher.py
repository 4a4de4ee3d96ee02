"""The calculation graph's entry: each change goes, once, to the nodes that
registered for its key's kind.

Keys are parsed with the agent's key layout (its configured prefix); a key
outside the layout reaches no node.  A value that is not a JSON object is
treated as a delete: the server validated it, but the agent never trusts
shapes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from calico_model.keys import KeyLayout, Kind, ResourceKey

# A node's input: the datastore key, its typed form, the value (None: deleted).
Handler = Callable[[str, ResourceKey, dict[str, Any] | None], None]


class Dispatcher:
    """Register handlers per kind, then `dispatch` every change."""

    def __init__(self, layout: KeyLayout) -> None:
        self.layout = layout
        self._handlers: defaultdict[Kind, list[Handler]] = defaultdict(list)

    def register(self, kind: Kind, handler: Handler) -> None:
        """`handler` sees every change to a key of `kind`, in order, after the
        handlers registered before it."""
        self._handlers[kind].append(handler)

    def dispatch(self, key: str, value: Any | None) -> bool:
        """Route one change; False if no node handles its key."""
        rk = self.layout.parse(key)
        if rk is None:
            return False
        handlers = self._handlers.get(rk.kind)
        if not handlers:
            return False
        obj = value if isinstance(value, dict) else None
        for handler in handlers:
            handler(key, rk, obj)
        return True
