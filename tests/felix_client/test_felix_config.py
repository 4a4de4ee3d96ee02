"""The FelixConfiguration graph node (pure): Felix's merge of `default` and
`node.<name>`, what is applied, reported and refused."""

from __future__ import annotations

from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.failsafe import ProtoPort
from dataplane.host_settings import HostSettings, VxlanParams
from dataplane.nat_outgoing import NatOutgoingExclusions
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


def test_nat_outgoing_exclusions_come_from_the_configuration_or_a_flag() -> None:
    calc = FelixConfigCalc("n1")
    assert not HostSettings().nat_excludes_hosts()  # Felix's IPPoolsOnly
    calc.set("default", fc(natOutgoingExclusions="IPPoolsAndHostIPs"))
    got = calc.effective()
    assert got.settings.nat_exclusions is NatOutgoingExclusions.IPPOOLS_AND_HOST_IPS
    assert got.settings.nat_excludes_hosts()
    assert got.not_applied == ()
    calc.set("node.n1", fc(natOutgoingExclusions="ippoolsonly"))  # Calico's API refuses it
    got = calc.effective()
    assert got.settings.nat_exclusions is None
    assert [e.split(":")[0] for e in got.errors] == ["natOutgoingExclusions"]
    base = ["--typha", "t:1", "--node", "n"]
    env = {"FELIX_NATOUTGOINGEXCLUSIONS": "IPPoolsAndHostIPs"}
    config = parse_agent_args(base, env)
    assert config.explicit_settings().nat_exclusions is NatOutgoingExclusions.IPPOOLS_AND_HOST_IPS
    assert parse_agent_args(base, {}).explicit_settings().nat_exclusions is None


def test_every_nodes_addresses_go_to_the_dataplane_as_they_change() -> None:
    calc = Calculator("n1")
    key = f"{V3}/nodes/n2"

    def node(**bgp: str) -> dict[str, object]:
        return {"kind": "Node", "metadata": {"name": "n2"}, "spec": {"bgp": bgp}}

    batch = calc.apply([(key, node(ipv4Address="192.168.1.2/24", ipv6Address="fd00::2/64"))])
    assert batch.hosts_set == {"n2": ("192.168.1.2", "fd00::2")}
    assert calc.apply([(key, node(ipv4Address="192.168.1.2/24", ipv6Address="fd00::2/64"))]).empty()
    assert calc.apply([(key, node(ipv4Address="192.168.1.3/24"))]).hosts_set == {
        "n2": ("192.168.1.3",)
    }
    assert calc.apply([(key, None)]).hosts_del == {"n2"}


def test_the_log_prefix_comes_from_the_configuration_unless_unreadable() -> None:
    calc = FelixConfigCalc("n1")
    assert HostSettings().log_template() == "calico-packet"
    calc.set("default", fc(logPrefix="audit %k %n"))
    assert calc.effective().settings.log_template() == "audit %k %n"
    calc.set("node.n1", fc(logPrefix='x"; drop'))
    got = calc.effective()
    assert got.settings.log_prefix is None
    assert [e.split(":")[0] for e in got.errors] == ["logPrefix"]


def test_vxlan_settings_come_from_the_configuration_or_flags() -> None:
    calc = FelixConfigCalc("n1")
    assert HostSettings().vxlan() == VxlanParams(4096, 4789, 0, 0)
    assert VxlanParams().mtu_of(4) == 1450
    assert VxlanParams().mtu_of(6) == 1430
    calc.set("default", fc(vxlanVNI=4097, vxlanPort=4790, vxlanMTU=1400, vxlanMTUV6=True))
    got = calc.effective()
    assert got.settings.vxlan() == VxlanParams(4097, 4790, 1400, 0)
    assert [e.split(":")[0] for e in got.errors] == ["vxlanMTUV6"]  # a bool is no MTU
    assert got.not_applied == ()
    base = ["--typha", "t:1", "--node", "n"]
    config = parse_agent_args([*base, "--vxlan-vni", "9"], {"FELIX_VXLANMTU": "1300"})
    assert config.explicit_settings().vxlan() == VxlanParams(9, 4789, 1300, 0)
