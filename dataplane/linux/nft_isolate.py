"""When the kernel refuses a transaction: find the object, program the rest.

A batch is one nftables transaction, all or nothing.  If the kernel refuses
it, `commit_isolated` applies the same change again one object at a time,
in an order where everything an object refers to comes before it: sets,
new counters, then endpoint group chains, endpoint chains, the all-interfaces chains,
the dispatch maps, the base chains, and last what is removed (counters
after the rules that used them).  An object
the kernel still refuses is left out alone:

* a set stays as the kernel had it (chains that use it then fail, below);
* a chain is programmed as a plain drop instead: the endpoint's traffic in
  that direction stops, it is never left with rules older than its policy;
* anything else (a map, a base chain, a removal) cannot be left out
  safely: the error is raised and the caller resyncs later.

Every refusal is returned with its object, so the agent can count it, log
it and list it; the model returned is what the kernel now holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from dataplane.errors import DataplaneError
from dataplane.linux import nft_model as M

Run = Callable[[list[str]], None]


def _order(name: str, new: M.NftModel, old: M.NftModel) -> int:
    if name not in new.chains:
        return 6  # removed: after nothing refers to it any more
    decl = new.chains[name].decl
    if decl:
        return 4  # a base chain refers to maps and the all-interfaces chains
    if name.startswith("any_"):
        return 2
    # A chain before those that jump to it: `e_<hash>_<i>_<j>` (a staged
    # policy's) before its group `e_<hash>_<i>`, before `e_<hash>`.
    return -name.count("_")


def _changed_chains(old: M.NftModel, new: M.NftModel) -> list[str]:
    names = [
        n
        for n in old.chains.keys() | new.chains.keys()
        if n not in new.chains or M.chain_differs(old.chains.get(n), new.chains[n])
    ]
    return sorted(names, key=lambda n: (_order(n, new, old), n))


def commit_isolated(
    run: Run, old: M.NftModel, new: M.NftModel
) -> tuple[M.NftModel, dict[str, str], int]:
    """Turn the kernel's `old` into `new` object by object.  Returns what the
    kernel holds afterwards, the refused objects (`set <name>` / `chain
    <name>` to the kernel's message) and the statements written.  Raises
    DataplaneError if an object that cannot be left out is refused."""
    base = old.copy()
    refused: dict[str, str] = {}
    written = 0

    def step(kind: str, name: str, chain: M.ChainDef | None = None) -> None:
        """Make the kernel hold `new`'s version of one object (or `chain`)."""
        nonlocal base, written
        target = base.copy()
        target.table = new.table
        if kind == "maps":
            target.maps = {k: dict(v) for k, v in new.maps.items()}
        elif kind == "counters":
            # Adding `new`'s first (chains count into them), removing the
            # others last (a counter a rule uses cannot go).
            gone = name == "remove"
            target.counters = dict(new.counters) if gone else {**base.counters, **new.counters}
        elif kind == "set":
            _take(target.sets, new.sets, name)
        elif chain is not None:
            target.chains[name] = chain
        else:
            _take(target.chains, new.chains, name)
        script = M.diff(base, target)
        if script:
            run(script)
            written += len(script)
        base = target

    changed_sets = sorted(
        n for n in new.sets.keys() | old.sets.keys() if new.sets.get(n) != old.sets.get(n)
    )
    for name in (n for n in changed_sets if n in new.sets):
        try:
            step("set", name)
        except DataplaneError as exc:
            refused[f"set {name}"] = str(exc)
    step("counters", "add")
    chains = _changed_chains(old, new)
    maps_at = next((i for i, n in enumerate(chains) if _order(n, new, old) >= 4), len(chains))
    for i, name in enumerate(chains):
        if i == maps_at:
            step("maps", "")
        if name not in new.chains:
            step("chain", name)
            continue
        try:
            step("chain", name)
        except DataplaneError as exc:
            if new.chains[name].decl:
                raise
            refused[f"chain {name}"] = str(exc)
            step("chain", name, M.chain_def(name, "", M.REFUSED_CHAIN))
    if maps_at == len(chains):
        step("maps", "")
    for name in (n for n in changed_sets if n not in new.sets):
        step("set", name)
    step("counters", "remove")
    return base, refused, written


V = TypeVar("V")


def _take(into: dict[str, V], source: dict[str, V], name: str) -> None:
    if name in source:
        into[name] = source[name]
    else:
        into.pop(name, None)
