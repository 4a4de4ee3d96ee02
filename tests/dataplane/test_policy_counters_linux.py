"""Verdict counters and staged policies against a real kernel: packets
between pods in namespaces, counted by the counters the agent puts on every
policy rule, read back the way /metrics reads them.

The cluster is the A/C/E write-up's (`test_linux_dataplane.Cluster`): A, C
and E share a profile that admits its own group; A and C are on node n1,
E on n2.
"""

from __future__ import annotations

from typing import Any

from dataplane.batch import Action, Direction
from dataplane.policy_counters import CounterKey, Reading
from felix_client.verdict_series import VerdictSeries
from tests.dataplane.test_linux_dataplane import PODS, V3, Cluster, wep

C_IP = PODS["c"][1]
BLOCKED = wep("a", "n1", PODS["a"][1], "shared", role="blocked")


def policy(name: str, spec: dict[str, Any], *, staged: bool = False) -> tuple[str, Any]:
    kind = "StagedGlobalNetworkPolicy" if staged else "GlobalNetworkPolicy"
    plural = "stagedglobalnetworkpolicies" if staged else "globalnetworkpolicies"
    return f"{V3}/{plural}/{name}", {"kind": kind, "metadata": {"name": name}, "spec": spec}


# Ingress to the shared group: a TCP rule nothing here sends, then a Deny of
# the blocked role.
DENY_BLOCKED = {
    "selector": "group == 'shared'",
    "order": 10,
    "types": ["Ingress"],
    "ingress": [
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [9]}},
        {"action": "Deny", "source": {"selector": "role == 'blocked'"}},
    ],
}
ALLOW_REST = {
    "selector": "group == 'shared'",
    "order": 20,
    "types": ["Ingress"],
    "ingress": [{"action": "Allow"}],
}


def counts(cluster: Cluster, node: str = "n1") -> dict[CounterKey, Reading]:
    return cluster.dps[node].policy_counters()


def packets(readings: dict[CounterKey, Reading], **want: Any) -> int:
    """Packets of the counters whose ref and key fields equal `want`."""
    total = 0
    for key, r in readings.items():
        fields = {
            "tier": key.ref.tier,
            "policy": key.ref.policy,
            "rule": key.ref.rule,
            "staged": key.ref.staged,
            "direction": key.direction,
            "action": key.action,
        }
        if all(fields[k] == v for k, v in want.items()):
            total += r.packets
    return total


def pings(cluster: Cluster, src: str, n: int) -> list[bool]:
    return [cluster.f.ping(cluster.pods[src], C_IP) for _ in range(n)]


def test_traffic_denied_by_a_named_policy_raises_its_deny_counter_and_no_other(
    cluster: Cluster,
) -> None:
    cluster.change(
        [policy("deny-blocked", DENY_BLOCKED), policy("allow-rest", ALLOW_REST), BLOCKED]
    )
    assert pings(cluster, "a", 3) == [False] * 3
    got = counts(cluster)
    deny = {"policy": "deny-blocked", "rule": "1", "direction": Direction.INGRESS}
    assert packets(got, **deny, action=Action.DENY, tier="default") == 3
    # No other deny counted anything: not the end of the tier, not the
    # profiles' default, not the policy's other rule.
    others = {
        k: r for k, r in got.items() if not (k.ref.policy == "deny-blocked" and k.ref.rule == "1")
    }
    assert packets(others, action=Action.DENY) == 0
    assert packets(got, policy="allow-rest") == 0
    # E is not blocked: the next policy admits it, on the node of C.
    assert pings(cluster, "e", 2) == [True] * 2
    after = counts(cluster)
    assert packets(after, policy="allow-rest", rule="0", action=Action.ALLOW) == 2
    assert packets(after, **deny, action=Action.DENY) == 3
    # The metric series say the same, labelled as documented.
    series = {s.labels: s for s in VerdictSeries(cluster.dps["n1"].policy_counters, 100).series()}
    assert series[("default", "deny-blocked", "1", "ingress", "Deny")].packets == 3
    assert series[("default", "allow-rest", "0", "ingress", "Allow")].packets == 2


def test_a_staged_deny_counts_what_it_would_drop_and_promoting_it_drops_exactly_that(
    cluster: Cluster,
) -> None:
    staged = policy("deny-blocked", DENY_BLOCKED, staged=True)
    cluster.change([staged, BLOCKED])
    # Staged: everything still flows (the profile admits the shared group).
    assert pings(cluster, "a", 3) == [True] * 3
    assert pings(cluster, "e", 2) == [True] * 2
    would = counts(cluster)
    # Promoted, it would be the tier's only policy for C: A's echoes meet its
    # Deny, E's the end of the tier.
    by_rule = packets(would, staged=True, policy="deny-blocked", rule="1", action=Action.DENY)
    by_end = packets(would, staged=True, policy="deny-blocked", rule="default", action=Action.DENY)
    assert (by_rule, by_end) == (3, 2)
    assert packets(would, staged=False, action=Action.DENY) == 0
    # Promote: the enforced kind is written, the staged one removed.
    cluster.change([policy("deny-blocked", DENY_BLOCKED), (staged[0], None)])
    assert pings(cluster, "a", 3) == [False] * 3
    assert pings(cluster, "e", 2) == [False] * 2
    now = counts(cluster)
    assert packets(now, staged=True) == 0  # the staged counters went with it
    dropped_by_rule = packets(now, policy="deny-blocked", rule="1", action=Action.DENY)
    dropped_at_end = packets(now, policy="__END_OF_TIER__", tier="default", action=Action.DENY)
    assert (dropped_by_rule, dropped_at_end) == (by_rule, by_end)


def test_a_staged_policy_behind_an_enforced_allow_counts_only_what_reaches_it(
    cluster: Cluster,
) -> None:
    # An enforced policy ordered first admits E; the staged deny sits behind
    # it and, promoted, would see only what that policy leaves.
    first = dict(
        ALLOW_REST, order=5, ingress=[{"action": "Allow", "source": {"selector": "!has(role)"}}]
    )
    cluster.change(
        [
            policy("allow-unlabelled", first),
            policy("deny-blocked", DENY_BLOCKED, staged=True),
            BLOCKED,
        ]
    )
    assert pings(cluster, "e", 2) == [True] * 2
    # A is labelled: the enforced policy does not admit it; the tier ends in
    # Deny, so A's echo is dropped by the end of the tier, which the staged
    # Deny (before it) counts as its own would-be verdict.
    assert pings(cluster, "a", 1) == [False]
    got = counts(cluster)
    assert packets(got, staged=True, rule="1", action=Action.DENY) == 1
    assert packets(got, staged=True, rule="default") == 0  # an enforced policy is in the tier
    assert packets(got, policy="allow-unlabelled", action=Action.ALLOW) == 2
    assert packets(got, policy="__END_OF_TIER__", action=Action.DENY) == 1


def test_a_staged_kubernetes_policy_counts_under_calicos_name(cluster: Cluster) -> None:
    key, c = wep("c", "n1", C_IP, "shared")
    c["metadata"]["labels"]["projectcalico.org/orchestrator"] = "k8s"  # a Kubernetes pod
    isolate = (
        f"{V3}/stagedkubernetesnetworkpolicies/default/isolate-c",
        {
            "kind": "StagedKubernetesNetworkPolicy",
            "metadata": {"name": "isolate-c", "namespace": "default"},
            "spec": {
                "podSelector": {"matchLabels": {"group": "shared"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
            },
        },
    )
    cluster.change([(key, c), isolate])
    assert pings(cluster, "a", 2) == [True] * 2  # A is no client: it would be denied
    got = counts(cluster)
    assert packets(got, staged=True, policy="default/knp.default.isolate-c", rule="default") == 2
    assert packets(got, staged=True, rule="0") == 0
    assert packets(got, staged=False, action=Action.DENY) == 0
