"""What the kernel's ruleset does to one packet: an interpreter of the
agent's own table as `nft -j` lists it with numeric output.

It follows the packet from an endpoint chain (found through the dispatch
map, by interface) through jumps and returns, with the packet mark, as the
kernel would: it knows exactly the expressions the renderer writes
(addresses, nets, sets and concatenations, protocols, ports, ICMP type and
code, mark tests and changes, counters, log, jump, return, drop).  Anything
else raises TraceError: an explanation is never guessed.  Connection
tracking is not modelled: the packet is the first of a new flow.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dataplane.linux import nft_render as R
from dataplane.policy_counters import CounterKey
from dataplane.trace import BY_NAME, ICMP, PORTED, ChainTrace, Packet, Step, TraceError, Verdict

_MAX_DEPTH = 16  # chains nest three deep; a loop in a broken table ends here


@dataclass
class Table:
    """The parts of the listed table the interpreter reads."""

    chains: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    sets: dict[str, list[Any]] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)


def table_of(doc: dict[str, Any]) -> Table:
    """The agent's table from `nft -j -n list table inet <TABLE>`."""
    t = Table()
    for obj in doc.get("nftables", []):
        if "rule" in obj:
            r = obj["rule"]
            t.chains.setdefault(r["chain"], []).append(list(r.get("expr", [])))
        elif "chain" in obj:
            t.chains.setdefault(obj["chain"]["name"], [])
        elif "set" in obj:
            t.sets[obj["set"]["name"]] = list(obj["set"].get("elem", []))
        elif "map" in obj:
            mp = obj["map"]
            t.maps[mp["name"]] = {
                str(e[0]): e[1].get("jump", {}).get("target", "")
                for e in mp.get("elem", [])
                if isinstance(e, list) and len(e) == 2 and isinstance(e[1], dict)
            }
    return t


class _Fail(Exception):
    """A match's dependency does not hold (an IPv6 field of an IPv4
    packet, a TCP port of a UDP one): the rule does not match."""


class _Run:
    """One packet through the table."""

    def __init__(self, t: Table, pk: Packet, names: Mapping[str, CounterKey]) -> None:
        self.t, self.pk, self.names = t, pk, names
        self.mark = 0
        self.steps: list[Step] = []
        self.decided: CounterKey | None = None

    # -- values ----------------------------------------------------------------

    def value(self, e: Any) -> Any:
        """A left-hand expression's value for the packet."""
        if isinstance(e, dict) and "payload" in e:
            return self.payload(e["payload"])
        if isinstance(e, dict) and "meta" in e:
            key = e["meta"].get("key")
            if key == "l4proto":
                return self.pk.protocol
            if key == "mark":
                return self.mark
            if key == "nfproto":
                return 2 if self.pk.family == 4 else 10
        if isinstance(e, dict) and "concat" in e:
            return tuple(self.value(x) for x in e["concat"])
        if isinstance(e, dict) and "&" in e:
            a, b = e["&"]
            return int(self.value(a)) & int(b)
        if isinstance(e, dict) and "|" in e:
            a, b = e["|"]
            return int(self.value(a)) | int(b)
        raise TraceError(f"cannot evaluate {e!r:.120}")

    def payload(self, p: dict[str, Any]) -> Any:
        proto, fld = p.get("protocol"), p.get("field")
        pk = self.pk
        if proto in ("ip", "ip6"):
            if (proto == "ip") != (pk.family == 4):
                raise _Fail
            if fld in ("saddr", "daddr"):
                return ipaddress.ip_address(pk.src if fld == "saddr" else pk.dst)
        elif proto in ("icmp", "icmpv6"):
            if pk.protocol != ICMP[4 if proto == "icmp" else 6]:
                raise _Fail
            if fld == "type":
                return pk.icmp_type
            if fld == "code":
                return pk.icmp_code
        elif proto == "th" or (proto in BY_NAME and BY_NAME[proto] in PORTED):
            if proto != "th" and pk.protocol != BY_NAME[proto]:
                raise _Fail
            if fld in ("sport", "dport"):
                port = pk.sport if fld == "sport" else pk.dport
                if port is None:
                    # A portless packet's "port" is other header bytes in
                    # the kernel: not something to explain from.
                    raise TraceError(f"{proto} {fld} of a packet without ports")
                return port
        raise TraceError(f"cannot evaluate payload {p!r:.120}")

    def member(self, v: Any, elem: Any) -> bool:
        """Whether value `v` is (in) one set element."""
        if isinstance(elem, dict):
            if "prefix" in elem:
                pre = elem["prefix"]
                net = ipaddress.ip_network(f"{pre['addr']}/{pre['len']}", strict=False)
                return isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address) and v in net
            if "range" in elem:
                lo, hi = elem["range"]
                return bool(_scalar(lo, v) <= v <= _scalar(hi, v))
            if "concat" in elem:
                parts = elem["concat"]
                return len(parts) == len(v) and all(
                    self.member(a, b) for a, b in zip(v, parts, strict=True)
                )
            if "elem" in elem:  # an element with options (timeout, comment)
                return self.member(v, elem["elem"].get("val"))
            raise TraceError(f"cannot evaluate set element {elem!r:.120}")
        return bool(v == _scalar(elem, v))

    def right(self, v: Any, r: Any) -> bool:
        if isinstance(r, str) and r.startswith("@"):
            if r[1:] not in self.t.sets:
                raise TraceError(f"set {r} is not in the table")
            return any(self.member(v, e) for e in self.t.sets[r[1:]])
        if isinstance(r, dict) and "set" in r:
            return any(self.member(v, e) for e in r["set"])
        return self.member(v, r)

    def match(self, m: dict[str, Any]) -> bool:
        op = m.get("op", "==")
        v = self.value(m["left"])
        hit = self.right(v, m["right"])
        if op in ("==", "in"):
            return hit
        if op == "!=":
            return not hit
        raise TraceError(f"cannot evaluate operator {op!r:.20}")

    # -- statements ------------------------------------------------------------

    def chain(self, name: str, depth: int = 0) -> Verdict | None:
        """Run one chain; a verdict ends the packet's way (None: returned)."""
        if depth > _MAX_DEPTH or name not in self.t.chains:
            raise TraceError(f"chain {name} is not in the table (or jumps too deep)")
        for exprs in self.t.chains[name]:
            outcome = self.rule(exprs, depth)
            if outcome == "return":
                return None
            if isinstance(outcome, Verdict):
                return outcome
        return None

    def rule(self, exprs: list[dict[str, Any]], depth: int) -> Verdict | str | None:
        counter = next((e["counter"] for e in exprs if isinstance(e.get("counter"), str)), None)
        key = self.names.get(counter) if counter is not None else None
        try:
            hit = all(self.match(e["match"]) for e in exprs if "match" in e)
        except _Fail:
            hit = False
        if counter is not None:
            self.steps.append(Step(key, hit))
        if not hit:
            return None
        for e in exprs:
            if "match" in e or "counter" in e or "log" in e:
                continue
            if "mangle" in e:
                self.mangle(e["mangle"])
            elif "jump" in e:
                verdict = self.chain(e["jump"]["target"], depth + 1)
                if verdict is not None:
                    return verdict
            elif "return" in e:
                if key is not None and self.mark & R.ACCEPT_MARK and self.decided is None:
                    self.decided = key
                return "return"
            elif "drop" in e:
                self.decided = key
                return Verdict.DENY
            elif "accept" in e:
                self.decided = key
                return Verdict.ALLOW
            else:
                raise TraceError(f"cannot evaluate statement {e!r:.120}")
        return None

    def mangle(self, m: dict[str, Any]) -> None:
        if m.get("key") != {"meta": {"key": "mark"}}:
            raise TraceError(f"cannot evaluate {m!r:.120}")
        self.mark = int(self.value(m["value"])) & 0xFFFFFFFF


def _scalar(elem: Any, like: Any) -> Any:
    """A set element or constant as the value it is compared with."""
    if isinstance(like, ipaddress.IPv4Address | ipaddress.IPv6Address):
        try:
            return ipaddress.ip_address(str(elem))
        except ValueError:
            return None
    return elem


def trace_endpoint_chain(
    t: Table, chain: str, pk: Packet, names: Mapping[str, CounterKey]
) -> ChainTrace:
    """The packet through one endpoint chain as the kernel holds it.
    `names` maps counter names to what they count (rules counting into
    another counter are steps of no policy).  Raises TraceError."""
    run = _Run(t, pk, names)
    verdict = run.chain(chain)
    if verdict is None:
        # Returned: allowed if an Allow set the accept bit; otherwise the
        # base chain drops what no endpoint rule accepted.
        verdict = Verdict.ALLOW if run.mark & R.ACCEPT_MARK else Verdict.DENY
    return ChainTrace(tuple(run.steps), verdict, run.decided)


def dispatch_target(t: Table, map_name: str, iface: str) -> str | None:
    """The chain the dispatch map sends an interface's packets to."""
    return t.maps.get(map_name, {}).get(iface) or None
