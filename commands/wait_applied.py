"""`typha wait-applied`: wait until every connected agent's dataplane has
applied a revision, asking every replica's side port.

    typha wait-applied --revision R [--timeout S] [--endpoints H:P,...]

Each endpoint name is resolved to all of its addresses (a headless Service
gives one per replica), every address is asked `GET /convergence?revision=R`,
and the answers are summed; nodes that left a replica are looked up on every
replica (`POST /convergence/nodes`) and listed as disconnected only if none
has them connected.  Exit 0 once every replica answered, at least one agent
is connected, every connected agent has applied R and no node is connected
to no replica (a node disconnected within the replicas' memory, 300 s, is
not known to have applied it); 1 on timeout, listing the agents still
behind, the disconnected nodes and the replicas that did not answer.  One
JSON object with the last sums is printed on stdout either way.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from commands.replicas import get_json, parse_endpoints, resolve

SHOWN = 10  # nodes listed per category in the summary
CONNECTED_STATES = ("connected", "not_reporting")  # /convergence/nodes states


@dataclass
class Sums:
    """The replicas' answers, summed."""

    revision: int
    agents: int = 0
    applied: int = 0
    lagging: list[dict[str, Any]] = field(default_factory=list)
    not_reporting: list[str] = field(default_factory=list)
    # node -> its entry: disconnected from a replica and connected to none
    disconnected: dict[str, dict[str, Any]] = field(default_factory=dict)
    replicas: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """Every replica answered, at least one agent is connected, every
        connected agent applied the revision, and no node that left a
        replica is connected to none (its dataplane's state is unknown)."""
        return (
            bool(self.replicas)
            and not self.unreachable
            and self.agents > 0
            and self.applied == self.agents
            and not self.disconnected
        )

    def as_json(self) -> dict[str, Any]:
        """The summary printed on stdout."""
        gone = sorted(self.disconnected.values(), key=lambda x: x["applied_revision"])
        return {
            "revision": self.revision,
            "agents": self.agents,
            "applied": self.applied,
            "lagging": sorted(self.lagging, key=lambda x: x["applied_revision"])[:SHOWN],
            "not_reporting": sorted(self.not_reporting)[:SHOWN],
            "disconnected": gone[:SHOWN],
            "disconnected_count": len(gone),
            "replicas": self.replicas,
            "unreachable": self.unreachable,
            "converged": self.done,
        }


async def ask_all(session: aiohttp.ClientSession, replicas: list[str], revision: int) -> Sums:
    """Ask every replica once and sum the answers.  A node that left one
    replica is listed as disconnected only if no replica has it connected:
    an agent that moved (drain, rebalance) reports to its new replica."""
    url = f"/convergence?revision={revision}&disconnected=all"
    answers = await asyncio.gather(
        *(get_json(session, "GET", f"http://{r}{url}") for r in replicas)
    )
    sums = Sums(revision)
    for where, answer in zip(replicas, answers, strict=True):
        if answer is None:
            sums.unreachable.append(where)
            continue
        sums.replicas.append(where)
        sums.agents += int(answer.get("agents", 0))
        sums.applied += int(answer.get("applied", 0))
        sums.lagging += answer.get("lagging", [])
        sums.not_reporting += answer.get("not_reporting", [])
        for entry in answer.get("disconnected", []):
            seen = sums.disconnected.get(entry["node"])
            if seen is None or entry["disconnected_s"] < seen["disconnected_s"]:
                sums.disconnected[entry["node"]] = entry
    if sums.disconnected:
        names = {"nodes": sorted(sums.disconnected)}
        where_now = await asyncio.gather(
            *(
                get_json(session, "POST", f"http://{r}/convergence/nodes", names)
                for r in sums.replicas
            )
        )
        for where, answer in zip(list(sums.replicas), where_now, strict=True):
            if answer is None:  # it answered a moment ago: count it as not answering
                sums.replicas.remove(where)
                sums.unreachable.append(where)
                continue
            for node, info in (answer.get("nodes") or {}).items():
                if isinstance(info, dict) and info.get("state") in CONNECTED_STATES:
                    sums.disconnected.pop(node, None)
    return sums


async def wait_applied(revision: int, endpoints: str, limit: float, interval: float = 0.2) -> int:
    """Poll until converged (0) or `limit` seconds have passed (1); prints the
    last sums.  The last poll always completes: its answer is the report."""
    targets = parse_endpoints(endpoints)
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while True:
            sums = await ask_all(session, await resolve(targets), revision)
            if sums.done or time.monotonic() >= deadline:
                break
            await asyncio.sleep(interval)
    print(orjson.dumps(sums.as_json()).decode())
    if sums.done:
        print(
            f"typha: revision {revision} applied on {sums.applied} of {sums.agents} agents",
            file=sys.stderr,
        )
        return 0
    behind = ", ".join(f"{x['node']} at {x['applied_revision']}" for x in sums.as_json()["lagging"])
    print(
        f"typha: timed out: revision {revision} applied on {sums.applied} of {sums.agents} "
        f"agents; behind: {behind or 'none'}; unreachable replicas: "
        f"{', '.join(sums.unreachable) or 'none'}",
        file=sys.stderr,
    )
    return 1
