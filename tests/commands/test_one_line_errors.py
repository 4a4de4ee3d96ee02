"""What an operator gets wrong is one line on stderr, never a traceback:
a port already taken, a malformed etcd endpoint."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.demo.etcd import EmbeddedEtcd

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=60
    )


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("flag", ["--listen", "--http-listen"])
def test_typha_serve_on_a_taken_port_says_which_in_one_line(
    etcd: EmbeddedEtcd, busy_port: int, flag: str
) -> None:
    ports = {"--listen": "127.0.0.1:0", "--http-listen": "127.0.0.1:0"}
    ports[flag] = f"127.0.0.1:{busy_port}"
    out = _run(
        "typha",
        "serve",
        "--etcd-endpoints",
        etcd.endpoint,
        "--log-level",
        "ERROR",
        *[x for kv in ports.items() for x in kv],
    )
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert f"cannot listen on 127.0.0.1:{busy_port} ({flag})" in line
    assert "in use" in line


def test_felix_agent_on_a_taken_status_port_says_so_in_one_line(busy_port: int) -> None:
    out = _run(
        "felix-agent",
        "--typha",
        "127.0.0.1:9",
        "--node",
        "n1",
        "--log-level",
        "ERROR",
        "--http-listen",
        f"127.0.0.1:{busy_port}",
    )
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{busy_port} (--http-listen)" in _one_line(out.stderr)


def test_a_malformed_etcd_endpoint_is_one_line_naming_it() -> None:
    out = _run("typha", "serve", "--etcd-endpoints", "unix:///run/etcd.sock")
    assert out.returncode == 2
    assert "'unix:///run/etcd.sock': scheme must be http or https" in _one_line(out.stderr)


@pytest.mark.parametrize(
    "tls",
    [
        ("--tls-cert-file", "agent.pem", "--tls-key-file", "agent.key"),  # no CA: was plaintext
        ("--tls-ca-file", "ca.pem"),
        ("--tls-server-name", "typha"),
    ],
)
def test_felix_agent_tls_options_that_go_together_are_checked_together(
    tls: tuple[str, ...],
) -> None:
    out = _run("felix-agent", "--typha", "127.0.0.1:9", "--node", "n1", *tls)
    assert out.returncode == 2
    assert "--tls-" in _one_line(out.stderr)


def test_felix_agent_compute_with_a_missing_file_is_one_line(tmp_path: Path) -> None:
    out = _run("felix-agent", "compute", "--node", "n1", str(tmp_path / "nope.json"))
    assert out.returncode == 2
    assert "cannot read" in _one_line(out.stderr)
