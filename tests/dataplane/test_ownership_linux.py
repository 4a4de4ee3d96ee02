"""What one datastore value can do to a node, tried on a real kernel.

Each node namespace is shaped like a real node: eth0 on a LAN with its
address and a default route, the kernel's connected route, and a host
firewall table of its own (`inet hostfw`) that the agent must never touch.
The values go straight into the calculation and the `linux` driver, as a
leaf replica or `felix-agent compute` input would deliver them: nothing
here relies on the server having validated them (the calculation reads
endpoints with the same validation, and the driver guards on its own).
After every hostile value, the node's own routes, its firewall table and
its host interfaces' settings are exactly as before, the rest of the
cluster's changes still go in, and the agent lists what it refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from calico_model.policies import EntityRule, Policy, PolicyRule, PolicyType, RuleAction
from calico_model.selector import parse as parse_selector
from dataplane.batch import DataplaneBatch, EndpointInfo, EndpointKind, Route, RouteKind
from felix_client.calc.policy_defs import PolicyDef
from tests.conftest import wait_until
from tests.dataplane.test_linux_dataplane import PODS, V3, Cluster, block, wep
from tests.netns import Fabric, fabric, sh

HOSTFW = """
table inet hostfw {
    chain input {
        type filter hook input priority 10; policy accept;
        tcp dport 9999 counter accept
    }
}
"""

# Every interface setting the agent writes on a workload interface.
SETTINGS = ("ipv4/conf/{}/proxy_arp", "ipv4/conf/{}/forwarding", "ipv4/neigh/{}/proxy_delay")


def host_view(ns: str) -> dict[str, Any]:
    """What the node owns and the agent must leave alone."""
    # The main table (where the agent's routes live) and the policy tables;
    # not `local`, whose IPv6 entries the kernel adds as link-local
    # addresses finish duplicate address detection, whenever that is.
    routes4 = sh(ns, "ip", "-4", "route", "show", "table", "main").stdout.splitlines()
    routes6 = sh(ns, "ip", "-6", "route", "show", "table", "main").stdout.splitlines()
    routes6 = [r for r in routes6 if not r.startswith("fe80::")]
    settings = {
        s.format(i): sh(ns, "cat", f"/proc/sys/net/{s.format(i)}").stdout.strip()
        for i in ("eth0", "lo")
        for s in SETTINGS
    }
    # Routes of the workload interfaces (their link-local and local-table
    # entries, which the kernel adds as pods come and go) are not the host's.
    return {
        "routes": sorted(
            r for r in routes4 + routes6 if "proto 80" not in r and "dev cali" not in r
        ),
        "hostfw": sh(ns, "nft", "list", "table", "inet", "hostfw").stdout,
        "settings": settings,
    }


def agent_routes(ns: str) -> str:
    return sh(ns, "ip", "route", "show", "proto", "80").stdout


def route_dsts(ns: str) -> set[str]:
    """The destinations of the agent's routes, both families."""
    out = set()
    for family in ("-4", "-6"):
        for line in sh(ns, "ip", family, "route", "show", "proto", "80").stdout.splitlines():
            words = line.split()
            out.add(words[1] if words[0] == "blackhole" else words[0])
    return out


def dispatch(ns: str) -> dict[str, str]:
    """The workload dispatch maps, as nft lists them."""
    return {
        m: sh(ns, "nft", "list", "map", "inet", "felix_typha", m).stdout
        for m in ("from_wl4", "to_wl4", "from_wl6", "to_wl6")
    }


def nft_table(ns: str) -> str:
    return sh(ns, "nft", "list", "table", "inet", "felix_typha").stdout


class Node:
    def __init__(self, f: Fabric) -> None:
        self.f = f
        self.cluster = Cluster(f)
        self.ns = self.cluster.nodes["n1"]
        run = sh(self.ns, "sh", "-c", f"echo '{HOSTFW}' | nft -f -")
        assert run.returncode == 0
        self.before = host_view(self.ns)
        self.dp = self.cluster.dps["n1"]

    def change(self, items: list[tuple[str, Any]]) -> None:
        self.cluster.change(items)

    def assert_host_untouched(self) -> None:
        assert host_view(self.ns) == self.before
        assert self.dp.kernel_status()["errors"] == 0


@pytest.fixture
def n1() -> Iterator[Node]:
    with fabric() as f:
        node = Node(f)
        try:
            yield node
        finally:
            node.cluster.close()


def evil_wep(name: str, ns: str, node: str, iface: str, ip: str) -> tuple[str, Any]:
    key, value = wep(name, node, ip, "shared")
    key = key.replace("/default/", f"/{ns}/")
    value["metadata"]["namespace"] = ns
    value["spec"]["interfaceName"] = iface
    return key, value


def test_an_endpoint_on_a_host_interface_gets_nothing_and_the_lan_keeps_working(n1: Node) -> None:
    lan_peer = n1.cluster.nodes["n2"]
    listener = n1.f.listen(n1.ns, 22, 20)
    try:
        for iface, ip in (("eth0", "192.168.77.50"), ("lo", "192.168.77.2")):
            key, value = evil_wep(f"evil-{iface}", "default", "n1", iface, ip)
            n1.change([(key, value)])
            assert key in n1.dp.refused
            assert ip not in route_dsts(n1.ns)
            n1.assert_host_untouched()
        table = nft_table(n1.ns)
        assert '"eth0"' not in table
        assert '"lo"' not in table
        # ssh from the LAN (failsafe), and the node still reaches its LAN peer.
        assert n1.f.connect(lan_peer, "192.168.77.1", 22)
        assert n1.f.ping(n1.ns, "192.168.77.2")
        assert n1.cluster.reach("a", "c")
    finally:
        listener.kill()


def test_blocks_never_replace_the_nodes_routes(n1: Node) -> None:
    hostile = [
        block("192.168.77.0/24", "n2"),  # the node's own LAN
        block("192.168.77.0/26", "n2"),  # part of it
        block("0.0.0.0/0", "n2"),
    ]
    n1.change(hostile)
    n1.assert_host_untouched()
    dsts = route_dsts(n1.ns)
    assert not {"192.168.77.0/24", "192.168.77.0/26", "default"} & dsts
    # Even with a pool that covers the LAN (an administrator's mistake), the
    # connected route is not replaced: the agent's route is refused instead.
    pool = (
        f"{V3}/ippools/lan",
        {"kind": "IPPool", "metadata": {"name": "lan"}, "spec": {"cidr": "192.168.77.0/24"}},
    )
    n1.change([pool, block("192.168.77.0/24", "n1")])
    assert "route 192.168.77.0/24" in n1.dp.refused
    assert host_view(n1.ns) == n1.before
    assert n1.cluster.reach("a", "e")  # the rest of the cluster is routed as before


def test_a_workload_interface_with_no_endpoint_is_dropped(n1: Node) -> None:
    ghost = n1.f.pod(n1.ns, "ghost", "caliGhost", "10.65.1.9")
    sh(n1.ns, "ip", "link", "set", "caliGhost", "up")
    sh(n1.ns, "sysctl", "-qw", "net.ipv4.conf.caliGhost.proxy_arp=1")
    sh(n1.ns, "ip", "route", "add", "10.65.1.9", "dev", "caliGhost")
    assert not n1.f.ping(ghost, PODS["a"][1])  # its packets never reach pod a
    assert not n1.f.ping(ghost, "192.168.77.1")  # nor the host
    assert n1.cluster.reach("c", "a")


def test_a_second_endpoint_cannot_take_over_a_pods_interface(n1: Node) -> None:
    before = dispatch(n1.ns), nft_table(n1.ns).count("chain e_")
    key, value = evil_wep("thief", "zz", "n1", "calia", "10.65.1.66")
    n1.change([(key, value)])
    assert key in n1.dp.refused
    assert "belongs to" in n1.dp.refused[key]
    assert "10.65.1.66" not in route_dsts(n1.ns)
    # Pod a's dispatch is unchanged and the other endpoint has no chain.  (Its
    # address is in IP sets its labels select, as Felix's calculation, which
    # knows nothing of interfaces, puts it there.)
    assert (dispatch(n1.ns), nft_table(n1.ns).count("chain e_")) == before
    assert n1.cluster.reach("a", "c")
    assert not n1.cluster.reach("b", "a")
    # When the pod's own endpoint goes, the other one is the owner (as in Felix).
    a_key = next(k for k in n1.cluster.state if k.endswith("/default/a"))
    n1.change([(a_key, None)])
    assert key not in n1.dp.refused
    assert "10.65.1.66 dev calia" in agent_routes(n1.ns)


# Pod b admits TCP to port "010", which nft would read as octal (port 8).
OCTAL_PORT_POLICY = (
    f"{V3}/globalnetworkpolicies/ten",
    {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "ten"},
        "spec": {
            "selector": "group == 'b'",
            "types": ["Ingress"],
            "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["010"]}}],
        },
    },
)


def test_octal_looking_ports_are_decimal(n1: Node) -> None:
    n1.change([OCTAL_PORT_POLICY])
    table = nft_table(n1.ns)
    assert "dport 10 " in table
    assert "dport 8 " not in table
    pod_b, pod_a = n1.cluster.pods["b"], n1.cluster.pods["a"]
    listeners = [n1.f.listen(pod_b, port, 15) for port in (8, 10)]
    try:
        wait_until(lambda: n1.f.connect(pod_a, PODS["b"][1], 10), "port 10 allowed")
        assert not n1.f.connect(pod_a, PODS["b"][1], 8)
    finally:
        for p in listeners:
            p.kill()


INJECTIONS = [
    'x" : accept }; flush table inet hostfw #',
    "cali\n",
    'cali"; flush ruleset; #',
    "cali0123456789abc",  # 17 characters
    "cali x",
]


@pytest.mark.parametrize("iface", INJECTIONS)
def test_no_interface_name_reaches_nft_unparsed(n1: Node, iface: str) -> None:
    local_key, local = evil_wep("inj", "default", "n1", iface, "10.65.1.77")
    hep_key = f"{V3}/hostendpoints/inj"
    hep = {
        "kind": "HostEndpoint",
        "metadata": {"name": "inj"},
        "spec": {"node": "n1", "interfaceName": iface, "expectedIPs": ["192.168.77.1"]},
    }
    # The calculation reads endpoints with the server's validation: neither
    # is an endpoint at all, and both are counted.
    calc = n1.cluster.calcs["n1"]
    n1.change([(local_key, local), (hep_key, hep)])
    assert calc.errors["invalid_workload_endpoint"] >= 1
    assert calc.errors["invalid_host_endpoint"] >= 1
    n1.assert_host_untouched()
    # The driver does not rely on that: given the names anyway (a bug
    # upstream of it, another calculation), it refuses them itself.
    batch = DataplaneBatch()
    batch.endpoints_set[local_key] = EndpointInfo(EndpointKind.WORKLOAD, iface, ("10.65.1.77",))
    batch.routes_set["10.65.1.77/32"] = Route("10.65.1.77/32", RouteKind.LOCAL, dev=iface)
    batch.endpoints_set[hep_key] = EndpointInfo(EndpointKind.HOST, iface, ("192.168.77.1",))
    n1.dp.apply(batch)
    assert local_key in n1.dp.refused
    assert hep_key in n1.dp.refused
    n1.assert_host_untouched()
    # The rest of the batch went in: a new pod on the node is programmed.
    n1.f.pod(n1.ns, "f", "calif", "10.65.1.5")
    n1.change([wep("f", "n1", "10.65.1.5", "shared")])
    assert "10.65.1.5 dev calif" in agent_routes(n1.ns)
    assert n1.f.ping(n1.cluster.pods["a"], "10.65.1.5")


def test_an_address_zone_anywhere_freezes_nothing(n1: Node) -> None:
    zoned_policy = (
        f"{V3}/globalnetworkpolicies/zoned",
        {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "zoned"},
            "spec": {
                "selector": "group == 'shared'",
                "types": ["Ingress"],
                "ingress": [{"action": "Deny", "source": {"nets": ["fd00::1%x"]}}],
            },
        },
    )
    remote = evil_wep("zoned", "default", "n2", "caliz", "fd00::5%x")
    n1.change([zoned_policy, remote])
    assert n1.dp.kernel_status()["errors"] == 0
    n1.f.pod(n1.ns, "g", "calig", "10.65.1.6")
    n1.change([wep("g", "n1", "10.65.1.6", "shared")])
    assert "10.65.1.6 dev calig" in agent_routes(n1.ns)
    assert n1.dp.kernel_status()["errors"] == 0
    n1.assert_host_untouched()
    doc = json.loads(sh(n1.ns, "nft", "-j", "list", "table", "inet", "felix_typha").stdout)
    assert doc["nftables"]


def test_a_rule_with_alternatives_on_two_sides_is_a_match_block_that_decides_right(
    n1: Node,
) -> None:
    # Two groups of alternatives: "not ICMP echo" (another protocol, or ICMP
    # of another type) and destination port 10 or the named port http (8080).
    key, value = wep("b", "n1", PODS["b"][1], "pb")
    value["spec"]["ports"] = [{"name": "http", "protocol": "TCP", "port": 8080}]
    # Calico's validation refuses a numeric port with no protocol, so no
    # served policy reads like this; the driver must still render such a
    # rule right when given one, so it goes in as a model, past the gate.
    policy = Policy(
        name="alts",
        namespace="",
        selector=parse_selector("group == 'b'"),
        service_account_selector=None,
        namespace_selector=None,
        order=None,
        tier="",
        types=(PolicyType.INGRESS,),
        ingress=(
            PolicyRule(
                RuleAction.ALLOW,
                not_icmp=(8, None),
                destination=EntityRule(ports=("10",), port_names=("http",)),
            ),
        ),
        egress=(),
    )
    n1.change([(key, value)])
    calc = n1.cluster.calcs["n1"]
    calc.policy.set_policy(f"{V3}/globalnetworkpolicies/alts", PolicyDef.of(policy))
    n1.dp.apply(calc.apply([]))
    assert "0x00020000" in nft_table(n1.ns)  # the match block (nft prints 8 digits)
    pod_a, pod_b = n1.cluster.pods["a"], n1.cluster.pods["b"]
    listeners = [n1.f.listen(pod_b, port, 15) for port in (9, 10, 8080)]
    try:
        # The listeners take a moment to start: wait for the allowed ports.
        wait_until(lambda: n1.f.connect(pod_a, PODS["b"][1], 10), "port 10 allowed")
        wait_until(lambda: n1.f.connect(pod_a, PODS["b"][1], 8080), "named port http allowed")
        assert not n1.f.connect(pod_a, PODS["b"][1], 9)
        assert not n1.f.ping(pod_a, PODS["b"][1])
    finally:
        for p in listeners:
            p.kill()
    n1.assert_host_untouched()
