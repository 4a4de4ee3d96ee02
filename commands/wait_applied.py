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
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from felix_client.addresses import resolve_all
from typha.errors import ConfigError

DEFAULT_ENDPOINTS = "127.0.0.1:9098"
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


def parse_endpoints(text: str) -> list[tuple[str, int]]:
    """`--endpoints`: H:P[,H:P...]; raises ConfigError naming a bad item."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--endpoints: {item!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    return out


async def resolve(endpoints: list[tuple[str, int]]) -> list[str]:
    """Every address of every endpoint (as the agents find replicas), as URL
    authorities."""
    found: list[str] = []
    for host, port in endpoints:
        try:
            ips = await resolve_all(host, port, random.Random(0))
        except OSError:
            found.append(f"{host}:{port}")  # reported unreachable when asked
            continue
        for ip in sorted(ips):
            where = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            if where not in found:
                found.append(where)
    return found


async def _json(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> dict[str, Any] | None:
    """One request's JSON object, or None for any failure."""
    try:
        data = None if body is None else orjson.dumps(body)
        timeout = aiohttp.ClientTimeout(total=5)
        async with session.request(method, url, data=data, timeout=timeout) as resp:
            if resp.status != 200:
                return None
            answer = orjson.loads(await resp.read())
            return answer if isinstance(answer, dict) else None
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
        return None


async def ask_all(session: aiohttp.ClientSession, replicas: list[str], revision: int) -> Sums:
    """Ask every replica once and sum the answers.  A node that left one
    replica is listed as disconnected only if no replica has it connected:
    an agent that moved (drain, rebalance) reports to its new replica."""
    url = f"/convergence?revision={revision}&disconnected=all"
    answers = await asyncio.gather(*(_json(session, "GET", f"http://{r}{url}") for r in replicas))
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
            *(_json(session, "POST", f"http://{r}/convergence/nodes", names) for r in sums.replicas)
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
