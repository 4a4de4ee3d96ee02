"""The FelixConfiguration graph node (pure): Felix's merge of `default` and
`node.<name>`, what is applied, reported and refused."""

from __future__ import annotations

from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.failsafe import ProtoPort
from dataplane.host_settings import HostSettings
from felix_client.calc.calculator import Calculator
from felix_client.calc.felix_config import FelixConfigCalc
from felix_client.config import explicit_flags, parse_agent_args

V3 = "/calico/resources/v3/projectcalico.org"


def fc(**spec: object) -> dict[str, object]:
    return {"kind": "FelixConfiguration", "spec": spec}


def test_the_nodes_fields_win_one_by_one_and_other_nodes_are_ignored() -> None:
    calc = FelixConfigCalc("n1")
    calc.set("default", fc(defaultEndpointToHostAction="accept", failsafeOutboundHostPorts=[]))
    calc.set("node.n1", fc(defaultEndpointToHostAction="Return"))
    calc.set("node.n2", fc(failsafeInboundHostPorts=[{"protocol": "UDP", "port": 53}]))
    got = calc.effective().settings
    assert got == HostSettings(None, (), EndpointToHostAction.RETURN)
    calc.set("node.n1", None)
    assert calc.effective().settings.endpoint_to_host is EndpointToHostAction.ACCEPT


def test_unreadable_fields_are_refused_whole_and_others_reported() -> None:
    calc = FelixConfigCalc("n1")
    calc.set(
        "default",
        fc(
            failsafeInboundHostPorts=[
                {"protocol": "tcp", "port": 22},
                {"protocol": "icmp", "port": 1},
            ],
            failsafeOutboundHostPorts=[{"protocol": "tcp", "port": 2379}],
            defaultEndpointToHostAction="Allow",
            ipipEnabled=True,
            bpfEnabled=False,
        ),
    )
    got = calc.effective()
    assert got.settings == HostSettings(None, (ProtoPort("tcp", 2379),), None)
    assert got.not_applied == ("bpfEnabled", "ipipEnabled")
    assert [e.split(":")[0] for e in got.errors] == [
        "defaultEndpointToHostAction",
        "failsafeInboundHostPorts",
    ]


def test_the_calculator_sends_the_configuration_only_when_it_changes() -> None:
    calc = Calculator("n1")
    key = f"{V3}/felixconfigurations/default"
    value = {"kind": "FelixConfiguration", "metadata": {"name": "default"}, "spec": {}}
    first = calc.apply([(key, value)])
    assert first.configured is not None
    assert calc.apply([]).configured is None
    value["spec"] = {"defaultEndpointToHostAction": "Accept"}
    again = calc.apply([(key, value)])
    assert again.configured is not None
    assert again.configured.settings.endpoint_to_host is EndpointToHostAction.ACCEPT


def test_a_setting_is_the_operators_when_a_flag_or_variable_sets_it() -> None:
    flag = "--default-endpoint-to-host-action"
    assert explicit_flags([], {}) == frozenset()
    assert explicit_flags([flag, "Accept"], {}) == {"default-endpoint-to-host-action"}
    assert explicit_flags([], {"FELIX_DEFAULTENDPOINTTOHOSTACTION": "ACCEPT"}) == {
        "default-endpoint-to-host-action"
    }
    assert explicit_flags([], {"FELIX_FAILSAFE_INBOUND_HOST_PORTS": "none"}) == {
        "failsafe-inbound-host-ports"
    }
    base = ["--typha", "t:1", "--node", "n"]
    assert parse_agent_args(base, {}).explicit_settings() == HostSettings()
    config = parse_agent_args([*base, "--failsafe-outbound-host-ports", "none"], {})
    assert config.explicit_settings() == HostSettings(None, (), None)


def test_refresh_intervals_become_the_resync_interval() -> None:
    calc = FelixConfigCalc("n1")
    calc.set("default", fc(routeRefreshInterval="1m30s", iptablesRefreshInterval="45s"))
    assert calc.effective().settings.resync_interval == 45.0
    calc.set("node.n1", fc(iptablesRefreshInterval="0"))  # rules never: routes still
    assert calc.effective().settings.resync_interval == 90.0
    calc.set("default", fc(routeRefreshInterval=0))
    assert calc.effective().settings.resync_interval == 0.0  # both off: never
    calc.set("node.n1", fc(routeRefreshInterval="500ms", iptablesRefreshInterval="2x"))
    got = calc.effective()
    assert got.settings.resync_interval == 0.5
    assert [e.split(":")[0] for e in got.errors] == ["iptablesRefreshInterval"]
    assert HostSettings().resync() == 90.0  # the agent's default when nothing says
