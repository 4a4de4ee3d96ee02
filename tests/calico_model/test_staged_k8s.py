"""StagedKubernetesNetworkPolicy: a Kubernetes NetworkPolicy spec, checked
as Kubernetes checks it, converted as Calico converts it, served, and
counted by the agent without deciding anything."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from calico_model.errors import InvalidValue
from calico_model.k8s_policy import calico_spec
from calico_model.selector import parse
from calico_model.validation import validate
from felix_client.calc.full import compute

V3 = "/calico/resources/v3/projectcalico.org"
K8S = "projectcalico.org/orchestrator == 'k8s'"


def staged_k8s(spec: dict[str, Any], name: str = "web", ns: str = "shop") -> tuple[str, bytes]:
    key = f"{V3}/stagedkubernetesnetworkpolicies/{ns}/{name}"
    value = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "StagedKubernetesNetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }
    return key, orjson.dumps(value)


def test_selectors_convert_as_calico_converts_them() -> None:
    spec = calico_spec(
        {
            "podSelector": {
                "matchLabels": {"app": "web", "tier": "front"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                    {"key": "debug", "operator": "DoesNotExist"},
                    {"key": "team", "operator": "NotIn", "values": ["x"]},
                    {"key": "owner", "operator": "Exists"},
                ],
            }
        }
    )
    want = (
        f"{K8S} && app == 'web' && tier == 'front' && env in {{ 'prod', 'staging' }}"
        " && ! has(debug) && team not in { 'x' } && has(owner)"
    )
    assert parse(spec["selector"]) == parse(want)
    assert (spec["tier"], spec["order"], spec["types"]) == ("default", 1000.0, ["Ingress"])
    # An empty podSelector: every pod of the namespace.
    assert calico_spec({})["selector"] == K8S


def test_rules_become_allow_rules_per_protocol_and_peer() -> None:
    spec = calico_spec(
        {
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {"role": "client"}}},
                        {"namespaceSelector": {}},
                        {"ipBlock": {"cidr": "10.0.0.7/8", "except": ["10.1.0.0/16"]}},
                    ],
                    "ports": [
                        {"port": 80},
                        {"protocol": "UDP", "port": 53},
                        {"port": 8000, "endPort": 8080},
                        {"port": "http"},
                    ],
                }
            ],
            "egress": [{"to": [{"podSelector": {}}]}, {}],
        }
    )
    ingress = spec["ingress"]
    # TCP then UDP, each with all three peers.
    assert [r["protocol"] for r in ingress] == ["TCP"] * 3 + ["UDP"] * 3
    assert ingress[0]["destination"] == {"ports": [80, "8000:8080", "http"]}
    assert ingress[0]["source"] == {"selector": f"{K8S} && role == 'client'"}
    assert ingress[1]["source"] == {"selector": K8S, "namespaceSelector": "all()"}
    assert ingress[2]["source"] == {"nets": ["10.0.0.0/8"], "notNets": ["10.1.0.0/16"]}
    assert ingress[3]["destination"] == {"ports": [53]}
    egress = spec["egress"]
    assert egress[0] == {"action": "Allow", "destination": {"selector": K8S}}
    assert egress[1] == {"action": "Allow"}  # no peers, no ports: anything
    assert spec["types"] == ["Ingress", "Egress"]


def test_an_empty_port_or_a_protocol_without_a_port_allows_more() -> None:
    rules = calico_spec({"ingress": [{"ports": [{"port": 80}, {}]}]})["ingress"]
    assert rules == [{"action": "Allow"}]
    rules = calico_spec({"ingress": [{"ports": [{"port": 80}, {"protocol": "TCP"}]}]})["ingress"]
    assert rules == [{"action": "Allow", "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        # A value that would change the selector's meaning is not a label value.
        ({"podSelector": {"matchLabels": {"app": "x' || all() || 'y"}}}, "spec.podSelector"),
        (
            {
                "podSelector": {
                    "matchExpressions": [{"key": "a", "operator": "In", "values": ["b'"]}]
                }
            },
            "values[0]",
        ),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Like"}]}}, "operator"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "values"),
        ({"podSelector": {"matchExpressions": [{"key": "a b", "operator": "Exists"}]}}, "key"),
        ({"ingress": [{"from": [{"ipBlock": {"cidr": "nonsense"}}]}]}, "ipBlock.cidr"),
        (
            {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
            "from[0]",
        ),
        ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "protocol"),
        ({"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}, "endPort"),
        ({"ingress": [{"ports": [{"port": 0}]}]}, "ports"),
        ({"policyTypes": ["Sideways"]}, "policyTypes[0]"),
        ({"podSelector": {}, "selector": "all()"}, "spec.selector"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(spec: dict[str, Any], where: str) -> None:
    key, raw = staged_k8s(spec)
    with pytest.raises(InvalidValue, match=re.escape(where)):
        validate(key, raw, "/calico/")


@pytest.mark.parametrize("action", [None, "Set", "Delete", "Learn", "Ignore"])
def test_a_valid_staged_kubernetes_policy_is_served(action: str | None) -> None:
    spec: dict[str, Any] = {} if action == "Delete" else {"podSelector": {}, "ingress": [{}]}
    if action is not None:
        spec["stagedAction"] = action
    key, raw = staged_k8s(spec)
    assert orjson.loads(validate(key, raw, "/calico/").canonical)["spec"] == spec


def test_a_delete_carries_nothing_else() -> None:
    key, raw = staged_k8s({"stagedAction": "Delete", "podSelector": {"matchLabels": {"a": "b"}}})
    with pytest.raises(InvalidValue, match=re.escape("spec.podSelector")):
        validate(key, raw, "/calico/")


def test_the_agent_counts_it_under_calicos_name_and_enforces_nothing() -> None:
    pod = {
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "labels": {"app": "web", "projectcalico.org/orchestrator": "k8s"},
        },
        "spec": {"node": "n1", "interfaceName": "caliweb", "ipNetworks": ["10.0.1.1/32"]},
    }
    state: dict[str, Any] = {f"{V3}/workloadendpoints/shop/web": pod}
    before = compute(state, "n1")
    # Isolate the pod's ingress: no rule, so everything meets the tier's end.
    key, raw = staged_k8s({"podSelector": {"matchLabels": {"app": "web"}}})
    state[key] = orjson.loads(validate(key, raw, "/calico/").canonical)
    after = compute(state, "n1")
    ingress = [ck for ck in after.chains if ck.direction == "ingress" and ck.family == 4]
    (ck,) = ingress
    staged = [r for r in after.chains[ck] if r.staged]
    assert [(r.ref.policy, r.ref.rule, str(r.action)) for r in staged if r.ref] == [
        ("shop/knp.default.web", "default", "Deny")
    ]
    enforced = {c: tuple(r for r in rules if not r.staged) for c, rules in after.chains.items()}
    assert enforced == before.chains
