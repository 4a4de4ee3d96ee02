"""Conformance with Calico's documented policy semantics.

Each test builds a small cluster in the shapes a real Calico datastore holds
(namespace profiles `kns.<ns>` with `pcns.` labels, service-account profiles
`ksa.<ns>.<sa>` with `pcsa.` labels, endpoints labelled with their namespace
and service account) and checks the exact chains and sets the agent computes,
and what a dataplane rendering them would decide for real packets.  The
incremental calculation and the from-scratch oracle must agree on all of it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from calico_model.selector import parse
from calico_model.validation import validate
from dataplane import (
    Action,
    ChainKey,
    Direction,
    EndpointInfo,
    EndpointKind,
    IpSetId,
    MemoryDataplane,
    Stage,
)
from dataplane.rule_eval import trace_chain
from dataplane.trace import Packet as TracePacket
from dataplane.trace import Verdict
from felix_client.calc.calculator import Calculator
from felix_client.calc.full import Tables, compute
from tests.felix_client.verdict import Packet, verdict

V3 = "/calico/resources/v3/projectcalico.org"
IN, OUT = Direction.INGRESS, Direction.EGRESS
ALLOW, DENY = Action.ALLOW, Action.DENY


def ns_profile(ns: str, **labels: str) -> tuple[str, Any]:
    lta = {"pcns.projectcalico.org/name": ns, **{f"pcns.{k}": v for k, v in labels.items()}}
    return f"{V3}/profiles/kns.{ns}", {
        "kind": "Profile",
        "metadata": {"name": f"kns.{ns}"},
        "spec": {
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": lta,
        },
    }


def sa_profile(ns: str, sa: str, **labels: str) -> tuple[str, Any]:
    lta = {"pcsa.projectcalico.org/name": sa, **{f"pcsa.{k}": v for k, v in labels.items()}}
    return f"{V3}/profiles/ksa.{ns}.{sa}", {
        "kind": "Profile",
        "metadata": {"name": f"ksa.{ns}.{sa}"},
        "spec": {"labelsToApply": lta},
    }


def wep(
    name: str,
    ip: str,
    *,
    node: str = "n1",
    ns: str = "shop",
    sa: str = "default",
    ports: list[dict[str, Any]] | None = None,
    **labels: str,
) -> tuple[str, Any]:
    return f"{V3}/workloadendpoints/{ns}/{name}", {
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                **labels,
                "projectcalico.org/namespace": ns,
                "projectcalico.org/orchestrator": "k8s",
                "projectcalico.org/serviceaccount": sa,
            },
        },
        "spec": {
            "node": node,
            "interfaceName": f"cali{name}",
            "ipNetworks": [f"{a}/{128 if ':' in a else 32}" for a in ip.split(",")],
            "profiles": [f"kns.{ns}", f"ksa.{ns}.{sa}"],
            "ports": ports or [],
        },
    }


def hep(name: str, ip: str, *, node: str = "n1", **labels: str) -> tuple[str, Any]:
    return f"{V3}/hostendpoints/{name}", {
        "kind": "HostEndpoint",
        "metadata": {"name": name, "labels": labels},
        "spec": {"node": node, "interfaceName": "eth0", "expectedIPs": [ip]},
    }


def gnp(name: str, **spec: Any) -> tuple[str, Any]:
    return f"{V3}/globalnetworkpolicies/{name}", {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def np_(name: str, ns: str = "shop", **spec: Any) -> tuple[str, Any]:
    return f"{V3}/networkpolicies/{ns}/{name}", {
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def tier(name: str, order: float | None, default_action: str | None = None) -> tuple[str, Any]:
    spec: dict[str, Any] = {} if order is None else {"order": order}
    if default_action:
        spec["defaultAction"] = default_action
    return f"{V3}/tiers/{name}", {"kind": "Tier", "metadata": {"name": name}, "spec": spec}


BASE = [
    ns_profile("shop", team="a"),
    ns_profile("other", team="b"),
    sa_profile("shop", "default"),
    sa_profile("shop", "api", role="backend"),
    sa_profile("other", "default"),
    wep("web", "10.0.1.1,fd00::1:1", app="web"),
    wep("api", "10.0.1.2", sa="api", app="api"),
    wep("db", "10.0.2.1", node="n2", app="db"),
    wep("o1", "10.0.3.1", node="n3", ns="other", app="web"),
]


class Net:
    """A node's computed tables, incrementally and from scratch (which must agree)."""

    def __init__(self, items: list[tuple[str, Any]], node: str = "n1") -> None:
        self.calc = Calculator(node)
        dp = MemoryDataplane()
        dp.apply(self.calc.apply(items))
        oracle: Tables = compute(dict(items), node)
        assert dp.chains == oracle.chains
        assert dp.ipsets == oracle.ipsets
        assert dp.routes == oracle.routes
        assert dp.endpoints == oracle.endpoints
        assert dp.vteps == oracle.vteps
        self.endpoints = dp.endpoints
        self.chains, self.sets, self.routes = dp.chains, dp.ipsets, dp.routes

    def chain(
        self, ep: str, d: Direction, family: int = 4, stage: Stage = Stage.NORMAL, ns: str = "shop"
    ) -> tuple[Any, ...]:
        kind = (
            "hostendpoints"
            if stage is not Stage.NORMAL or ep.startswith("h")
            else "workloadendpoints"
        )
        key = f"{V3}/{kind}/{ns}/{ep}" if kind == "workloadendpoints" else f"{V3}/{kind}/{ep}"
        return self.chains[ChainKey(key, d, family, stage)]

    def text(self, ep: str, d: Direction, family: int = 4, **kw: Any) -> list[str]:
        return [str(r) for r in self.chain(ep, d, family, **kw)]

    def decide(
        self, ep: str, d: Direction, pkt: Packet, family: int = 4, **kw: Any
    ) -> Action | None:
        chain = self.chain(ep, d, family, **kw)
        expected = verdict(chain, pkt, self.sets)
        # The product's own evaluator (what `felix-agent explain` uses) agrees.
        traced = trace_chain(chain, d, TracePacket(**vars(pkt)), self.sets)
        assert traced.verdict == (Verdict.ALLOW if expected is ALLOW else Verdict.DENY)
        assert (traced.decided is None) == (expected is None)
        return expected

    def members(self, selector: str, family: int = 4) -> set[str]:
        return self.sets[IpSetId(family, str(parse(selector)))]


def from_(ip: str, to: str = "10.0.1.1", **kw: Any) -> Packet:
    return Packet(src=ip, dst=to, **kw)


# -- service accounts ----------------------------------------------------------


def test_rule_service_account_names_and_selector_match_only_those_accounts() -> None:
    pol = np_(
        "p",
        selector="app == 'web'",
        types=["Ingress"],
        ingress=[
            {"action": "Allow", "source": {"serviceAccounts": {"names": ["api"]}}},
            {
                "action": "Allow",
                "protocol": "TCP",
                "source": {"serviceAccounts": {"selector": "role == 'backend'"}},
                "destination": {"ports": [9000]},
            },
        ],
    )
    net = Net([*BASE, pol])
    sa_names = (
        '(projectcalico.org/namespace == "shop" && projectcalico.org/serviceaccount in {"api"})'
    )
    sa_sel = '(projectcalico.org/namespace == "shop" && pcsa.role == "backend")'
    assert net.members(sa_names) == {"10.0.1.2/32"}
    assert net.members(sa_sel) == {"10.0.1.2/32"}
    assert net.decide("web", IN, from_("10.0.1.2")) is ALLOW
    assert net.decide("web", IN, from_("10.0.2.1")) is DENY  # default account: end of tier


def test_a_policy_with_only_a_service_account_selector_applies_only_to_those_endpoints() -> None:
    pol = np_(
        "p",
        serviceAccountSelector="role == 'backend'",
        types=["Ingress"],
        ingress=[{"action": "Deny", "protocol": "TCP"}],
    )
    net = Net([*BASE, pol])
    assert net.text("api", IN)[0].startswith("deny proto 6")
    assert net.text("web", IN) == ["allow # profile kns.shop", "deny # end of profiles"]


# -- namespaces ----------------------------------------------------------------


def test_namespace_selectors_match_the_prefixed_labels_real_profiles_carry() -> None:
    pol = gnp(
        "g",
        selector="app == 'web'",
        types=["Ingress"],
        ingress=[
            {"action": "Allow", "source": {"namespaceSelector": "team == 'b'"}},
        ],
    )
    net = Net([*BASE, pol])
    assert net.members("pcns.team == 'b'") == {"10.0.3.1/32"}  # not pcns.pcns.team
    assert net.decide("web", IN, from_("10.0.3.1")) is ALLOW
    assert net.decide("web", IN, from_("10.0.2.1")) is DENY


def test_global_namespace_selector_selects_only_non_namespaced_endpoints() -> None:
    pol = gnp(
        "g",
        selector="app == 'web'",
        types=["Ingress"],
        ingress=[
            {"action": "Allow", "source": {"namespaceSelector": "global()"}},
        ],
    )
    net = Net([*BASE, hep("h1", "192.168.0.9", node="n9"), pol])
    assert net.members("!has(projectcalico.org/namespace)") == {"192.168.0.9/32"}
    assert net.decide("web", IN, from_("192.168.0.9")) is ALLOW
    assert net.decide("web", IN, from_("10.0.3.1")) is DENY
    pol_all = gnp(
        "g",
        selector="app == 'web'",
        types=["Ingress"],
        ingress=[
            {"action": "Allow", "source": {"namespaceSelector": "all()"}},
        ],
    )
    net = Net([*BASE, hep("h1", "192.168.0.9", node="n9"), pol_all])
    assert net.decide("web", IN, from_("10.0.3.1")) is ALLOW
    assert net.decide("web", IN, from_("192.168.0.9")) is DENY


def test_a_namespaced_policy_selects_and_matches_only_its_namespace() -> None:
    pol = np_(
        "p",
        selector="app == 'web'",
        types=["Ingress"],
        ingress=[
            {"action": "Allow", "source": {"notSelector": "app == 'db'"}},
        ],
    )
    net = Net([*BASE, pol], node="n3")
    # o1 (namespace other) also has app == web: the shop policy does not select it.
    assert net.text("o1", IN, ns="other") == ["allow # profile kns.other", "deny # end of profiles"]
    net = Net([*BASE, pol])
    rules = net.chain("web", IN)
    assert rules[0].src.ipset == IpSetId(4, 'projectcalico.org/namespace == "shop"')
    assert rules[0].src.not_ipset == IpSetId(4, 'app == "db"')
    assert net.decide("web", IN, from_("10.0.1.2")) is ALLOW
    assert net.decide("web", IN, from_("10.0.2.1")) is DENY
    assert net.decide("web", IN, from_("10.0.3.1")) is DENY  # outside the namespace: not allowed


# -- protocols, ICMP, IP versions ---------------------------------------------------


def test_icmp_type_code_not_icmp_not_protocol_and_ip_version_are_kept() -> None:
    pol = gnp(
        "g",
        selector="app == 'web'",
        types=["Ingress"],
        ingress=[
            {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 0}},
            {"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 8, "code": 0}},
            {"action": "Allow", "notProtocol": "UDP", "ipVersion": 6},
        ],
    )
    net = Net([*BASE, pol])
    assert net.text("web", IN)[:2] == ["allow proto 1 icmp 0 # g", "allow proto 1 !icmp 8/0 # g"]
    assert len(net.chain("web", IN)) == 5  # the IPv6 rule is not in the IPv4 chain
    assert net.text("web", IN, 6)[0] == "allow !proto 17 # g"
    echo = dict(protocol=1, icmp_type=8, icmp_code=0)
    assert net.decide("web", IN, from_("10.0.2.1", **echo)) is DENY
    assert net.decide("web", IN, from_("10.0.2.1", protocol=1, icmp_type=0, icmp_code=0)) is ALLOW
    assert net.decide("web", IN, from_("10.0.2.1", protocol=6)) is DENY  # v4 TCP: nothing allows
    assert net.decide("web", IN, from_("fd00::2:1", "fd00::1:1", protocol=6), 6) is ALLOW
    assert net.decide("web", IN, from_("fd00::2:1", "fd00::1:1", protocol=17), 6) is DENY


# -- what the agent cannot enforce -----------------------------------------------


def test_services_and_http_rules_match_nothing_and_are_counted() -> None:
    pol = gnp(
        "g",
        selector="app == 'web'",
        types=["Ingress", "Egress"],
        # Calico allows `http` on ingress Allow rules only.
        ingress=[{"action": "Allow", "protocol": "TCP", "http": {"methods": ["GET"]}}],
        egress=[
            {
                "action": "Allow",
                "destination": {"services": {"name": "kube-dns", "namespace": "kube-system"}},
            },
            {"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}},
        ],
    )
    net = Net([*BASE, pol])
    assert net.text("web", OUT) == [
        "allow proto 17 to port 53 # g",
        "deny # end of tier default",
        "allow # profile kns.shop",
        "deny # end of profiles",
    ]
    assert net.calc.errors["rule_services"] == 1
    assert net.calc.errors["rule_http"] == 1
    assert net.decide("web", OUT, Packet("10.0.1.1", "10.96.0.10", 6, 1, 80)) is DENY


# -- named ports ----------------------------------------------------------------------


def test_named_ports_resolve_per_endpoint_into_ip_port_sets() -> None:
    http = [{"name": "http", "protocol": "TCP", "port": 8080}]
    items = [
        *BASE[:5],
        wep("web", "10.0.1.1,fd00::1:1", app="web", ports=http),
        wep(
            "web2",
            "10.0.2.2",
            node="n2",
            app="web",
            ports=[{"name": "http", "protocol": "TCP", "port": 9090}],
        ),
        wep(
            "dns",
            "10.0.2.3",
            node="n2",
            app="dns",
            ports=[{"name": "http", "protocol": "UDP", "port": 53}],
        ),
        gnp(
            "g",
            selector="app == 'web'",
            types=["Ingress", "Egress"],
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}],
            egress=[
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "destination": {"selector": "app == 'web'", "ports": ["http"]},
                }
            ],
        ),
    ]
    net = Net(items)
    anyone = IpSetId(4, "all()", "http", 6)
    assert net.sets[anyone] == {"10.0.1.1,tcp:8080", "10.0.2.2,tcp:9090"}  # not the UDP one
    assert net.sets[IpSetId(6, "all()", "http", 6)] == {"fd00::1:1,tcp:8080"}
    assert net.decide("web", IN, Packet("10.0.9.9", "10.0.1.1", 6, 1, 8080)) is ALLOW
    assert net.decide("web", IN, Packet("10.0.9.9", "10.0.1.1", 6, 1, 9090)) is DENY
    assert net.decide("web", OUT, Packet("10.0.1.1", "10.0.2.2", 6, 1, 9090)) is ALLOW
    assert net.decide("web", OUT, Packet("10.0.1.1", "10.0.2.2", 6, 1, 8080)) is DENY


# -- host endpoints and their policy kinds ------------------------------------------------


def test_do_not_track_pre_dnat_and_forward_policies() -> None:
    items = [
        *BASE,
        hep("h1", "192.168.0.1", role="node"),
        gnp(
            "dnt",
            selector="all()",
            doNotTrack=True,
            applyOnForward=True,
            types=["Ingress"],
            ingress=[{"action": "Allow", "protocol": "UDP", "destination": {"ports": [4789]}}],
        ),
        gnp(
            "pre",
            selector="all()",
            preDNAT=True,
            applyOnForward=True,
            types=["Ingress"],
            ingress=[{"action": "Deny", "source": {"nets": ["203.0.113.0/24"]}}],
        ),
        gnp(
            "fwd",
            selector="all()",
            applyOnForward=True,
            types=["Ingress"],
            ingress=[{"action": "Allow", "protocol": "TCP"}],
        ),
    ]
    net = Net(items)
    # A workload gets only the normal (forward) policy.
    assert [r.origin for r in net.chain("web", IN)] == [
        "fwd",
        "end of tier default",
        "profile kns.shop",
        "end of profiles",
    ]
    assert net.text("h1", IN, stage=Stage.UNTRACKED) == ["allow proto 17 to port 4789 # dnt"]
    assert net.text("h1", IN, stage=Stage.PRE_DNAT) == ["deny from net 203.0.113.0/24 # pre"]
    assert net.text("h1", IN, stage=Stage.FORWARD) == [
        "allow proto 6 # fwd",
        "deny # end of tier default",
    ]
    assert net.text("h1", IN) == [
        "allow proto 6 # fwd",
        "deny # end of tier default",
        "deny # end of profiles",
    ]
    # Forward policies exist but none governs egress: no chain, so no verdict there.
    assert ChainKey(f"{V3}/hostendpoints/h1", OUT, 4, Stage.FORWARD) not in net.chains
    assert ChainKey(f"{V3}/hostendpoints/h1", OUT, 4, Stage.PRE_DNAT) not in net.chains
    # Where the chains attach: a workload by interface, a host endpoint by
    # interface name or, without one, by its expected addresses.
    assert net.endpoints[f"{V3}/workloadendpoints/shop/web"] == EndpointInfo(
        EndpointKind.WORKLOAD, "caliweb", ("10.0.1.1", "fd00::1:1")
    )
    assert net.endpoints[f"{V3}/hostendpoints/h1"] == EndpointInfo(
        EndpointKind.HOST, "eth0", ("192.168.0.1",)
    )
    by_ip = hep("h2", "192.168.0.2")
    by_ip[1]["spec"].pop("interfaceName")
    assert Net([*BASE, by_ip]).endpoints[by_ip[0]] == EndpointInfo(
        EndpointKind.HOST, "", ("192.168.0.2",)
    )
    # No forward policy at all: forwarded traffic is allowed.
    net = Net([*BASE, hep("h1", "192.168.0.1")])
    assert net.text("h1", IN, stage=Stage.FORWARD) == [
        "allow # no applyOnForward policy: forwarding allowed"
    ]


# -- tiers, pass, default actions, profiles -----------------------------------------------


def test_tiers_go_by_order_and_end_with_their_default_action() -> None:
    items = [
        *BASE,
        tier("zeta", 10),
        tier("alpha", 20),
        gnp(
            "z.deny",
            tier="zeta",
            selector="app == 'web'",
            types=["Ingress"],
            ingress=[{"action": "Deny", "protocol": "TCP", "destination": {"ports": [22]}}],
        ),
        gnp(
            "a.allow",
            tier="alpha",
            selector="app == 'web'",
            types=["Ingress"],
            ingress=[{"action": "Allow"}],
        ),
    ]
    net = Net(items)
    assert [r.origin for r in net.chain("web", IN)] == [
        "z.deny",
        "end of tier zeta",
        "a.allow",
        "end of tier alpha",
        "profile kns.shop",
        "end of profiles",
    ]
    # zeta applies but matched nothing for port 80: its end-of-tier Deny wins over alpha's Allow.
    assert net.decide("web", IN, from_("10.0.2.1", dport=80)) is DENY


def test_pass_and_a_pass_default_action_go_on_to_the_next_tier_then_profiles() -> None:
    items = [
        *BASE,
        tier("security", 10),
        tier("platform", 20, "Pass"),
        gnp(
            "s.pass",
            tier="security",
            selector="all()",
            types=["Ingress"],
            ingress=[{"action": "Deny", "source": {"nets": ["10.0.3.0/24"]}}, {"action": "Pass"}],
        ),
        gnp(
            "p.log",
            tier="platform",
            selector="all()",
            types=["Ingress"],
            ingress=[{"action": "Log", "protocol": "TCP"}],
        ),
    ]
    net = Net(items)
    assert [r.origin for r in net.chain("web", IN)] == [
        "s.pass",
        "s.pass",
        "end of tier security",
        "p.log",
        "profile kns.shop",
        "end of profiles",
    ]
    assert net.decide("web", IN, from_("10.0.3.1")) is DENY
    assert (
        net.decide("web", IN, from_("10.0.2.1")) is ALLOW
    )  # passed twice, then the profile allows


def test_unknown_tiers_come_last_and_the_default_tier_exists_without_a_resource() -> None:
    items = [
        *BASE,
        tier("early", 5),
        gnp("d", selector="app == 'web'", types=["Ingress"], ingress=[{"action": "Log"}]),
        gnp(
            "u",
            tier="unknown",
            selector="app == 'web'",
            types=["Ingress"],
            ingress=[{"action": "Log"}],
        ),
        gnp(
            "e",
            tier="early",
            selector="app == 'web'",
            types=["Ingress"],
            ingress=[{"action": "Log"}],
        ),
    ]
    origins = [r.origin for r in Net(items).chain("web", IN)]
    assert origins[:6] == [
        "e",
        "end of tier early",
        "d",
        "end of tier default",
        "u",
        "end of tier unknown",
    ]


def test_policies_within_a_tier_go_by_order_then_name_unordered_last() -> None:
    items = [*BASE] + [
        gnp(
            n,
            selector="app == 'web'",
            types=["Ingress"],
            ingress=[{"action": "Log"}],
            **({"order": o} if o is not None else {}),
        )
        for n, o in (("c", None), ("b", 5), ("a", 5), ("d", 1))
    ]
    assert [r.origin for r in Net(items).chain("web", IN)][:4] == ["d", "a", "b", "c"]


# A policy stored without `types` governs both directions, whatever rules it
# has: Felix's "no Types means Ingress and Egress" (Calico's API fills types in
# when a policy is written through it; one written straight to etcd has none).
@pytest.mark.parametrize(
    ("spec", "ingress", "egress"),
    [
        ({}, True, True),
        ({"ingress": [{"action": "Allow"}]}, True, True),
        ({"egress": [{"action": "Allow"}]}, True, True),
        ({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}, True, True),
        ({"types": ["Egress"]}, False, True),
        ({"types": ["Ingress"], "egress": [{"action": "Allow"}]}, True, False),
    ],
)
def test_policy_types_absent_mean_both_directions(
    spec: dict[str, Any], ingress: bool, egress: bool
) -> None:
    net = Net([*BASE, gnp("g", selector="app == 'web'", **spec)])
    assert ("end of tier default" in [r.origin for r in net.chain("web", IN)]) is ingress
    assert ("end of tier default" in [r.origin for r in net.chain("web", OUT)]) is egress


# -- IPv6 ----------------------------------------------------------------------------


def test_ipv6_addresses_reach_v6_sets_routes_and_chains() -> None:
    items = [
        *BASE,
        (
            f"{V3}/ippools/v6",
            {
                "kind": "IPPool",
                "metadata": {"name": "v6"},
                "spec": {"cidr": "fd00::/48", "vxlanMode": "Always"},
            },
        ),
        (
            f"{V3}/nodes/n2",
            {
                "kind": "Node",
                "metadata": {"name": "n2"},
                "spec": {
                    "bgp": {"ipv4Address": "192.168.0.2/24", "ipv6Address": "fd00:ff::2/64"},
                    "ipv6VXLANTunnelAddr": "fd00:2::1",
                },
            },
        ),
        (
            "/calico/ipam/v2/assignment/ipv6/block/fd00::2:0-122",
            {"cidr": "fd00::2:0/122", "affinity": "host:n2"},
        ),
        (
            "/calico/ipam/v2/assignment/ipv6/block/fd00::1:0-122",
            {"cidr": "fd00::1:0/122", "affinity": "host:n1"},
        ),
        wep("db6", "10.0.2.5,fd00::2:5", node="n2", app="db"),
        gnp(
            "g",
            selector="app == 'web'",
            types=["Ingress"],
            ingress=[{"action": "Allow", "source": {"selector": "app == 'db'"}}],
        ),
    ]
    net = Net(items)
    assert str(net.routes["fd00::1:1/128"]) == "fd00::1:1/128 dev caliweb scope link"
    assert str(net.routes["fd00::1:0/122"]) == "blackhole fd00::1:0/122"
    assert (
        str(net.routes["fd00::2:0/122"]) == "fd00::2:0/122 via fd00:2::1 dev vxlan-v6.calico onlink"
    )
    assert net.members('app == "db"', 6) == {"fd00::2:5/128"}
    assert net.members('app == "db"', 4) == {"10.0.2.1/32", "10.0.2.5/32"}
    assert net.decide("web", IN, from_("fd00::2:5", "fd00::1:1"), 6) is ALLOW
    assert net.decide("web", IN, from_("fd00::9:9", "fd00::1:1"), 6) is DENY


# -- incremental updates that touch only one input -----------------------------------------


def _step(
    calc: Calculator, dp: MemoryDataplane, state: dict[str, Any], key: str, value: Any
) -> None:
    if value is None:
        state.pop(key, None)
    else:
        state[key] = value
    dp.apply(calc.apply([(key, value)]))
    oracle = compute(state, "n1")
    assert dp.chains == oracle.chains
    assert dp.ipsets == oracle.ipsets


def test_tier_ports_and_profile_label_changes_alone_update_what_depends_on_them() -> None:
    items = [
        *BASE,
        gnp(
            "t", tier="t1", selector="app == 'web'", types=["Ingress"], ingress=[{"action": "Log"}]
        ),
        gnp(
            "d",
            selector="app == 'web'",
            types=["Ingress"],
            ingress=[
                {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}},
                {
                    "action": "Allow",
                    "source": {"serviceAccounts": {"selector": "role == 'backend'"}},
                },
            ],
        ),
    ]
    state = dict(items)
    calc, dp = Calculator("n1"), MemoryDataplane()
    dp.apply(calc.apply(items))
    chain = ChainKey(f"{V3}/workloadendpoints/shop/web", IN, 4)
    before = dp.chains[chain]
    # A tier on its own: order, default action, deletion.
    _step(calc, dp, state, *tier("t1", 2_000_000, "Pass"))
    assert [r.origin for r in dp.chains[chain]][:3] == ["d", "d", "end of tier default"]
    _step(calc, dp, state, *tier("t1", 1))
    assert [r.origin for r in dp.chains[chain]][:3] == ["t", "end of tier t1", "d"]
    _step(calc, dp, state, f"{V3}/tiers/t1", None)
    assert dp.chains[chain] == before  # a tier with no resource: last, Deny
    # An endpoint's named ports alone (same addresses, same labels).
    key, value = wep(
        "db",
        "10.0.2.1",
        node="n2",
        app="db",
        ports=[{"name": "http", "protocol": "TCP", "port": 81}],
    )
    _step(calc, dp, state, key, value)
    assert "10.0.2.1,tcp:81" in dp.ipsets[IpSetId(4, "all()", "http", 6)]
    # A service-account profile's labels alone move endpoints in and out of sets.
    sa_set = IpSetId(4, 'pcsa.role == "backend"')
    assert dp.ipsets[sa_set] == {"10.0.1.2/32"}
    _step(calc, dp, state, *sa_profile("shop", "api", role="frontend"))
    assert dp.ipsets[sa_set] == set()


def test_profiles_in_order_each_its_own_group_then_deny() -> None:
    first = (
        f"{V3}/profiles/p1",
        {
            "kind": "Profile",
            "metadata": {"name": "p1"},
            "spec": {
                "ingress": [
                    {"action": "Log"},
                    {"action": "Pass", "source": {"nets": ["10.9.0.0/16"]}},
                    {"action": "Deny", "source": {"nets": ["10.9.1.0/24"]}},
                ]
            },
        },
    )
    second = (
        f"{V3}/profiles/p2",
        {
            "kind": "Profile",
            "metadata": {"name": "p2"},
            "spec": {
                "ingress": [
                    {"action": "Allow", "source": {"nets": ["10.9.0.0/16"]}},
                ]
            },
        },
    )
    ep = wep("web", "10.0.1.1", app="web")
    ep[1]["spec"]["profiles"] = ["p1", "p2"]
    net = Net([first, second, ep])
    assert net.text("web", IN) == [
        "log # profile p1",
        "pass from net 10.9.0.0/16 # profile p1",
        "deny from net 10.9.1.0/24 # profile p1",
        "allow from net 10.9.0.0/16 # profile p2",
        "deny # end of profiles",
    ]
    assert net.decide("web", IN, from_("10.9.1.5")) is ALLOW  # passed over p1's deny
    assert net.decide("web", IN, from_("10.8.0.1")) is DENY  # no profile allowed it


# -- the narrower reading of what the agent cannot enforce ---------------------------


def test_a_deny_with_http_is_refused_whole_and_services_match_nothing() -> None:
    # Calico's validation refuses `http` on a Deny: the server does not serve
    # such a policy, and the agent, judging with the same validation, does
    # not take it in either (counted).  `services` needs endpoint data etcd
    # does not hold: that rule matches nothing, never everything.
    refused = gnp(
        "h",
        selector="app == 'web'",
        types=["Egress"],
        egress=[{"action": "Deny", "protocol": "TCP", "http": {"methods": ["GET"]}}],
    )
    pol = gnp(
        "g",
        selector="app == 'web'",
        types=["Egress"],
        egress=[
            {
                "action": "Deny",
                "protocol": "UDP",
                "destination": {"services": {"name": "kube-dns", "namespace": "kube-system"}},
            },
            {"action": "Allow"},
        ],
    )
    net = Net([*BASE, refused, pol])
    assert net.decide("web", OUT, Packet("10.0.1.1", "10.96.0.10", 6, 1, 80)) is ALLOW
    assert net.decide("web", OUT, Packet("10.0.1.1", "10.96.0.10", 17, 1, 53)) is ALLOW
    assert net.decide("web", OUT, Packet("10.0.1.1", "10.96.0.10", 132, 1, 53)) is ALLOW
    assert net.calc.errors["invalid_global_network_policy"] == 1
    assert net.calc.errors["rule_services"] == 1


def test_a_not_icmp_without_a_protocol_matches_everything_but_that_icmp_type() -> None:
    pol = gnp(
        "g",
        selector="app == 'web'",
        types=["Ingress"],
        ingress=[{"action": "Allow", "notICMP": {"type": 8}}],
    )
    validate(pol[0], orjson.dumps(pol[1]))  # Calico accepts it
    net = Net([*BASE, pol])
    assert net.decide("web", IN, from_("10.0.2.1", protocol=6)) is ALLOW
    assert net.decide("web", IN, from_("10.0.2.1", protocol=1, icmp_type=0)) is ALLOW
    assert net.decide("web", IN, from_("10.0.2.1", protocol=1, icmp_type=8)) is DENY
