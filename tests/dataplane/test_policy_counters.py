"""Verdict counters and staged rules in the nftables model (pure: no
kernel), and their series with the cardinality limit."""

from __future__ import annotations

import struct

import pytest

from dataplane import Action, ChainKey, Direction, Match, Rule
from dataplane.batch import RuleRef
from dataplane.errors import DataplaneError
from dataplane.linux import nft_counters as NC
from dataplane.linux import nft_model as M
from dataplane.linux import nft_render as R
from dataplane.policy_counters import CounterKey, Reading, counter_name
from felix_client.verdict_series import OVERFLOW, Series, VerdictSeries

A = ChainKey("/k/wep/a", Direction.INGRESS, 4)
B = ChainKey("/k/wep/b", Direction.INGRESS, 4)
DENY_REF = RuleRef("default", "ns/deny", "0")
DENY = Rule(Action.DENY, src=Match(nets=("10.0.0.0/8",)), group="default", ref=DENY_REF)
STAGED = Rule(
    Action.DENY,
    src=Match(nets=("10.1.0.0/16",)),
    group="default",
    ref=RuleRef("default", "ns/s", "0", staged=True),
)
STAGED_ALLOW = Rule(Action.ALLOW, group="default", ref=RuleRef("default", "ns/s", "1", staged=True))


def key(ref: RuleRef, action: Action, direction: Direction = Direction.INGRESS) -> CounterKey:
    return CounterKey(ref, direction, action)


def test_one_policy_rule_counts_into_one_counter_in_every_chain_that_holds_it() -> None:
    m = M.base_model()
    M.set_chain(m, A, (DENY,))
    M.set_chain(m, B, (DENY,))
    name = counter_name(key(DENY_REF, Action.DENY))
    assert m.counters == {name: key(DENY_REF, Action.DENY)}
    bodies = [s for n, c in m.chains.items() if n.startswith("e_") for _, s in c.rules]
    assert sum(f'counter name "{name}" drop' in s for s in bodies) == 2
    # The counter goes with the last chain that counts into it, not before.
    M.remove_chain(m, A)
    assert name in m.counters
    M.remove_chain(m, B)
    assert m.counters == {}
    assert m.counter_refs == {}


def test_the_same_rule_egress_and_ingress_counts_apart() -> None:
    assert counter_name(key(DENY_REF, Action.DENY)) != counter_name(
        key(DENY_REF, Action.DENY, Direction.EGRESS)
    )


def test_counters_are_added_before_the_rules_that_use_them_and_deleted_after() -> None:
    old = M.base_model()
    new = old.copy()
    M.set_chain(new, A, (DENY,))
    script = M.diff(old, new)
    add = next(i for i, s in enumerate(script) if s.startswith("add counter"))
    first_rule = next(i for i, s in enumerate(script) if s.startswith("add rule"))
    assert add < first_rule
    back = M.diff(new, old)
    delete = next(i for i, s in enumerate(back) if s.startswith("delete counter"))
    assert delete == len(back) - 1
    assert any(s.startswith("delete chain") for s in back[:delete])


def test_a_staged_policy_is_a_chain_of_its_own_that_only_counts_and_returns() -> None:
    bodies = dict(R.chain_bodies(A, (STAGED, STAGED_ALLOW, DENY)))
    staged = bodies[f"{R.chain_name(A)}_0_0"]
    assert len(staged) == 2
    for stmt in staged:
        assert stmt.endswith("return")
        assert "counter name" in stmt
        assert "drop" not in stmt
        assert "accept" not in stmt
        assert "mark set" not in stmt
    group = bodies[f"{R.chain_name(A)}_0"]
    # The group jumps to it where the policy would be, then goes on.
    assert group[0] == f"jump {R.chain_name(A)}_0_0"
    assert group[1].endswith("drop")


def test_two_staged_policies_in_a_row_are_two_chains() -> None:
    other = Rule(Action.DENY, group="default", ref=RuleRef("default", "ns/t", "0", staged=True))
    bodies = dict(R.chain_bodies(A, (STAGED, other)))
    assert f"{R.chain_name(A)}_0_0" in bodies
    assert f"{R.chain_name(A)}_0_1" in bodies


def test_a_kernel_listing_gives_the_counter_names() -> None:
    doc = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {
                "counter": {
                    "family": "inet",
                    "name": "c_1",
                    "table": "t",
                    "packets": 3,
                    "bytes": 252,
                }
            },
            {"rule": {"chain": "e_x", "comment": "k", "expr": [{"counter": "c_1"}]}},
        ]
    }
    assert M.from_kernel_json(doc).counters == {"c_1": None}


def folded(out: list[Series], direction: str = "ingress", action: str = "Deny") -> int:
    """Packets of the folded series of one direction and action (enforced)."""
    (s,) = [
        s
        for s in out
        if s.labels[:2] == (OVERFLOW, OVERFLOW)
        and s.labels[3:] == (direction, action)
        and not s.staged
    ]
    return s.packets


def readings(n: int, packets: int = 1) -> dict[CounterKey, Reading]:
    return {
        key(RuleRef("default", f"p{i:02}", "0"), Action.DENY): Reading(packets, 100 * packets)
        for i in range(n)
    }


def test_counters_past_the_limit_are_folded_into_one_series_per_direction_and_action() -> None:
    vs = VerdictSeries(dict, limit=2)
    out = vs.update(readings(5, packets=3))
    own = [s for s in out if s.labels[1] != OVERFLOW]
    assert [s.labels[1] for s in own] == ["p00", "p01"]
    (deny,) = [s for s in out if s.labels[1] == OVERFLOW and s.packets]
    assert deny.labels == (OVERFLOW, OVERFLOW, "", "ingress", "Deny")
    assert (deny.packets, deny.bytes, deny.staged, vs.folded) == (9, 900, False, 3)
    # The others are there, at zero, as they are before anything is folded.
    assert folded(out, "egress", "Allow") == 0
    assert len([s for s in VerdictSeries(dict, limit=2).update({}) if s.packets == 0]) == 8


def test_a_folded_series_only_grows_as_its_counters_come_and_go() -> None:
    vs = VerdictSeries(dict, limit=1)
    vs.update(readings(3, packets=2))  # p01, p02 folded: 4
    grown = readings(3, packets=5)  # +3 each: 10
    del grown[key(RuleRef("default", "p02", "0"), Action.DENY)]  # its policy is gone
    out = vs.update(grown)
    assert folded(out) == 7
    # p02 comes back with a new counter, from zero.
    out = vs.update(
        readings(3, packets=5) | {key(RuleRef("default", "p02", "0"), Action.DENY): Reading(1, 1)}
    )
    assert folded(out) == 8


def test_a_series_is_kept_by_its_counter_and_freed_when_its_rules_leave() -> None:
    vs = VerdictSeries(dict, limit=1)
    first = readings(1)
    vs.update(first)
    later = {key(RuleRef("default", "a-first", "0"), Action.DENY): Reading(1, 1), **first}
    out = vs.update(later)
    # The older series keeps its place although "a-first" sorts first.
    assert [s.labels[1] for s in out if s.labels[1] != OVERFLOW] == ["p00"]
    out = vs.update({key(RuleRef("default", "a-first", "0"), Action.DENY): Reading(2, 2)})
    assert [s.labels[1] for s in out if s.labels[1] != OVERFLOW] == []  # folded, stays so
    assert vs.folded == 1


def test_limit_zero_exports_only_the_folded_series_and_a_negative_one_is_refused() -> None:
    out = VerdictSeries(dict, limit=0).update(readings(3))
    assert {s.labels[0] for s in out} == {OVERFLOW}
    assert folded(out) == 3
    with pytest.raises(ValueError, match="limit"):
        VerdictSeries(dict, limit=-1)


def test_the_kernel_is_read_once_per_interval_however_many_scrape() -> None:
    now = [100.0]
    calls: list[int] = []

    def read() -> dict[CounterKey, Reading]:
        calls.append(1)
        return readings(1, packets=len(calls))

    vs = VerdictSeries(read, limit=10, min_interval=2.0, clock=lambda: now[0])
    assert vs.series()[0].packets == 1
    now[0] += 1.0
    assert vs.series()[0].packets == 1
    assert len(calls) == 1
    now[0] += 1.5
    assert vs.series()[0].packets == 2
    assert len(calls) == 2


def _nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _msg(kind: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 2, 1, 0) + body


def test_a_counter_dump_is_parsed_to_the_end_and_an_error_is_raised() -> None:
    data = 0x8000 | NC.NFTA_OBJ_DATA  # with the nested flag, as the kernel sends it
    counter = _nla(NC.NFTA_COUNTER_BYTES, struct.pack(">Q", 252)) + _nla(
        NC.NFTA_COUNTER_PACKETS, struct.pack(">Q", 3)
    )
    body = struct.pack("=BBH", 1, 0, 0) + _nla(NC.NFTA_OBJ_TABLE, b"felix_typha\0")
    body += _nla(NC.NFTA_OBJ_NAME, b"c_1\0") + _nla(data, counter)
    newobj = (NC.NFNL_SUBSYS_NFTABLES << 8) | NC.NFT_MSG_NEWOBJ
    out: dict[str, Reading] = {}
    assert not NC.parse(_msg(newobj, body), out)
    assert NC.parse(_msg(NC.NLMSG_DONE, b"\0" * 4), out)
    assert out == {"c_1": Reading(3, 252)}
    with pytest.raises(DataplaneError, match="No such file"):
        NC.parse(_msg(NC.NLMSG_ERROR, struct.pack("=i", -2)), {})
    with pytest.raises(DataplaneError, match="malformed"):
        NC.parse(struct.pack("=IHHII", 4, 0, 0, 0, 0), {})


def test_a_failed_read_keeps_the_last_series_and_is_counted() -> None:
    answers: list[dict[CounterKey, Reading] | None] = [readings(2, packets=4), None]

    def read() -> dict[CounterKey, Reading]:
        got = answers.pop(0)
        if got is None:
            raise DataplaneError("no such table")
        return got

    vs = VerdictSeries(read, limit=10, min_interval=0)
    first = vs.series()
    assert vs.series() == first
    assert vs.read_failures == 1
