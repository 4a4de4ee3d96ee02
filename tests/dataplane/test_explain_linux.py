"""`explain` against a real kernel: for each packet, the explanation from
the computed tables and the one from the kernel's live ruleset name the
same deciding rule and verdict, and the packet, sent between pods in
namespaces, raises exactly that rule's counter and arrives or not as said.

The cluster is the A/C/E write-up's (`test_linux_dataplane.Cluster`): A, C
and E share a profile that admits its own group, B has its own (admitting
only group b); A, B and C are on node n1, E on n2.
"""

from __future__ import annotations

from typing import Any

from dataplane.batch import Action, Direction
from dataplane.policy_counters import CounterKey
from dataplane.trace import Packet, Verdict, packet
from felix_client.explain import Explanation, explain_computed, explain_kernel
from tests.dataplane.test_linux_dataplane import PODS, V3, Cluster, wep
from tests.dataplane.test_policy_counters_linux import ALLOW_REST, DENY_BLOCKED, policy

ICMP, TCP = 1, 6


def tier(name: str, order: int) -> tuple[str, Any]:
    return f"{V3}/tiers/{name}", {
        "kind": "Tier",
        "metadata": {"name": name},
        "spec": {"order": order},
    }


# A tier before `default` that passes the shared group on and ends, for
# everything else, in Deny.
SECURITY = [
    tier("security", 10),
    policy(
        "security.pass-shared",
        {
            "tier": "security",
            "selector": "group == 'shared'",
            "types": ["Ingress"],
            "ingress": [{"action": "Pass", "source": {"selector": "group == 'shared'"}}],
        },
    ),
]


def explain_both(cluster: Cluster, node: str, pk: Packet) -> Explanation:
    """Both explanations; they must agree on every hop."""
    dp = cluster.dps[node]
    computed = explain_computed(node, pk, dp.endpoints, dp.chains, dp.ipsets)
    table, names = dp.kernel_table()
    kernel = explain_kernel(node, pk, dp.endpoints, table, names)
    assert [(h.direction, h.trace.verdict, h.trace.decided) for h in kernel.hops] == [
        (h.direction, h.trace.verdict, h.trace.decided) for h in computed.hops
    ]
    assert computed.verdict == kernel.verdict
    return kernel


def send(cluster: Cluster, src: str, pk: Packet) -> tuple[bool, set[CounterKey]]:
    """Send the packet from pod `src`: (answered, counters on n1 it raised)."""
    before = cluster.dps["n1"].policy_counters()
    if pk.protocol == ICMP:
        answered = cluster.f.ping(cluster.pods[src], pk.dst)
    else:
        dst = next(p for p, (_, ip, _) in PODS.items() if ip == pk.dst)
        listener = cluster.f.listen(cluster.pods[dst], pk.dport or 0, 3)
        try:
            answered = any(
                cluster.f.connect(cluster.pods[src], pk.dst, pk.dport or 0) for _ in range(3)
            )
        finally:
            listener.wait(10)
    after = cluster.dps["n1"].policy_counters()
    raised = {k for k, r in after.items() if r.packets > (before[k].packets if k in before else 0)}
    return answered, raised


def check(
    cluster: Cluster, src: str, dst: str, protocol: int = ICMP, port: int | None = None
) -> Explanation:
    """Explain on n1, then send: the rules the explanation says matched
    (a Pass, then the deciding rule; staged rules apart) are exactly the
    counters the packet raised, and it arrives exactly when the explanation
    allows it."""
    pk = packet(PODS[src][1], PODS[dst][1], protocol, port=port)
    ex = explain_both(cluster, "n1", pk)
    answered, raised = send(cluster, src, pk)
    matched = {s.key for h in ex.hops for s in h.trace.steps if s.matched and s.key}
    assert raised == matched, ex.text()
    assert {h.trace.decided for h in ex.hops} <= raised | {None}
    assert answered == (ex.verdict is Verdict.ALLOW), ex.text()
    return ex


def decided(ex: Explanation, direction: Direction) -> tuple[str, str, str, Action] | None:
    (hop,) = [h for h in ex.hops if h.direction is direction]
    k = hop.trace.decided
    return None if k is None else (k.ref.tier, k.ref.policy, k.ref.rule, k.action)


def test_the_profiles_of_the_write_up_and_the_profiles_default(cluster: Cluster) -> None:
    same = check(cluster, "a", "c")  # one node: A's egress, then C's ingress
    assert same.verdict is Verdict.ALLOW
    assert decided(same, Direction.EGRESS) == ("__PROFILE__", "shared", "0", Action.ALLOW)
    assert decided(same, Direction.INGRESS) == ("__PROFILE__", "shared", "0", Action.ALLOW)
    # B's profile admits only its own group: no rule matches, the profiles' end denies.
    other = check(cluster, "a", "b")
    assert decided(other, Direction.INGRESS) == (
        "__PROFILE__",
        "__NO_PROFILE_MATCHED__",
        "default",
        Action.DENY,
    )
    assert "end of profiles: Deny  <- decided" in other.text()
    # From E on the other node: only C's ingress is on n1.
    remote = check(cluster, "e", "c", TCP, 8080)
    assert [h.direction for h in remote.hops] == [Direction.INGRESS]
    assert remote.verdict is Verdict.ALLOW


def test_a_tier_that_passes_then_the_default_tier_decides(cluster: Cluster) -> None:
    blocked = wep("a", "n1", PODS["a"][1], "shared", role="blocked")
    cluster.change(
        [*SECURITY, policy("deny-blocked", DENY_BLOCKED), policy("allow-rest", ALLOW_REST), blocked]
    )
    # A is shared but blocked: passed on by security, denied by rule 1 of deny-blocked.
    ex = check(cluster, "a", "c")
    assert decided(ex, Direction.INGRESS) == ("default", "deny-blocked", "1", Action.DENY)
    text = ex.text()
    assert "tier security, policy security.pass-shared: rule 0 Pass" in text
    assert "tier default, policy deny-blocked: rule 1 Deny  <- decided" in text
    # E is shared: passed on, then admitted by allow-rest.
    ex = check(cluster, "e", "c", TCP, 8080)
    assert decided(ex, Direction.INGRESS) == ("default", "allow-rest", "0", Action.ALLOW)
    # B is not shared: nothing in security matches, the tier's end denies.
    ex = check(cluster, "b", "c")
    assert decided(ex, Direction.INGRESS) == ("security", "__END_OF_TIER__", "default", Action.DENY)


def test_a_staged_policy_shows_what_it_would_decide(cluster: Cluster) -> None:
    blocked = wep("a", "n1", PODS["a"][1], "shared", role="blocked")
    cluster.change([policy("deny-blocked", DENY_BLOCKED, staged=True), blocked])
    ex = check(cluster, "a", "c")
    assert ex.verdict is Verdict.ALLOW  # staged: the profile still decides
    (ingress,) = [h for h in ex.to_dict()["hops"] if h["direction"] == "ingress"]
    assert ingress["staged"] == [
        {"tier": "default", "policy": "deny-blocked", "rule": "1", "action": "Deny", "staged": True}
    ]
    assert ingress["decided"]["tier"] == "__PROFILE__"
    assert "staged policy deny-blocked: rule 1 would Deny" in ex.text()
