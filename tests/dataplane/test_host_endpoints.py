"""Host endpoints on a real kernel: default deny with failsafes, normal,
applyOnForward, pre-DNAT and untracked policy, endpoints found by address
and the all-interfaces endpoint.

Node n1 runs the driver; its `eth0` (192.168.77.1) is the host endpoint.
Node n2 (192.168.77.2, no agent) is the outside world, and pod `a` on n1
(10.65.1.2) is what n2 reaches through n1.  Every probe is one TCP connect
with one second to complete.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.failsafe import Failsafes, parse_ports
from dataplane.host_settings import HostSettings
from dataplane.linux.driver import LinuxDataplane
from felix_client.calc.calculator import Calculator
from tests.conftest import wait_until
from tests.dataplane.test_linux_dataplane import V3, block, node, wep
from tests.netns import Fabric, fabric, sh

N1, N2, POD = "192.168.77.1", "192.168.77.2", "10.65.1.2"
FAILSAFES = Failsafes(inbound=parse_ports("tcp:22"), outbound=parse_ports("tcp:2379"))


def hep(name: str = "n1-eth0", interface: str = "eth0", ips: tuple[str, ...] = ()) -> Any:
    spec: dict[str, Any] = {"node": "n1", "expectedIPs": list(ips)}
    if interface:
        spec["interfaceName"] = interface
    return f"{V3}/hostendpoints/{name}", {
        "kind": "HostEndpoint",
        "metadata": {"name": name, "labels": {"role": "host"}},
        "spec": spec,
    }


def gnp(name: str, **spec: Any) -> tuple[str, Any]:
    return f"{V3}/globalnetworkpolicies/{name}", {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"selector": "role == 'host'", **spec},
    }


def tcp_in(port: int, action: str = "Allow", **match: Any) -> dict[str, Any]:
    return {"action": action, "protocol": "TCP", "destination": {"ports": [port]}, **match}


ALLOW_ALL = (
    f"{V3}/profiles/open",
    {
        "kind": "Profile",
        "metadata": {"name": "open"},
        "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]},
    },
)


class Host:
    """n1 with its driver, n2 outside, pod a on n1; listeners on the ports used."""

    def __init__(self, f: Fabric, settings: HostSettings | None = None) -> None:
        self.f = f
        self.n1 = f.node("n1", f"{N1}/24")
        self.n2 = f.node("n2", f"{N2}/24")
        self.pod = f.pod(self.n1, "a", "calia", POD)
        sh(self.n2, "ip", "route", "add", "10.65.1.0/26", "via", N1)
        self.listeners = [
            f.listen(ns, port, 120)
            for ns, ports in (
                (self.n1, (22, 8000, 8001, 8002)),
                (self.n2, (2379, 9000)),
                (self.pod, (8080, 8081)),
            )
            for port in ports
        ]
        for ns, ports in ((self.n1, "8002"), (self.n2, "9000"), (self.pod, "8081")):
            wait_until(
                lambda ns=ns, ports=ports: f":{ports} " in sh(ns, "ss", "-ltnH").stdout,
                f"listeners in {ns}",
            )
        self.calc = Calculator("n1")
        # Pods may reach their node (as the chart deploys the agent), so what
        # is seen of pod-to-host traffic is that host endpoint policy leaves it alone.
        self.dp = LinuxDataplane(
            netns=f.path(self.n1),
            node="n1",
            settings=settings
            or HostSettings(FAILSAFES.inbound, FAILSAFES.outbound, EndpointToHostAction.ACCEPT),
        )
        self.change(
            [
                node("n1", N1),
                node("n2", N2),
                block("10.65.1.0/26", "n1"),
                ALLOW_ALL,
                wep("a", "n1", POD, "open"),
            ]
        )

    def change(self, items: list[tuple[str, Any]]) -> None:
        self.dp.apply(self.calc.apply(items))

    def to_host(self, port: int) -> bool:
        return self.f.connect(self.n2, N1, port)

    def from_host(self, port: int) -> bool:
        return self.f.connect(self.n1, N2, port)

    def to_pod(self, port: int) -> bool:
        return self.f.connect(self.n2, POD, port)

    def close(self) -> None:
        self.dp.close()
        for p in self.listeners:
            p.kill()
            p.wait()


@pytest.fixture
def host() -> Iterator[Host]:
    with fabric() as f:
        h = Host(f)
        try:
            yield h
        finally:
            h.close()


def test_a_host_endpoint_without_policy_denies_all_but_failsafes_and_forwarding(
    host: Host,
) -> None:
    assert host.to_host(8000)
    assert host.from_host(9000)
    host.change([hep()])
    assert not host.to_host(8000)  # default deny into the host
    assert not host.from_host(9000)  # and out of it
    assert host.to_host(22)  # failsafe in
    assert host.from_host(2379)  # failsafe out
    assert host.to_pod(8080)  # no applyOnForward policy: forwarding is not policed
    assert host.dp.kernel_status()["errors"] == 0
    assert host.dp.kernel_status()["host_endpoint_interfaces"] == "eth0"
    host.change([(hep()[0], None)])
    assert host.to_host(8000)


def test_normal_policy_opens_a_port_and_apply_on_forward_polices_forwarding(
    host: Host,
) -> None:
    host.change([hep(), gnp("web", types=["Ingress"], ingress=[tcp_in(8000)])])
    assert host.to_host(8000)
    assert not host.to_host(8001)
    # applyOnForward: the same kind of policy now also governs what n1 forwards.
    host.change(
        [
            gnp(
                "fwd",
                order=1,
                applyOnForward=True,
                types=["Ingress"],
                ingress=[tcp_in(8080, "Deny"), {"action": "Allow"}],
            )
        ]
    )
    assert not host.to_pod(8080)
    assert host.to_pod(8081)
    assert host.to_host(8000)  # still allowed: `fwd` allows the rest


def test_pre_dnat_policy_denies_before_normal_policy_allows(host: Host) -> None:
    host.change([hep(), gnp("web", types=["Ingress"], ingress=[tcp_in(8000), tcp_in(8001)])])
    assert host.to_host(8000)
    host.change(
        [
            gnp(
                "pre",
                preDNAT=True,
                applyOnForward=True,
                types=["Ingress"],
                ingress=[tcp_in(8000, "Deny", source={"nets": [f"{N2}/32"]})],
            )
        ]
    )
    assert not host.to_host(8000)
    assert host.to_host(8001)  # pre-DNAT had no verdict: normal policy decides
    assert host.to_host(22)  # failsafes bypass pre-DNAT policy too


def test_untracked_policy_allows_without_connection_tracking(host: Host) -> None:
    host.change([hep()])
    assert not host.to_host(8002)
    host.change(
        [
            gnp(
                "raw",
                doNotTrack=True,
                applyOnForward=True,
                types=["Ingress", "Egress"],
                ingress=[tcp_in(8002)],
                egress=[{"action": "Allow", "protocol": "TCP", "source": {"ports": [8002]}}],
            )
        ]
    )
    assert host.to_host(8002)  # allowed by untracked policy alone
    assert not host.to_host(8000)  # normal default deny still applies to the rest
    conntrack = sh(host.n1, "nft", "list", "chain", "inet", "felix_typha", "raw_prerouting")
    assert "notrack" in conntrack.stdout


def test_an_endpoint_by_expected_ip_follows_its_address(host: Host) -> None:
    host.change([hep(interface="", ips=("192.168.99.1",))])
    assert host.to_host(8000)  # no interface holds that address yet
    sh(host.n1, "ip", "addr", "add", "192.168.99.1/32", "dev", "eth0")
    # The address event puts eth0 under the endpoint without a new batch.
    wait_until(lambda: not host.to_host(8000), "eth0 policed once it holds the address")
    assert host.to_host(22)
    sh(host.n1, "ip", "addr", "del", "192.168.99.1/32", "dev", "eth0")
    wait_until(lambda: host.to_host(8000), "eth0 released when the address goes")


def test_the_all_interfaces_endpoint_covers_every_host_interface_but_workloads(
    host: Host,
) -> None:
    host.change([hep(name="n1-all", interface="*")])
    assert host.dp.kernel_status()["host_endpoint_interfaces"] == "*"
    assert not host.to_host(8000)
    assert host.to_host(22)
    # Loopback is a host interface too, as in Calico.
    assert not host.f.connect(host.n1, "127.0.0.1", 8000)
    # A pod reaching its host is decided by the pod's policy and the
    # endpoint-to-host action (Accept here), never by the host's.
    assert host.f.connect(host.pod, N1, 8000)
    # A named endpoint takes its interface from the all-interfaces one.
    host.change([hep(), gnp("web", types=["Ingress"], ingress=[tcp_in(8000)])])
    assert host.to_host(8000)
    chains = sh(host.n1, "nft", "list", "chain", "inet", "felix_typha", "any_from_hep4").stdout
    assert 'iifname != { "eth0" }' in chains or 'iifname != "eth0"' in chains
