"""`typha demo` as a real process: it converges, and Ctrl-C leaves nothing running."""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Callable

import pytest

from tests.conftest import Proc, wait_until

pytestmark = pytest.mark.integration


def _etcd_port(output: str) -> int:
    m = re.search(r"etcd at 127\.0\.0\.1:(\d+)", output)
    assert m, output
    return int(m.group(1))


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_with_duration_ends_ok(procs: Callable[..., Proc]) -> None:
    demo = procs(
        "typha", "demo", "--duration", "3", "--agents", "4", "--nodes", "5", "--rate", "30"
    )
    assert demo.popen.wait(120) == 0, demo.output()
    out = demo.output()
    assert "4/4 agents match etcd" in out
    assert out.strip().splitlines()[-2:] == ["OK", "embedded etcd stopped"]
    assert not _port_open(_etcd_port(out))


def test_demo_stops_cleanly_on_ctrl_c(procs: Callable[..., Proc]) -> None:
    demo = procs("typha", "demo", "--agents", "3", "--nodes", "5", "--rate", "20")
    wait_until(lambda: "3/3" in demo.output(), "demo live view with all agents connected")
    port = _etcd_port(demo.output())
    assert _port_open(port)
    assert demo.stop(signal.SIGINT, timeout=60) == 0, demo.output()
    assert "embedded etcd stopped" in demo.output()
    assert not _port_open(port)
