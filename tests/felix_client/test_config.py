"""felix-agent configuration: flags, FELIX_* variables, checks."""

from __future__ import annotations

import pytest

from felix_client.config import parse_agent_args
from syncclient.errors import ConfigError


def test_flags_win_over_the_environment_which_wins_over_defaults() -> None:
    env = {"FELIX_TYPHA": "t1:5473", "FELIX_NODE": "env-node", "FELIX_PREFIX": "/env"}
    cfg = parse_agent_args(["--node", "flag-node"], env)
    assert cfg.typha == "t1:5473"
    assert cfg.node == "flag-node"
    assert cfg.prefix == "/env/"  # normalised with its trailing slash
    assert parse_agent_args(["--typha", "t:1", "--node", "n"], {}).prefix == "/calico/"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--node", "n"], "--typha"),
        (["--typha", "t:1"], "--node"),
        (["--typha", "t:1", "--node", "n", "--prefix", "calico"], "prefix"),
        (["--typha", "t:99999", "--node", "n"], "address"),
        (["--typha", "t:1", "--node", "n", "--upstream-stale-after", "soon"], "number"),
        (["--typha", "t:1", "--node", "n", "--failsafe-inbound-host-ports", "ssh"], "'ssh'"),
        (["--typha", "t:1", "--node", "n", "--failsafe-outbound-host-ports", "tcp:0"], "'tcp:0'"),
        # TLS options go together: a certificate without a CA was plaintext.
        (["--typha", "t:1", "--node", "n", "--tls-cert-file", "c", "--tls-key-file", "k"], "go"),
        (["--typha", "t:1", "--node", "n", "--tls-ca-file", "ca"], "go together"),
        (["--typha", "t:1", "--node", "n", "--tls-server-name", "typha"], "needs"),
        (["--typha", "t:1", "--node", "n", "--interface-prefix", "ca li"], "interface"),
        # A bad number names its flag; a log level is one of the four.
        (["--typha", "t:1", "--node", "n", "--resync-interval", "often"], "--resync-interval"),
        (["--typha", "t:1", "--node", "n", "--max-snapshot-bytes", "1e9"], "--max-snapshot"),
        (["--typha", "t:1", "--node", "n", "--dataplane-delay", "-1"], "--dataplane-delay"),
        (["--typha", "t:1", "--node", "n", "--log-level", "verbose"], "--log-level"),
    ],
)
def test_bad_configuration_is_refused_with_its_reason(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_agent_args(argv, {})


def test_failsafe_ports_default_to_calicos_and_can_be_set_or_switched_off() -> None:
    base = ["--typha", "t:1", "--node", "n"]
    cfg = parse_agent_args(base, {})
    assert [str(p) for p in cfg.failsafes.inbound] == [
        "tcp:22",
        "tcp:179",
        "tcp:2379",
        "tcp:2380",
        "tcp:5473",
        "tcp:6443",
        "tcp:6666",
        "tcp:6667",
        "udp:68",
    ]
    assert "udp:53" in [str(p) for p in cfg.failsafes.outbound]
    env = {"FELIX_FAILSAFE_INBOUND_HOST_PORTS": "TCP:2222, udp:53"}
    cfg = parse_agent_args([*base, "--failsafe-outbound-host-ports", "none"], env)
    assert [str(p) for p in cfg.failsafes.inbound] == ["tcp:2222", "udp:53"]
    assert cfg.failsafes.outbound == ()


def test_unknown_felix_variables_are_named_and_calicos_spellings_are_known() -> None:
    from felix_client.config import agent_parser, unknown_variables

    env = {
        "FELIX_NODE": "n",
        "FELIX_INTERFACEPREFIX": "cali",  # Calico's spelling of --interface-prefix
        "FELIX_TYPHAADDR": "t:1",  # Calico's spelling of --typha
        "FELIX_RESYNC_INTERVL": "5",  # a misspelling
        "TYPHA_LISTEN": "x",  # not ours to judge
    }
    assert unknown_variables(env, agent_parser(env)) == ["FELIX_RESYNC_INTERVL"]
    assert parse_agent_args([], env).typha == "t:1"


def test_help_shows_defaults_and_the_other_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from felix_client.config import agent_parser

    agent_parser({}).print_help()
    text = capsys.readouterr().out
    assert "compute" in text
    assert "--version" in text
    assert "(default: 90)" in text  # --resync-interval


def test_calicos_log_and_typha_tls_spellings_are_read_and_ours_win() -> None:
    env = {
        "FELIX_TYPHAADDR": "t:1",
        "FELIX_NODE": "n",
        "FELIX_LOGSEVERITYSCREEN": "Warning",
        "FELIX_TYPHACAFILE": "/etc/calico/ca.crt",
        "FELIX_TYPHACERTFILE": "/etc/calico/tls.crt",
        "FELIX_TYPHAKEYFILE": "/etc/calico/tls.key",
        "FELIX_HEALTHPORT": "9099",  # Calico's, but no setting here
    }
    cfg = parse_agent_args([], env)
    assert cfg.log_level == "WARNING"
    assert (cfg.tls_ca_file, cfg.tls_key_file) == ("/etc/calico/ca.crt", "/etc/calico/tls.key")
    assert parse_agent_args([], {**env, "FELIX_LOG_LEVEL": "DEBUG"}).log_level == "DEBUG"
    from felix_client.config import agent_parser, unknown_variables

    assert unknown_variables(env, agent_parser(env)) == ["FELIX_HEALTHPORT"]


def test_the_endpoint_to_host_action_defaults_to_felixs_and_takes_calicos_spellings() -> None:
    from dataplane.endpoint_to_host import EndpointToHostAction

    base = {"FELIX_TYPHA": "t:1", "FELIX_NODE": "n"}
    assert parse_agent_args([], base).endpoint_to_host is EndpointToHostAction.DROP
    env = {**base, "FELIX_DEFAULTENDPOINTTOHOSTACTION": "ACCEPT"}
    assert parse_agent_args([], env).endpoint_to_host is EndpointToHostAction.ACCEPT
    argv = ["--default-endpoint-to-host-action", "return"]
    assert parse_agent_args(argv, env).endpoint_to_host is EndpointToHostAction.RETURN
    with pytest.raises(ConfigError, match="--default-endpoint-to-host-action: 'allow'"):
        parse_agent_args(["--default-endpoint-to-host-action", "allow"], base)
