"""Exact ACL chains and IP sets for a crafted cluster."""

from __future__ import annotations

from typing import Any

from commands.demo.cluster import profile
from dataplane import Direction, IpSetId, MemoryDataplane
from dataplane.batch import ChainKey
from felix_client.calc.calculator import Calculator
from felix_client.calc.full import compute

V3 = "/calico/resources/v3/projectcalico.org"


def wep(
    name: str, node: str, ip: str, ns: str = "shop", **labels: str
) -> tuple[str, dict[str, Any]]:
    return f"{V3}/workloadendpoints/{ns}/{name}", {
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {**labels, "projectcalico.org/namespace": ns},
        },
        "spec": {
            "node": node,
            "interfaceName": f"cali{name}",
            "ipNetworks": [f"{ip}/32"],
            "profiles": [f"kns.{ns}"],
        },
    }


ALLOW_FRONTEND = (
    f"{V3}/networkpolicies/shop/allow-frontend",
    {
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-frontend", "namespace": "shop"},
        "spec": {
            "order": 100,
            "selector": "app == 'web'",
            "types": ["Ingress", "Egress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": "app == 'frontend'"},
                    "destination": {"ports": [80, "8080:8090"]},
                }
            ],
            "egress": [{"action": "Deny", "destination": {"nets": ["10.0.0.0/8"]}}],
        },
    },
)
GLOBAL_ICMP = (
    f"{V3}/globalnetworkpolicies/icmp",
    {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "icmp"},
        "spec": {
            "order": 10,
            "selector": "all()",
            "namespaceSelector": "projectcalico.org/name == 'shop'",  # pcns. on the profile
            "types": ["Ingress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "ICMP",
                    "source": {"namespaceSelector": "has(projectcalico.org/name)"},
                }
            ],
        },
    },
)

CLUSTER = [
    profile("shop"),
    profile("other"),
    wep("web1", "n1", "10.0.1.1", app="web"),
    wep("db1", "n1", "10.0.1.2", app="db"),
    wep("fe1", "n2", "10.0.2.1", app="frontend"),
    wep("fe2", "n3", "10.0.3.1", app="frontend"),
    wep("fe3", "n3", "10.0.3.2", ns="other", app="frontend"),  # other namespace
    ALLOW_FRONTEND,
    GLOBAL_ICMP,
]

FE = IpSetId(4, '(projectcalico.org/namespace == "shop" && app == "frontend")')
ANY_NS = IpSetId(4, "has(pcns.projectcalico.org/name)")


def program(items: list[tuple[str, Any]]) -> tuple[Calculator, MemoryDataplane]:
    calc = Calculator("n1")
    dp = MemoryDataplane()
    dp.apply(calc.apply(items))
    return calc, dp


def chain_text(dp: MemoryDataplane, ep: str, direction: str) -> list[str]:
    key = ChainKey(f"{V3}/workloadendpoints/shop/{ep}", Direction(direction), 4)
    return [str(r) for r in dp.chains[key]]


def test_ordered_policies_then_end_of_tier() -> None:
    _, dp = program(CLUSTER)
    assert chain_text(dp, "web1", "ingress") == [
        f"allow proto 1 from set {ANY_NS} # icmp",
        f"allow proto 6 from set {FE} to port 80,8080:8090 # shop/allow-frontend",
        "deny # end of tier default",
        "allow # profile kns.shop",
        "deny # end of profiles",
    ]
    assert chain_text(dp, "web1", "egress") == [
        "deny to net 10.0.0.0/8 # shop/allow-frontend",
        "deny # end of tier default",
        "allow # profile kns.shop",
        "deny # end of profiles",
    ]


def test_profiles_apply_when_no_policy_does() -> None:
    _, dp = program(CLUSTER)
    # db1 is selected by the global ICMP policy for ingress only.
    assert chain_text(dp, "db1", "egress") == ["allow # profile kns.shop", "deny # end of profiles"]
    assert chain_text(dp, "db1", "ingress")[0].startswith("allow proto 1 ")


def test_ip_sets_hold_the_selected_endpoints_and_only_remote_nodes_matter_for_chains() -> None:
    _calc, dp = program(CLUSTER)
    v6 = {IpSetId(6, FE.selector): set()}  # ICMP rules are IPv4 only
    assert dp.ipsets == {
        FE: {"10.0.2.1/32", "10.0.3.1/32"},
        ANY_NS: {"10.0.1.1/32", "10.0.1.2/32", "10.0.2.1/32", "10.0.3.1/32", "10.0.3.2/32"},
        **v6,
    }
    assert len(dp.chains) == 8  # two local endpoints x two directions x two families
    v4 = [c for k, c in dp.chains.items() if k.family == 4]
    assert sum(map(len, v4)) == 5 + 4 + 4 + 2
    tables = compute(dict(CLUSTER), "n1")
    assert tables.ipsets == dp.ipsets
    assert tables.chains == dp.chains


def test_a_label_change_moves_an_endpoint_between_ip_sets_incrementally() -> None:
    calc, dp = program(CLUSTER)
    key, value = wep("fe2", "n3", "10.0.3.1", app="backend")
    batch = calc.apply([(key, value)])
    assert batch.ipset_remove == {FE: {"10.0.3.1/32"}}
    assert not batch.ipset_add
    assert not batch.chains_set  # no local chain changed
    dp.apply(batch)
    assert dp.ipsets[FE] == {"10.0.2.1/32"}


def test_a_bad_selector_disables_only_that_policy() -> None:
    bad = (
        f"{V3}/networkpolicies/shop/bad",
        {
            "kind": "NetworkPolicy",
            "metadata": {"name": "bad", "namespace": "shop"},
            "spec": {"selector": "app ==", "ingress": [{"action": "Deny"}]},
        },
    )
    calc, dp = program([*CLUSTER, bad])
    # Validation refuses it (the server would not serve it): absent, counted.
    assert calc.errors["invalid_network_policy"] == 1
    assert len(chain_text(dp, "web1", "ingress")) == 5  # unchanged by the bad policy


def test_removing_the_last_user_of_an_ip_set_deletes_it() -> None:
    calc, dp = program(CLUSTER)
    batch = calc.apply([(ALLOW_FRONTEND[0], None)])
    assert batch.ipsets_delete == {FE, IpSetId(6, FE.selector)}
    dp.apply(batch)
    assert FE not in dp.ipsets
    assert chain_text(dp, "web1", "egress") == [
        "allow # profile kns.shop",
        "deny # end of profiles",
    ]


def test_an_ip_change_with_the_same_labels_updates_the_ip_sets() -> None:
    calc, dp = program(CLUSTER)
    key, value = wep("fe2", "n3", "10.0.3.99", app="frontend")
    batch = calc.apply([(key, value)])
    assert batch.ipset_add == {FE: {"10.0.3.99/32"}, ANY_NS: {"10.0.3.99/32"}}
    assert batch.ipset_remove == {FE: {"10.0.3.1/32"}, ANY_NS: {"10.0.3.1/32"}}
    dp.apply(batch)
    assert dp.ipsets == compute(dict([*CLUSTER, (key, value)]), "n1").ipsets


def test_two_endpoints_sharing_an_ip_keep_it_until_both_leave() -> None:
    calc, dp = program(CLUSTER)
    twin = wep("fe9", "n2", "10.0.2.1", app="frontend")  # same IP as fe1
    dp.apply(calc.apply([twin]))
    batch = calc.apply([(wep("fe1", "n2", "10.0.2.1")[0], None)])
    assert FE not in batch.ipset_remove  # fe9 still holds 10.0.2.1
    dp.apply(batch)
    batch = calc.apply([(twin[0], None)])
    assert batch.ipset_remove[FE] == {"10.0.2.1/32"}


def test_a_local_endpoint_that_leaves_loses_its_chains() -> None:
    calc, dp = program(CLUSTER)
    key = wep("web1", "n1", "10.0.1.1")[0]
    batch = calc.apply([(key, None)])
    assert batch.chains_del == {ChainKey(key, d, f) for d in Direction for f in (4, 6)}
    dp.apply(batch)
    assert not [k for k in dp.chains if k.endpoint == key]
