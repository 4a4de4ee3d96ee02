"""Anti-spoofing with a real kernel: a pod that sends with another pod's
source address is dropped before policy sees it (policy matches sources, so
a forged address would otherwise inherit the other pod's access), in both
families, while the real owner of the address still gets through.

Pod b (its own group) forges pod c's address (group shared); the receivers
admit only the shared group, so without the check the forged datagrams
would arrive.  Each datagram's payload names its real sender.
"""

from __future__ import annotations

from typing import Any

from dataplane.linux.driver import LinuxDataplane
from felix_client.calc.calculator import Calculator
from tests.dataplane.test_linux_dataplane import PODS, STATE, Cluster, wep
from tests.netns import HOST_LL, HOST_MAC, Fabric, fabric, nft_packets, sh

PORT = 7100


def source_drops(ns: str) -> int:
    """Packets the anti-spoofing chain of the agent's table in `ns` dropped."""
    return nft_packets(ns, "chain inet felix_typha wl_source", "drop")


def received(
    f: Fabric, dst_ns: str, dst: str, sends: list[tuple[str, str, str]]
) -> list[tuple[str, str]]:
    """Datagrams `dst_ns` received on PORT, as (source, payload), after each
    (sender namespace, source address, payload) sent three to `dst`, in
    order.  The first sender must be one whose packets arrive: it sends
    `end` last, which ends the listening (whatever was dropped had been
    sent before it)."""
    listener = f.probe(dst_ns, "udp-recv", str(PORT), "60")
    assert listener.stdout is not None
    assert listener.stdout.readline().strip() == "ready"
    for ns, src, payload in sends:
        sender = f.probe(ns, "udp-send", src, dst, str(PORT), payload, "3")
        assert sender.wait(10) == 0
    ns, src, _ = sends[0]
    assert f.probe(ns, "udp-send", src, dst, str(PORT), "end", "1").wait(10) == 0
    out, _ = listener.communicate(timeout=90)
    return [tuple(line.split(" ", 1)) for line in out.splitlines() if line]  # type: ignore[misc]


def test_a_pod_forging_another_pods_ipv4_address_is_dropped_and_the_owner_passes() -> None:
    with fabric() as f:
        cluster = Cluster(f)
        try:
            c_ip, e_ip = PODS["c"][1], PODS["e"][1]
            # b's namespace is the attacker's: it gives itself c's address.
            sh(cluster.pods["b"], "ip", "addr", "add", f"{c_ip}/32", "dev", "eth0")
            # As in the IPv6 test: no neighbour resolution between send and drop.
            sh(
                cluster.pods["b"],
                "ip",
                "neigh",
                "replace",
                "169.254.1.1",
                "lladdr",
                HOST_MAC,
                "dev",
                "eth0",
                "nud",
                "permanent",
            )
            before = source_drops(cluster.nodes["n1"])
            got = received(
                f,
                cluster.pods["e"],
                e_ip,
                [(cluster.pods["c"], c_ip, "from-c"), (cluster.pods["b"], c_ip, "from-b")],
            )
            assert got == [(c_ip, "from-c")] * 3
            assert source_drops(cluster.nodes["n1"]) - before >= 3
            assert cluster.reach("a", "e")  # nothing else changed
            assert cluster.dps["n1"].kernel_status()["errors"] == 0
        finally:
            cluster.close()


V6 = {"a": "fd00:65:0:1::2", "b": "fd00:65:0:1::3", "c": "fd00:65:0:1::4"}


def test_a_pod_forging_another_pods_ipv6_address_is_dropped_and_the_owner_passes() -> None:
    state: dict[str, Any] = dict(STATE)
    for p, addr6 in V6.items():
        key, value = wep(p, PODS[p][0], PODS[p][1], PODS[p][2])
        value["spec"]["ipNetworks"].append(f"{addr6}/128")
        state[key] = value
    with fabric() as f:
        n1 = f.node("n1", "192.168.77.1/24", "fd00:77::1/64")
        pods = {p: f.pod(n1, p, f"cali{p}", PODS[p][1], V6[p]) for p in V6}
        dp = LinuxDataplane(netns=f.path(n1), node="n1")
        try:
            dp.apply(Calculator("n1").apply(list(state.items())))
            assert f.ping(pods["c"], V6["a"])  # the shared group reaches a over IPv6
            sh(pods["b"], "ip", "-6", "addr", "add", f"{V6['c']}/128", "dev", "eth0", "nodad")
            # b knows its gateway's MAC already: its forged datagrams leave at
            # once, not after neighbour discovery, whose solicitations from
            # the forged address anti-spoofing drops too (and retries come
            # a second later, after the listening has ended).
            sh(
                pods["b"],
                "ip",
                "-6",
                "neigh",
                "replace",
                HOST_LL,
                "lladdr",
                HOST_MAC,
                "dev",
                "eth0",
                "nud",
                "permanent",
            )
            before = source_drops(n1)
            got = received(
                f,
                pods["a"],
                V6["a"],
                [(pods["c"], V6["c"], "from-c"), (pods["b"], V6["c"], "from-b")],
            )
            assert got == [(V6["c"], "from-c")] * 3
            assert source_drops(n1) - before >= 3
            # Neighbour discovery from link-local sources still works: b's
            # own traffic reaches its gateway and is judged by policy.
            sh(pods["b"], "ip", "-6", "addr", "del", f"{V6['c']}/128", "dev", "eth0")
            assert not f.ping(pods["b"], V6["a"])  # policy, not anti-spoofing
            assert dp.kernel_status()["errors"] == 0
        finally:
            dp.close()


def test_an_address_moving_to_another_pod_moves_its_permission() -> None:
    with fabric() as f:
        cluster = Cluster(f)
        try:
            c_ip, e_ip = PODS["c"][1], PODS["e"][1]
            # c's address is handed to b (c deleted, b's endpoint given it):
            # the sets follow the endpoints, so now b may send from it.
            key_c, _ = wep("c", "n1", c_ip, "shared")
            key_b, b = wep("b", "n1", c_ip, "shared")
            sh(cluster.pods["c"], "ip", "link", "set", "eth0", "down")
            cluster.change([(key_c, None), (key_b, b)])
            sh(cluster.pods["b"], "ip", "addr", "add", f"{c_ip}/32", "dev", "eth0")
            got = received(f, cluster.pods["e"], e_ip, [(cluster.pods["b"], c_ip, "from-b")])
            assert got == [(c_ip, "from-b")] * 3
            elements = sh(
                cluster.nodes["n1"], "nft", "list", "set", "inet", "felix_typha", "wl_src4"
            )
            assert f'"calib" . {c_ip}' in elements.stdout
            assert '"calic"' not in elements.stdout
        finally:
            cluster.close()


def test_the_source_sets_survive_a_restart_and_a_resync_repairs_them() -> None:
    with fabric() as f:
        cluster = Cluster(f)
        try:
            n1 = cluster.nodes["n1"]
            sh(n1, "nft", "flush", "set", "inet", "felix_typha", "wl_src4")
            assert not cluster.reach("a", "e")  # every workload's source now refused
            repaired = cluster.dps["n1"].resync()
            assert repaired["nft_statements"] >= 1
            assert cluster.reach("a", "e")
            # A new driver over the same kernel finds nothing to change.
            again = cluster.restart("n1")
            assert again.kernel_changes() == 0
            assert again.resync()["nft_statements"] == 0
        finally:
            cluster.close()
