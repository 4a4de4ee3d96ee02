"""Verdict counters: what each policy rule matched on this node.

Every rule that belongs to a policy or profile (or is a tier's or the
profiles' default) counts into one counter per (policy rule, direction,
action): the `CounterKey`.  Every endpoint chain and IP family that holds
the rule counts into the same counter, so the number of counters is the
number of policy rules that apply here, however many endpoints they apply
to, and the node's totals are read in one call.  A dataplane names a
counter by `counter_name` and maps names back to keys when it reads them.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from typing import NamedTuple

from dataplane.batch import Action, Direction, Rule, RuleRef


class CounterKey(NamedTuple):
    """What one verdict counter counts: a policy rule in one direction with
    its action (for a staged rule, the action it would take).  A tuple, as
    RuleRef."""

    ref: RuleRef
    direction: Direction
    action: Action

    def labels(self) -> tuple[str, str, str, str, str]:
        """(tier, policy, rule, direction, action): the metric's labels."""
        r = self.ref
        return (r.tier, r.policy, r.rule, str(self.direction), str(self.action))


class Reading(NamedTuple):
    """One counter's totals since it was created."""

    packets: int
    bytes: int


@functools.lru_cache(maxsize=1 << 16)
def counter_name(key: CounterKey) -> str:
    """The counter's name in the kernel (a hash: names have a length limit,
    policy names do not fit it)."""
    r = key.ref
    text = f"{r.tier}|{r.policy}|{r.rule}|{r.staged}|{key.direction}|{key.action}"
    return "c_" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def rule_counter(rule: Rule, direction: Direction) -> CounterKey | None:
    """The counter a rule counts into, or None (it counts only for itself)."""
    if rule.ref is None:
        return None
    return CounterKey(rule.ref, direction, rule.action)


def chain_counters(rules: Iterable[Rule], direction: Direction) -> dict[str, CounterKey]:
    """The counters one endpoint chain's rules count into, by name."""
    out: dict[str, CounterKey] = {}
    for r in rules:
        key = rule_counter(r, direction)
        if key is not None:
            out[counter_name(key)] = key
    return out
