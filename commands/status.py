"""`typha status`: every replica, its agents and their convergence, in one view.

    typha status [--endpoints H:P,...] [-o table|json]

Each endpoint name is resolved to all of its addresses (the headless Service
gives one per replica) and every address is asked `GET /status` and
`GET /convergence`.  The convergence target is the newest change any replica
has (`/convergence`'s own revision); a replica whose latest change is older is
asked again for that target, so its agents count as behind.  BEHIND is a
replica's revision behind the newest replica's: under churn replicas
answer moments apart, so a few revisions is normal.  Exit 0 when
every replica answered, is serving and agrees with the others; 1 when there
is a problem, each listed under PROBLEMS (or in `problems` with `-o json`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from commands.replicas import get_json, parse_endpoints, resolve

SLOWEST_SHOWN = 10


@dataclass(frozen=True, slots=True)
class ReplicaAnswer:
    """What one address said: its `/status` and its `/convergence` for the
    target revision (None where it did not answer)."""

    address: str
    status: dict[str, Any] | None
    convergence: dict[str, Any] | None


@dataclass
class View:
    """The cluster as `typha status` shows it."""

    target: int  # the newest change any replica has
    replicas: list[dict[str, Any]] = field(default_factory=list)
    agents: int = 0
    applied: int = 0
    not_reporting: int = 0
    disconnected: int = 0
    slowest: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The `-o json` object."""
        return {
            "replicas": self.replicas,
            "convergence": {
                "revision": self.target,
                "agents": self.agents,
                "applied": self.applied,
                "not_reporting": self.not_reporting,
                "disconnected": self.disconnected,
            },
            "slowest": self.slowest,
            "problems": self.problems,
            "ok": not self.problems,
        }


def _int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def build_view(answers: Sequence[ReplicaAnswer]) -> View:
    """Sum the replicas' answers into a View, listing every problem: no
    replica found, one not answering, not serving, with a supervised task
    down, or with a digest other than another replica's
    at the same revision (they hold different states for one etcd revision,
    which must never happen)."""
    targets = [_int(a.convergence, "revision") for a in answers if a.convergence is not None]
    view = View(target=max(targets, default=0))
    newest = max((_int(a.status, "revision") for a in answers if a.status), default=0)
    digests: dict[int, set[str]] = {}
    for a in answers:
        if a.status is None:
            view.replicas.append({"address": a.address, "answered": False})
            view.problems.append(f"{a.address} does not answer")
            continue
        st, conv = a.status, a.convergence or {}
        name = str(st.get("server_id") or a.address)
        revision = _int(st, "revision")
        row: dict[str, Any] = {
            "address": a.address,
            "answered": True,
            "server_id": name,
            "readiness": str(st.get("readiness", "")),
            "in_sync": st.get("in_sync") is True,
            "revision": revision,
            "behind": newest - revision,
            "keys": _int(st, "keys"),
            "digest": str(st.get("digest", "")),
            "agents": _int(conv, "agents"),
            "applied": _int(conv, "applied"),
            "max_client_lag_s": float(st.get("max_client_lag_s", 0.0) or 0.0),
            "etcd_errors": _int(st, "etcd_errors"),
            "tasks_down": list(st.get("tasks_down") or []),
        }
        view.replicas.append(row)
        if row["readiness"] != "serving":
            view.problems.append(f"{name} is {row['readiness'] or 'not serving'}")
        if row["tasks_down"]:
            view.problems.append(f"{name}: tasks down: {', '.join(map(str, row['tasks_down']))}")
        if row["in_sync"]:
            digests.setdefault(revision, set()).add(row["digest"])
        view.agents += row["agents"]
        view.applied += row["applied"]
        view.not_reporting += _int(conv, "not_reporting_count")
        view.disconnected += _int(conv, "disconnected_count")
        for lag in conv.get("lagging") or []:
            if isinstance(lag, dict) and isinstance(lag.get("applied_revision"), int):
                view.slowest.append(
                    {
                        "node": str(lag.get("node", "")),
                        "applied_revision": lag["applied_revision"],
                        "behind": view.target - lag["applied_revision"],
                        "replica": name,
                    }
                )
    for revision, seen in sorted(digests.items()):
        if len(seen) > 1:
            view.problems.append(
                f"replicas at revision {revision} hold different states (digests "
                f"{', '.join(sorted(seen))}): see the source-check runbook"
            )
    if not answers:
        view.problems.append("no replica found")
    view.slowest.sort(key=lambda x: (x["applied_revision"], x["node"]))
    del view.slowest[SLOWEST_SHOWN:]
    return view


async def _ask(session: aiohttp.ClientSession, address: str) -> ReplicaAnswer:
    base = f"http://{address}"
    status, convergence = await asyncio.gather(
        get_json(session, "GET", f"{base}/status"),
        get_json(session, "GET", f"{base}/convergence"),
    )
    return ReplicaAnswer(address, status, convergence)


async def collect(endpoints: str) -> View:
    """Ask every replica behind `endpoints` (raises ConfigError for a
    malformed list) and build the view."""
    targets = parse_endpoints(endpoints)
    async with aiohttp.ClientSession() as session:
        answers = list(await asyncio.gather(*(_ask(session, r) for r in await resolve(targets))))
        target = max((_int(a.convergence, "revision") for a in answers if a.convergence), default=0)
        for i, a in enumerate(answers):
            if a.convergence is not None and _int(a.convergence, "revision") < target:
                again = await get_json(
                    session, "GET", f"http://{a.address}/convergence?revision={target}"
                )
                answers[i] = ReplicaAnswer(a.address, a.status, again)
    return build_view(answers)


def _yes(flag: object) -> str:
    return "yes" if flag else "no"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def render(view: View) -> str:
    """The table `typha status` prints, kubectl-style."""
    rows = [
        [
            "REPLICA",
            "ADDRESS",
            "STATE",
            "IN-SYNC",
            "REVISION",
            "BEHIND",
            "KEYS",
            "DIGEST",
            "AGENTS",
            "APPLIED",
            "CLIENT-LAG",
        ]
    ]
    for r in view.replicas:
        if not r["answered"]:
            rows.append(["?", r["address"], "no answer"] + ["-"] * 8)
            continue
        rows.append(
            [
                r["server_id"],
                r["address"],
                r["readiness"],
                _yes(r["in_sync"]),
                str(r["revision"]),
                str(r["behind"]),
                str(r["keys"]),
                r["digest"][:12],
                str(r["agents"]),
                f"{r['applied']}/{r['agents']}",
                f"{r['max_client_lag_s']:.1f}s",
            ]
        )
    out = _table(rows)
    out.append("")
    out.append(
        f"CONVERGENCE  revision {view.target}: {view.applied} of {view.agents} agents applied it; "
        f"{view.not_reporting} not reporting, {view.disconnected} disconnected"
    )
    if view.slowest:
        out.append("")
        out += _table(
            [["SLOWEST AGENTS", "APPLIED", "BEHIND", "REPLICA"]]
            + [
                [s["node"], str(s["applied_revision"]), str(s["behind"]), s["replica"]]
                for s in view.slowest
            ]
        )
    out.append("")
    out += ["PROBLEMS"] + [f"  {p}" for p in view.problems] if view.problems else ["PROBLEMS  none"]
    return "\n".join(out)
