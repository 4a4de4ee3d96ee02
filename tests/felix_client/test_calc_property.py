"""For random sequences of changes, the incrementally maintained routes, IP
sets and chains equal a from-scratch computation over the resulting state."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from felix_client.calc.calculator import Calculator
from felix_client.calc.full import compute
from felix_client.dataplane import MemoryDataplane

V3 = "/calico/resources/v3/projectcalico.org"
NODES = ["n1", "n2", "n3"]
BLOCKS = ["10.244.1.0/26", "10.244.2.0/26", "10.244.3.0/26", "10.244.4.0/26"]
MODES = ["Never", "Always", "CrossSubnet"]
SELECTORS = [
    "app == 'web'",
    "app != 'db'",
    "has(tier)",
    "app in {'web', 'db'}",
    "all()",
    "!has(app)",
    "tier == 'x' || app == 'db'",
    "app ==",
]  # the last one is bad
NS = ["a", "b"]

label_sets = st.dictionaries(
    st.sampled_from(["app", "tier"]), st.sampled_from(["web", "db", "x"]), max_size=2
)
# Few IPs, so endpoints share them, move in and out of blocks (.65 is outside
# every /26 block) and keep their labels while their IP changes.
ips = st.builds(lambda b, h: f"10.244.{b}.{h}/32", st.integers(1, 5), st.sampled_from([1, 2, 65]))


def node_value(name: str, ip_last: int, subnet: int, vx: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"bgp": {"ipv4Address": f"192.168.{subnet}.{ip_last}/24"}}
    if vx:
        spec["ipv4VXLANTunnelAddr"] = f"10.250.0.{ip_last}"
    return {"kind": "Node", "metadata": {"name": name}, "spec": spec}


def rule(action: str, sel: str | None, ns_sel: str | None) -> dict[str, Any]:
    src: dict[str, Any] = {}
    if sel is not None:
        src["selector"] = sel
    if ns_sel is not None:
        src["namespaceSelector"] = ns_sel
    return {"action": action, "source": src} if src else {"action": action}


rules = st.lists(
    st.builds(
        rule,
        st.sampled_from(["Allow", "Deny", "Log", "Pass"]),
        st.none() | st.sampled_from(SELECTORS),
        st.none() | st.sampled_from(["has(team)", "team == 'red'"]),
    ),
    max_size=3,
)

ops = st.one_of(
    st.builds(
        lambda n, last, sub, vx: (f"{V3}/nodes/{n}", node_value(n, last, sub, vx)),
        st.sampled_from(NODES),
        st.integers(1, 9),
        st.integers(0, 1),
        st.booleans(),
    ),
    st.builds(lambda n: (f"{V3}/nodes/{n}", None), st.sampled_from(NODES)),
    st.builds(
        lambda ipip, vx: (
            f"{V3}/ippools/p",
            {
                "kind": "IPPool",
                "metadata": {"name": "p"},
                "spec": {"cidr": "10.244.0.0/16", "ipipMode": ipip, "vxlanMode": vx},
            },
        ),
        st.sampled_from(MODES),
        st.sampled_from(MODES),
    ),
    st.builds(
        lambda c, n: (
            f"/calico/ipam/v2/assignment/ipv4/block/{c.replace('/', '-')}",
            {"cidr": c, "affinity": f"host:{n}"} if n else None,
        ),
        st.sampled_from(BLOCKS),
        st.none() | st.sampled_from(NODES),
    ),
    st.builds(
        lambda i, n, ns, ip, labels, gone: (
            f"{V3}/workloadendpoints/{ns}/w{i}",
            None
            if gone
            else {
                "kind": "WorkloadEndpoint",
                "metadata": {"name": f"w{i}", "namespace": ns, "labels": labels},
                "spec": {
                    "node": n,
                    "interfaceName": f"cali{i}",
                    "ipNetworks": [ip],
                    "profiles": [f"kns.{ns}"],
                },
            },
        ),
        st.integers(0, 6),
        st.sampled_from(NODES),
        st.sampled_from(NS),
        ips,
        label_sets,
        st.booleans().map(lambda b: b and False) | st.just(True),
    ),
    st.builds(
        lambda i, ns, sel, ing, eg, order, gone: (
            f"{V3}/networkpolicies/{ns}/p{i}",
            None
            if gone
            else {
                "kind": "NetworkPolicy",
                "metadata": {"name": f"p{i}", "namespace": ns},
                "spec": {"selector": sel, "order": order, "ingress": ing, "egress": eg},
            },
        ),
        st.integers(0, 2),
        st.sampled_from(NS),
        st.sampled_from(SELECTORS),
        rules,
        rules,
        st.integers(1, 3),
        st.booleans(),
    ),
    st.builds(
        lambda i, sel, ns_sel, ing, gone: (
            f"{V3}/globalnetworkpolicies/g{i}",
            None
            if gone
            else {
                "kind": "GlobalNetworkPolicy",
                "metadata": {"name": f"g{i}"},
                "spec": {
                    "selector": sel,
                    "namespaceSelector": ns_sel,
                    "types": ["Ingress"],
                    "ingress": ing,
                },
            },
        ),
        st.integers(0, 1),
        st.sampled_from(SELECTORS),
        st.sampled_from(["has(team)", "all()"]),
        rules,
        st.booleans(),
    ),
    st.builds(
        lambda ns, team, gone: (
            f"{V3}/profiles/kns.{ns}",
            None
            if gone
            else {
                "kind": "Profile",
                "metadata": {"name": f"kns.{ns}"},
                "spec": {
                    "ingress": [{"action": "Allow"}],
                    "labelsToApply": {"team": team} if team else {},
                },
            },
        ),
        st.sampled_from(NS),
        st.none() | st.sampled_from(["red", "blue"]),
        st.booleans(),
    ),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(ops, min_size=1, max_size=6), min_size=1, max_size=12))
def test_incremental_equals_from_scratch(batches: list[list[tuple[str, Any]]]) -> None:
    calc = Calculator("n1")
    dp = MemoryDataplane()
    state: dict[str, Any] = {}
    for batch in batches:
        changes = []
        for key, value in batch:
            if value is None:
                if key not in state:
                    continue
                state.pop(key)
            else:
                state[key] = value
            changes.append((key, value))
        dp.apply(calc.apply(changes))
        expected = compute(state, "n1")
        assert dp.routes == expected.routes
        assert dp.chains == expected.chains
        assert dp.ipsets == expected.ipsets
