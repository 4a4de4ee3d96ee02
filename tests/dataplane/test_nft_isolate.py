"""Isolating the object the kernel refuses (pure: the kernel is a function
that refuses scripts naming one object, standing in for nft)."""

from __future__ import annotations

import pytest

from dataplane import Action, ChainKey, Direction, EndpointInfo, EndpointKind, IpSetId, Match, Rule
from dataplane.errors import DataplaneError
from dataplane.linux import nft_model as M
from dataplane.linux import nft_render as R
from dataplane.linux.nft_isolate import commit_isolated

A = ChainKey("/k/wep/a", Direction.INGRESS, 4)
B = ChainKey("/k/wep/b", Direction.INGRESS, 4)
SID = IpSetId(4, 'app == "db"')
RULES = (
    Rule(Action.ALLOW, src=Match(ipset=SID), group="default"),
    Rule(Action.DENY, origin="end of profiles"),
)
# A's policy has a rule of its own (port 8443), which the kernel will refuse.
RULES_A = (
    Rule(Action.ALLOW, protocol=6, dst=Match(ports=("8443",)), group="default"),
    *RULES,
)


def desired() -> M.NftModel:
    m = M.base_model()
    M.set_set(m, SID, {"10.0.0.1/32"})
    M.set_chain(m, A, RULES_A)
    M.set_chain(m, B, RULES)
    eps = {
        A.endpoint: EndpointInfo(EndpointKind.WORKLOAD, "calia", ("10.0.0.9",)),
        B.endpoint: EndpointInfo(EndpointKind.WORKLOAD, "calib", ("10.0.0.8",)),
    }
    M.set_dispatch(m, {A: RULES_A, B: RULES}, eps, lambda i: [i.interface])
    return m


class Kernel:
    """Applies scripts to a log; refuses any that names `refuse`."""

    def __init__(self, refuse: str) -> None:
        self.refuse = refuse
        self.applied: list[str] = []

    def __call__(self, script: list[str]) -> None:
        if any(self.refuse in s for s in script):
            raise DataplaneError(f"refused {self.refuse}")
        self.applied += script


def test_one_refused_chain_drops_and_everything_else_goes_in() -> None:
    kernel = Kernel("dport 8443")
    held, refused, written = commit_isolated(kernel, M.NftModel(table=False), desired())
    group = f"{R.chain_name(A)}_0"
    assert set(refused) == {f"chain {group}"}
    assert held.chains[group].rules == M.chain_def(group, "", M.REFUSED_CHAIN).rules
    # B's chains, the set, the maps and the base chains are all in.
    want = desired()
    for name in (R.chain_name(B), f"{R.chain_name(B)}_0", "input", "forward"):
        assert held.chains[name] == want.chains[name]
    assert held.sets == want.sets
    assert held.maps == want.maps
    assert written == len(kernel.applied)
    assert M.diff(held, want) != []  # the refused group is retried by the next resync
    assert any("counter drop" in s and group in s for s in kernel.applied)


def test_every_chain_with_a_refused_rule_drops() -> None:
    kernel = Kernel(f"@{R.set_name(SID)}")  # the set is fine; every rule using it is refused
    held, refused, _ = commit_isolated(kernel, M.NftModel(table=False), desired())
    assert R.set_name(SID) in held.sets
    for ck in (A, B):
        group = f"{R.chain_name(ck)}_0"
        assert f"chain {group}" in refused
        assert [t for _, t in held.chains[group].rules] == M.REFUSED_CHAIN


def test_a_refused_base_chain_cannot_be_left_out() -> None:
    kernel = Kernel(f"add rule inet {R.TABLE} input ")
    with pytest.raises(DataplaneError):
        commit_isolated(kernel, M.NftModel(table=False), desired())
