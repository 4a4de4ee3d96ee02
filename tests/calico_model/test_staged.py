"""Staged policies: validated as Calico validates them and served, never
enforced (the agent's tables gain rules that only count)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from calico_model.errors import InvalidValue
from calico_model.validation import validate
from commands.demo.cluster import seed_cluster
from felix_client.calc import compute

V3 = "/calico/resources/v3/projectcalico.org/"
DENY_ALL = {
    "selector": "all()",
    "types": ["Ingress", "Egress"],
    "ingress": [{"action": "Deny"}],
    "egress": [{"action": "Deny"}],
}


def staged(
    spec: dict[str, Any], *, name: str = "deny-all", ns: str = "default"
) -> tuple[str, bytes]:
    kind, plural = (
        ("StagedNetworkPolicy", "stagednetworkpolicies")
        if ns
        else ("StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies")
    )
    meta: dict[str, str] = {"name": name} | ({"namespace": ns} if ns else {})
    key = f"{V3}{plural}/{ns}/{name}" if ns else f"{V3}{plural}/{name}"
    value = {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}
    return key, orjson.dumps(value)


@pytest.mark.parametrize("ns", ["default", ""], ids=["namespaced", "global"])
@pytest.mark.parametrize("action", [None, "Set", "Learn", "Ignore"])
def test_a_staged_policy_with_a_valid_spec_is_served(ns: str, action: str | None) -> None:
    spec = DENY_ALL | ({"stagedAction": action} if action else {})
    key, raw = staged(spec, ns=ns)
    assert orjson.loads(validate(key, raw, "/calico/").canonical)["spec"] == spec


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (DENY_ALL | {"stagedAction": "Enforce"}, "bad_field"),
        (DENY_ALL | {"stagedAction": 1}, "bad_field"),
        (DENY_ALL | {"selector": "a == "}, "bad_selector"),
        (DENY_ALL | {"ingress": [{"action": "Explode"}]}, "bad_action"),
        ({"stagedAction": "Delete", "selector": "all()"}, "bad_field"),
    ],
)
def test_a_staged_spec_is_checked_as_the_policy_it_stages(
    spec: dict[str, Any], reason: str
) -> None:
    key, raw = staged(spec)
    with pytest.raises(InvalidValue) as exc:
        validate(key, raw, "/calico/")
    assert exc.value.reason.value == reason


def test_a_staged_delete_carries_nothing_but_its_tier() -> None:
    for spec in ({"stagedAction": "Delete"}, {"stagedAction": "Delete", "tier": "security"}):
        key, raw = staged(spec, name="security.deny-all" if "tier" in spec else "deny-all")
        validate(key, raw, "/calico/")


def test_a_staged_key_without_its_namespace_is_refused() -> None:
    _, raw = staged(DENY_ALL)
    with pytest.raises(InvalidValue) as exc:
        validate(f"{V3}stagednetworkpolicies/deny-all", raw, "/calico/")
    assert exc.value.reason.value == "bad_key"


def test_a_staged_deny_all_only_adds_rules_that_count() -> None:
    state = dict(seed_cluster(3, 3))
    before = compute(state, "node-0")
    for ns in ("shop", ""):
        key, raw = staged(DENY_ALL, ns=ns)
        state[key] = orjson.loads(validate(key, raw, "/calico/").canonical)
    after = compute(state, "node-0")
    assert before.chains
    assert (after.routes, after.ipsets) == (before.routes, before.ipsets)
    enforced = {ck: tuple(r for r in rules if not r.staged) for ck, rules in after.chains.items()}
    assert enforced == before.chains
    # Every workload chain of the namespace counts what the namespaced one
    # would deny; every chain what the global one would.
    staged_rules = [r for rules in after.chains.values() for r in rules if r.staged]
    assert {r.origin for r in staged_rules} >= {"deny-all", "shop/deny-all"}
