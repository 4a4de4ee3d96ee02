"""The one reader of policies, profiles and tiers: what validation returns is
the typed value the agent compiles, read once from the JSON."""

from __future__ import annotations

from typing import Any

import pytest

from calico_model.addresses import parse_net
from calico_model.errors import InvalidValue, Reason
from calico_model.keys import DEFAULT_PREFIX, KeyLayout
from calico_model.policies import (
    NO_ENTITY,
    EntityRule,
    Policy,
    PolicyRule,
    PolicyType,
    Profile,
    RuleAction,
    ServiceAccountMatch,
    Tier,
)
from calico_model.selector import parse
from calico_model.validation import Resource, check_resource
from tests.calico_model.test_validation_fields import gnp, np_, rule

LAYOUT = KeyLayout(DEFAULT_PREFIX)


def read(item: tuple[str, Any]) -> Resource | None:
    key, value = item
    rk = LAYOUT.parse(key)
    assert rk is not None, key
    return check_resource(rk, value)


def one_rule(**fields: Any) -> PolicyRule:
    pol = read(rule(**fields))
    assert isinstance(pol, Policy)
    (r,) = pol.ingress
    return r


def test_a_rule_is_read_into_typed_fields() -> None:
    r = one_rule(
        protocol="TCP",
        ipVersion=4,
        source={"nets": ["10.0.0.7/8"], "selector": "app == 'a'", "notPorts": [22, "ssh"]},
        destination={"ports": [80, "8080:8090", "http"], "notNets": ["10.1.0.0/16"]},
    )
    assert r.action is RuleAction.ALLOW
    assert (r.protocol, r.ip_version, r.http) == (6, 4, False)
    assert r.source.nets == (parse_net("10.0.0.0/8"),)  # host bits dropped, as Calico does
    assert r.source.selector == parse("app == 'a'")
    assert (r.source.not_ports, r.source.not_port_names) == (("22",), ("ssh",))
    assert (r.destination.ports, r.destination.port_names) == (("80", "8080:8090"), ("http",))
    assert r.destination.not_nets == (parse_net("10.1.0.0/16"),)


def test_empty_fields_read_as_not_given() -> None:
    r = one_rule(
        source={"selector": "", "notSelector": "", "namespaceSelector": ""},
        destination={"serviceAccounts": {"names": [], "selector": ""}, "nets": [], "ports": []},
    )
    assert r.source == EntityRule()
    assert r.destination == EntityRule()
    assert one_rule(source={}).source is NO_ENTITY


def test_icmp_service_accounts_services_and_http_are_kept() -> None:
    r = one_rule(protocol="ICMP", icmp={"type": 8, "code": 0}, notICMP={"type": 3})
    assert (r.icmp, r.not_icmp) == ((8, 0), (3, None))
    r = one_rule(source={"serviceAccounts": {"names": ["a", "b"], "selector": "x == 'y'"}})
    assert r.source.service_accounts == ServiceAccountMatch(
        frozenset({"a", "b"}), parse("x == 'y'")
    )
    r = one_rule(source={"services": {"name": "web", "namespace": "shop"}})
    assert r.source.services
    r = one_rule(protocol="TCP", http={"methods": ["GET"]})
    assert r.http
    assert not one_rule(http={}).http


def test_a_global_policy_keeps_its_host_flags_and_a_namespaced_one_ignores_them() -> None:
    flags = {"doNotTrack": True, "applyOnForward": True, "namespaceSelector": "team == 'x'"}
    g = read(gnp(**flags, order=5, tier="security", types=["Ingress"]))
    assert isinstance(g, Policy)
    assert (g.do_not_track, g.apply_on_forward, g.pre_dnat) == (True, True, False)
    assert g.namespace_selector == parse("team == 'x'")
    assert (g.order, g.tier, g.types, g.namespace) == (5.0, "security", (PolicyType.INGRESS,), "")
    n = read(np_(selector="app == 'a'", **flags))
    assert isinstance(n, Policy)
    assert (n.do_not_track, n.apply_on_forward, n.namespace_selector) == (False, False, None)
    assert (n.name, n.namespace, n.tier, n.types, n.order) == ("p", "shop", "", (), None)


def test_profiles_and_tiers_are_read() -> None:
    prof = read(
        (
            "/calico/resources/v3/projectcalico.org/profiles/kns.shop",
            {
                "kind": "Profile",
                "metadata": {"name": "kns.shop"},
                "spec": {
                    "labelsToApply": {"pcns.team": "x"},
                    "ingress": [{"action": "Allow"}],
                    "egress": [{"action": "Deny"}, {"action": "Log"}],
                },
            },
        )
    )
    assert isinstance(prof, Profile)
    assert dict(prof.labels_to_apply) == {"pcns.team": "x"}
    assert [r.action for r in prof.egress] == [RuleAction.DENY, RuleAction.LOG]
    tier = read(
        (
            "/calico/resources/v3/projectcalico.org/tiers/security",
            {"kind": "Tier", "metadata": {"name": "security"}, "spec": {"defaultAction": "Pass"}},
        )
    )
    assert tier == Tier(None, RuleAction.PASS)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        # Values of a type no set can hold are refused, not a crash of the reader.
        (rule(action={"Allow": 1}), Reason.BAD_ACTION),
        (gnp(performanceHints=[{"x": 1}]), Reason.BAD_FIELD),
        (gnp(types=[["Ingress"]]), Reason.BAD_FIELD),
    ],
)
def test_unhashable_values_are_refused_by_name(item: tuple[str, Any], reason: Reason) -> None:
    with pytest.raises(InvalidValue) as info:
        read(item)
    assert info.value.reason == reason
