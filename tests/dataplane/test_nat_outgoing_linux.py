"""Outgoing NAT with a real kernel: a pod in a natOutgoing pool reaches an
address outside every pool (a namespace standing for the internet, behind
the nodes' default gateway) with its node's address; without natOutgoing
it arrives with its own; pod to pod, across nodes, is never translated.
Both families; the pool sets follow pool changes incrementally; with
natOutgoingExclusions IPPoolsAndHostIPs (live, from FelixConfiguration)
other nodes see the pod's own address."""

from __future__ import annotations

import json
from typing import Any

from dataplane.linux.driver import LinuxDataplane
from felix_client.calc.calculator import Calculator
from tests.dataplane.test_antispoof_linux import received
from tests.dataplane.test_linux_dataplane import PODS, POOL, STATE, V3, Cluster, wep
from tests.netns import Fabric, fabric, nft_packets, sh

INTERNET4 = "203.0.113.10"
INTERNET6 = "2001:db8:1::10"


def internet(f: Fabric) -> str:
    """The nodes' default gateway (192.168.77.254, fd00:77::fe), holding an
    address outside every pool."""
    ns = f.node("gw", "192.168.77.254/24", "fd00:77::fe/64")
    sh(ns, "ip", "addr", "add", f"{INTERNET4}/32", "dev", "lo")
    sh(ns, "ip", "-6", "addr", "add", f"{INTERNET6}/128", "dev", "lo", "nodad")
    return ns


def pool(nat: bool, cidr: str = "10.65.0.0/16", name: str = "p") -> tuple[str, Any]:
    _key, value = POOL
    value = json.loads(json.dumps(value))
    value["metadata"]["name"] = name
    value["spec"].update(cidr=cidr, natOutgoing=nat)
    return f"{V3}/ippools/{name}", value


def masquerades(ns: str) -> int:
    """Packets the agent's NAT chain in `ns` translated."""
    return nft_packets(ns, "chain inet felix_typha nat_postrouting")


def test_a_pod_reaches_outside_the_pools_with_its_nodes_address_only_with_nat_outgoing() -> None:
    with fabric() as f:
        cluster = Cluster(f)
        gw = internet(f)
        try:
            a_ip = PODS["a"][1]
            # natOutgoing off (the sample pool): the pod's own address arrives.
            got = received(f, gw, INTERNET4, [(cluster.pods["a"], a_ip, "no-nat")])
            assert got == [(a_ip, "no-nat")] * 3
            cluster.change([pool(True)])
            got = received(f, gw, INTERNET4, [(cluster.pods["a"], a_ip, "nat")])
            assert got == [("192.168.77.1", "nat")] * 3
            assert masquerades(cluster.nodes["n1"]) >= 1
            # Pod to pod across nodes keeps its address: e sees a's own.
            got = received(f, cluster.pods["e"], PODS["e"][1], [(cluster.pods["a"], a_ip, "pod")])
            assert got == [(a_ip, "pod")] * 3
            # Switched off again: the pool leaves the NAT set, nothing else moves.
            cluster.change([pool(False)])
            sets = sh(
                cluster.nodes["n1"], "nft", "list", "set", "inet", "felix_typha", "nat_pools4"
            )
            assert "10.65.0.0/16" not in sets.stdout
            got = received(f, gw, INTERNET4, [(cluster.pods["a"], a_ip, "off")])
            assert got == [(a_ip, "off")] * 3
            assert cluster.dps["n1"].kernel_status()["errors"] == 0
        finally:
            cluster.close()


def test_nested_pools_collapse_and_a_second_pool_is_not_a_destination_for_nat() -> None:
    with fabric() as f:
        cluster = Cluster(f)
        try:
            n1 = cluster.nodes["n1"]
            cluster.change(
                [pool(True), pool(True, "10.65.1.0/24", "inner"), pool(False, "10.99.0.0/16", "q")]
            )
            nat = sh(n1, "nft", "list", "set", "inet", "felix_typha", "nat_pools4").stdout
            every = sh(n1, "nft", "list", "set", "inet", "felix_typha", "pools4").stdout
            assert "10.65.0.0/16" in nat
            assert "10.65.1.0/24" not in nat
            assert "10.65.0.0/16" in every
            assert "10.99.0.0/16" in every
            # A restarted driver finds the sets as they should be.
            assert cluster.restart("n1").kernel_changes() == 0
        finally:
            cluster.close()


V6 = {"a": "fd00:65:0:1::2", "e": "fd00:65:0:2::3"}


def test_ipv6_nat_outgoing() -> None:
    state: dict[str, Any] = dict(STATE)
    for p, addr6 in V6.items():
        key, value = wep(p, PODS[p][0], PODS[p][1], PODS[p][2])
        value["spec"]["ipNetworks"].append(f"{addr6}/128")
        state[key] = value
    key6, pool6 = pool(True, "fd00:65::/48", "v6")
    state[key6] = pool6
    with fabric() as f:
        n1 = f.node("n1", "192.168.77.1/24", "fd00:77::1/64")
        sh(n1, "ip", "-6", "route", "add", "default", "via", "fd00:77::fe", "dev", "eth0")
        gw = internet(f)
        a = f.pod(n1, "a", "calia", PODS["a"][1], V6["a"])
        dp = LinuxDataplane(netns=f.path(n1), node="n1")
        try:
            dp.apply(Calculator("n1").apply(list(state.items())))
            got = received(f, gw, INTERNET6, [(a, V6["a"], "nat6")])
            assert got == [("fd00:77::1", "nat6")] * 3
            assert dp.kernel_status()["errors"] == 0
        finally:
            dp.close()


def felix_config(**spec: object) -> tuple[str, Any]:
    return f"{V3}/felixconfigurations/default", {
        "kind": "FelixConfiguration",
        "metadata": {"name": "default"},
        "spec": spec,
    }


def test_ippools_and_host_ips_leave_a_pod_its_address_to_other_nodes_live() -> None:
    with fabric() as f:
        cluster = Cluster(f)
        try:
            a_ip, n2 = PODS["a"][1], cluster.nodes["n2"]
            cluster.change([pool(True)])
            # Felix's default, IPPoolsOnly: another node is outside every pool.
            got = received(f, n2, "192.168.77.2", [(cluster.pods["a"], a_ip, "only")])
            assert got == [("192.168.77.1", "only")] * 3
            cluster.change([felix_config(natOutgoingExclusions="IPPoolsAndHostIPs")])
            hosts = sh(
                cluster.nodes["n1"], "nft", "list", "set", "inet", "felix_typha", "all_hosts4"
            )
            assert "192.168.77.1" in hosts.stdout
            assert "192.168.77.2" in hosts.stdout
            got = received(f, n2, "192.168.77.2", [(cluster.pods["a"], a_ip, "hosts")])
            assert got == [(a_ip, "hosts")] * 3
            # The internet is still reached with the node's address.
            gw = internet(f)
            got = received(f, gw, INTERNET4, [(cluster.pods["a"], a_ip, "out")])
            assert got == [("192.168.77.1", "out")] * 3
            assert cluster.dps["n1"].in_force.nat_excludes_hosts()
            # Deleted: the default again, in the kernel.
            cluster.change([(felix_config()[0], None)])
            got = received(f, n2, "192.168.77.2", [(cluster.pods["a"], a_ip, "again")])
            assert got == [("192.168.77.1", "again")] * 3
            assert cluster.dps["n1"].kernel_status()["errors"] == 0
        finally:
            cluster.close()
