"""felix-agent configuration: flags, FELIX_* variables, checks."""

from __future__ import annotations

import pytest

from felix_client.config import parse_agent_args
from felix_client.errors import ConfigError


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
    ],
)
def test_bad_configuration_is_refused_with_its_reason(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_agent_args(argv, {})
