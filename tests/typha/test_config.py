from __future__ import annotations

from collections.abc import Callable

import pytest

from commands.demo.etcd import EmbeddedEtcd
from runtime.backoff import Backoff
from runtime.hostport import HostPort
from syncclient.addresses import AddressRotation, parse_addresses
from syncclient.errors import ConfigError as ClientConfigError
from tests.conftest import Proc, listening_ports
from typha.config import parse_hostport, parse_serve_args
from typha.errors import ConfigError


def test_defaults_and_env_and_flag_precedence() -> None:
    cfg = parse_serve_args(["--etcd-endpoints", "e1:2379"], env={})
    assert cfg.listen == HostPort("0.0.0.0", 5473)
    assert cfg.http_listen.port == 9098
    assert cfg.prefix == "/calico/"
    env = {
        "TYPHA_ETCD_ENDPOINTS": "a:1,b:2",
        "TYPHA_LISTEN": "127.0.0.1:7000",
        "TYPHA_PREFIX": "/other",
    }
    cfg = parse_serve_args([], env=env)
    assert cfg.etcd_endpoints == ("a:1", "b:2")
    assert cfg.listen == HostPort("127.0.0.1", 7000)
    assert cfg.prefix == "/other/"
    cfg = parse_serve_args(["--listen", "127.0.0.2:8000"], env=env)
    assert cfg.listen == HostPort("127.0.0.2", 8000)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--etcd-endpoints", "h:notaport"],
        ["--etcd-endpoints", "h:1", "--listen", "h:99999"],
        ["--etcd-endpoints", "h:1", "--idle-timeout", "soon"],
        ["--etcd-endpoints", "h:1", "--max-connections", "0"],
        ["--etcd-endpoints", "h:1", "--log-level", "LOUD"],
        ["--etcd-endpoints", "h:1", "--log-format", "xml"],
        ["--upstream-typha", "root"],
        ["--upstream-typha", "root:5473,:5473"],
        ["--upstream-typha", "r:1", "--upstream-tls-cert-file", "/c.pem"],
        ["--upstream-typha", "r:1", "--upstream-tls-ca-file", "/ca.pem"],
        ["--etcd-endpoints", "h:1", "--upstream-tls-server-name", "typha-root"],
    ],
)
def test_bad_config_is_a_clear_error(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_serve_args(argv, env={})


def test_etcd_endpoints_may_be_urls_as_etcd_prints_them() -> None:
    cfg = parse_serve_args(
        ["--etcd-endpoints", "http://127.0.0.1:23790, http://[::1]:2379/,etcd-2"], env={}
    )
    assert cfg.etcd_endpoints == ("127.0.0.1:23790", "[::1]:2379", "etcd-2:2379")
    tls = ["--etcd-ca-file", "/ca.pem"]
    cfg = parse_serve_args(["--etcd-endpoints", "https://e:2379", *tls], env={})
    assert cfg.etcd_endpoints == ("e:2379",)


@pytest.mark.parametrize(
    ("endpoints", "extra", "message"),
    [
        ("https://e:2379", [], "https:// needs --etcd-ca-file"),
        ("http://e:2379", ["--etcd-ca-file", "/ca.pem"], "but --etcd-ca-file is set"),
        ("unix://e", [], "scheme must be http or https"),
        ("http://", [], "expected HOST"),
        ("http://e:2379/v3/kv", [], "expected HOST"),
        (" , ", [], "no endpoint"),
    ],
)
def test_a_malformed_etcd_endpoint_is_named_in_one_line(
    endpoints: str, extra: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_serve_args(["--etcd-endpoints", endpoints, *extra], env={})
    assert "\n" not in str(info.value)


def test_hostport_forms() -> None:
    assert parse_hostport("[::1]:5") == HostPort("::1", 5)
    assert parse_hostport("h", 9) == HostPort("h", 9)
    assert str(HostPort("::1", 5)) == "[::1]:5"


def test_client_addresses() -> None:
    assert parse_addresses("a:1, b") == [("a", 1), ("b", 5473)]
    assert parse_addresses(["[::1]:7"]) == [("::1", 7)]
    for bad in ["", "a:x", "a:0"]:
        with pytest.raises(ClientConfigError):
            parse_addresses(bad)


def test_rotation_visits_every_address_and_backoff_is_jittered_and_capped() -> None:
    import random

    rot = AddressRotation([("a", 1), ("b", 2), ("c", 3)], rng=random.Random(1))
    assert {rot.next() for _ in range(3)} == {("a", 1), ("b", 2), ("c", 3)}
    b = Backoff(0.1, 1.0, rng=random.Random(2))
    delays = [b.delay() for _ in range(20)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 10


def test_a_leaf_needs_no_etcd_and_runs_nothing_that_needs_it() -> None:
    cfg = parse_serve_args(["--upstream-typha", "typha-root:5473,10.0.0.2:5473"], env={})
    assert cfg.upstream_typha == "typha-root:5473,10.0.0.2:5473"
    assert cfg.etcd_endpoints == ()
    assert cfg.source_check_interval == 0
    assert cfg.rebalance_interval == 0
    env = {"TYPHA_UPSTREAM_TYPHA": "r:1", "TYPHA_ETCD_ENDPOINTS": "e:2379"}
    leaf = parse_serve_args([], env=env)
    assert leaf.upstream_typha == "r:1"
    assert leaf.etcd_endpoints == ()  # the upstream wins: a leaf never watches etcd


def test_calico_spellings_are_read_and_ours_win() -> None:
    calico = {
        "TYPHA_ETCD_ENDPOINTS": "e:1",
        "TYPHA_LOGSEVERITYSCREEN": "Warning",
        "TYPHA_MAXCONNECTIONSUPPERLIMIT": "123",
        "TYPHA_SHUTDOWNTIMEOUTSECS": "7",
    }
    cfg = parse_serve_args([], env=calico)
    assert (cfg.log_level, cfg.max_connections, cfg.shutdown_timeout) == ("WARNING", 123, 7.0)
    cfg = parse_serve_args([], env={**calico, "TYPHA_MAX_CONNECTIONS": "50"})
    assert cfg.max_connections == 50


def test_unknown_typha_variables_are_named_and_known_ones_are_not() -> None:
    import argparse

    from typha.config import add_serve_arguments, unknown_variables

    env = {
        "TYPHA_PREFIX": "/calico/",  # ours
        "TYPHA_CLIENTCN": "typha-agent",  # Calico's, honoured
        "TYPHA_ENDPOINTS": "typha-headless:9098",  # typha status's
        "TYPHA_HEALTHPORT": "9098",  # Calico's, but not ours: one side port here
        "TYPHA_BATCH_WINDOWS": "0.01",  # a misspelling
        "FELIX_ANYTHING": "1",  # not ours to judge
    }
    p = argparse.ArgumentParser()
    add_serve_arguments(p, env)
    assert unknown_variables(env, p) == ["TYPHA_BATCH_WINDOWS", "TYPHA_HEALTHPORT"]


def test_help_shows_defaults_but_never_the_etcd_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"TYPHA_ETCD_PASSWORD": "sekrit", "TYPHA_BATCH_WINDOW": "0.25"}
    with pytest.raises(SystemExit):
        parse_serve_args(["--help"], env=env)
    out = capsys.readouterr().out
    assert "(default: 0.25)" in out
    assert "sekrit" not in out


def test_typha_serve_warns_about_a_misspelt_variable(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    env = {"TYPHA_ETCD_ENDPOINTS": etcd.endpoint, "TYPHA_BATCH_WINDOWS": "0.1"}
    p = procs("typha", "serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", env=env)
    listening_ports(p, r"agents on 127\.0\.0\.1:(\d+), http on 127\.0\.0\.1:(\d+)", "listening")
    assert "TYPHA_BATCH_WINDOWS is set but names no typha setting; ignoring it" in p.output()
    assert "TYPHA_ETCD_ENDPOINTS is set" not in p.output()
