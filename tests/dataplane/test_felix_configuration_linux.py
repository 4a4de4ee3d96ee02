"""FelixConfiguration applied live with a real kernel: the endpoint-to-host
action, the failsafe ports and the Log rules' prefix follow `default` and `node.<name>` (the
node's fields winning) without a restart; deleting them restores the
defaults; a flag the operator set wins; fields the agent does not apply, or
cannot read exactly, are reported and change nothing."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.host_settings import HostSettings
from tests.dataplane.test_host_endpoints import N1, V3, Host, gnp, hep
from tests.netns import fabric, sh


def felix_config(name: str, **spec: Any) -> tuple[str, Any]:
    return f"{V3}/felixconfigurations/{name}", {
        "kind": "FelixConfiguration",
        "metadata": {"name": name},
        "spec": spec,
    }


def gone(name: str) -> tuple[str, None]:
    return f"{V3}/felixconfigurations/{name}", None


@pytest.fixture
def node() -> Iterator[Host]:
    """n1 with the agent's own defaults: nothing set by flags."""
    with fabric() as f:
        h = Host(f, HostSettings())
        try:
            yield h
        finally:
            h.close()


def pod_to_host(h: Host) -> bool:
    return h.f.connect(h.pod, N1, 8000)


def test_the_endpoint_to_host_action_follows_felix_configuration_live(node: Host) -> None:
    assert not pod_to_host(node)  # Felix's default, Drop
    node.change([felix_config("default", defaultEndpointToHostAction="Accept")])
    assert pod_to_host(node)
    # The node's own configuration wins over the default, field by field.
    node.change([felix_config("node.n1", defaultEndpointToHostAction="Drop")])
    assert not pod_to_host(node)
    # Another node's is not ours.
    node.change([felix_config("node.n2", defaultEndpointToHostAction="Accept")])
    assert not pod_to_host(node)
    node.change([gone("node.n1")])
    assert pod_to_host(node)
    node.change([gone("default")])
    assert not pod_to_host(node)
    assert node.dp.configuration()["in_force"]["default_endpoint_to_host_action"] == "Drop"  # type: ignore[index]
    assert node.dp.kernel_status()["errors"] == 0


def test_failsafe_ports_follow_felix_configuration_and_deletion_restores_calicos(
    node: Host,
) -> None:
    node.change([hep()])  # eth0 policed, no policy: only failsafes get in
    assert node.to_host(22)  # Calico's default inbound failsafes include ssh
    assert not node.to_host(8000)
    node.change(
        [felix_config("default", failsafeInboundHostPorts=[{"protocol": "TCP", "port": 8000}])]
    )
    assert node.to_host(8000)
    assert not node.to_host(22)  # the list replaces the defaults, as in Felix
    node.change([gone("default")])
    assert node.to_host(22)
    assert not node.to_host(8000)


def test_what_cannot_be_honoured_is_reported_and_changes_nothing(node: Host) -> None:
    node.change([hep()])
    node.change(
        [
            felix_config(
                "default",
                logSeverityScreen="Info",
                failsafeInboundHostPorts=[{"protocol": "TCP", "port": 8000, "net": "10.0.0.0/8"}],
                defaultEndpointToHostAction="Accept",
            )
        ]
    )
    conf = node.dp.configuration()
    assert conf["not_applied"] == ["logSeverityScreen"]
    assert len(conf["errors"]) == 1
    assert "net" in conf["errors"][0]
    # The unreadable field is not applied in part: Calico's failsafes stay.
    assert node.to_host(22)
    assert not node.to_host(8000)
    assert pod_to_host(node)  # the readable field is applied


def test_the_resync_interval_follows_the_refresh_intervals(node: Host) -> None:
    assert node.dp.in_force.resync() == 90.0
    node.change(
        [felix_config("default", routeRefreshInterval="30s", iptablesRefreshInterval="10s")]
    )
    assert node.dp.in_force.resync() == 10.0
    node.change([gone("default")])
    assert node.dp.in_force.resync() == 90.0


def test_a_flag_the_operator_set_wins_over_felix_configuration() -> None:
    with fabric() as f:
        h = Host(f, HostSettings(endpoint_to_host=EndpointToHostAction.DROP, resync_interval=5.0))
        try:
            h.change(
                [
                    felix_config(
                        "default", defaultEndpointToHostAction="Accept", routeRefreshInterval="1s"
                    )
                ]
            )
            assert h.dp.in_force.resync() == 5.0
            assert not pod_to_host(h)
            in_force = h.dp.configuration()["in_force"]
            assert in_force["default_endpoint_to_host_action"] == "Drop"  # type: ignore[index]
        finally:
            h.close()


def test_a_writer_flipping_bad_values_cannot_flood_the_log(
    node: Host, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dataplane.linux.driver")
    caplog.set_level(logging.WARNING, logger="felix_client.calc.calculator")
    node.change([hep()])
    for i in range(20):
        # Valid values the agent does not apply (a failsafe entry with a
        # net, bpfEnabled), and every third time one validation refuses
        # (a lower-case protocol), which the agent's gate drops whole.
        proto = "tcp" if i % 3 == 2 else "TCP"
        bad = [{"protocol": proto, "port": 8000 + i, "net": f"10.{i}.0.0/16"}]
        node.change([felix_config("default", failsafeInboundHostPorts=bad, bpfEnabled=bool(i % 2))])
    said = [r.getMessage() for r in caplog.records if "FelixConfiguration" in r.getMessage()]
    refused = [
        r.getMessage() for r in caplog.records if "felixconfigurations/default" in r.getMessage()
    ]
    # One line of each kind within the limiter's interval, however many changes.
    assert len([m for m in said if "ignored" in m]) == 1
    assert len([m for m in said if "does not apply" in m]) == 1
    assert len(refused) == 1
    assert node.calc.errors["invalid_felix_configuration"] == 6
    # And nothing of it was applied: Calico's failsafes stay, 8000 is not one.
    assert node.to_host(22)
    assert not node.to_host(8000)


def log_prefixes(h: Host) -> set[str]:
    """The prefixes of the Log rules in the agent's table on n1."""
    table = sh(h.n1, "nft", "list", "table", "inet", "felix_typha").stdout
    return set(re.findall(r'log prefix "([^"]*)"', table))


def test_the_log_prefix_follows_felix_configuration_live(node: Host) -> None:
    audit = gnp("audit", selector="all()", ingress=[{"action": "Log"}, {"action": "Allow"}])
    node.change([audit])
    assert log_prefixes(node) == {"calico-packet: "}  # Felix's default
    node.change([felix_config("default", logPrefix="audit %k %p in %t")])
    assert log_prefixes(node) == {"audit gnp audit in default: "}
    assert node.to_pod(8080)  # Log continues to the Allow after it
    node.change([gone("default")])
    assert log_prefixes(node) == {"calico-packet: "}
    assert node.dp.kernel_status()["errors"] == 0
