"""`typha demo --dataplane linux` as a real process, on real kernels: every
settled reachability matrix is what the policies say, and every namespace it
made is gone afterwards, whether it ends by itself or by Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable

import pytest

from commands.demo.netns import NETNS_DIR
from commands.typha import main
from tests.conftest import Proc, wait_until
from tests.netns import require_kernel

pytestmark = pytest.mark.integration


def _demo_namespaces(output: str) -> list[str]:
    m = re.search(r"\((tdemo\d+)-\*\)", output)
    assert m, output
    prefix = m.group(1) + "-"
    try:
        return [n for n in os.listdir(NETNS_DIR) if n.startswith(prefix)]
    except FileNotFoundError:
        return []


def test_the_linux_demo_shows_policy_taking_effect_and_leaves_no_namespace(
    procs: Callable[..., Proc],
) -> None:
    require_kernel()
    demo = procs(
        "typha", "demo", "--dataplane", "linux", "--duration", "16", "--step", "3", "--vxlan"
    )
    assert demo.popen.wait(180) == 0, demo.output()
    out = demo.output()
    # Four checks (the open start and three policy changes), all as expected.
    assert out.count("as the policies say") >= 4, out
    assert "DIFFERS" not in out
    assert "billing accepts only billing" in out
    assert "21/30 pairs connect" in out  # shop cannot reach billing's three pods
    assert out.count("kernel matches the agent") == 3
    assert "removed the 10 network namespaces" in out
    assert _demo_namespaces(out) == []


def test_ctrl_c_removes_every_namespace_of_the_linux_demo(procs: Callable[..., Proc]) -> None:
    require_kernel()
    demo = procs("typha", "demo", "--dataplane", "linux", "--step", "60")
    wait_until(lambda: "30/30 pairs connect" in demo.output(), "every pod reaching every pod")
    assert len(_demo_namespaces(demo.output())) == 10
    assert demo.stop(signal.SIGINT, timeout=60) == 0, demo.output()
    assert "removed the 10 network namespaces" in demo.output()
    assert _demo_namespaces(demo.output()) == []


def test_namespaces_of_a_killed_demo_are_removed_by_the_next(procs: Callable[..., Proc]) -> None:
    require_kernel()
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = f"tdemo{dead.pid}-node-0"
    subprocess.run(["ip", "netns", "add", orphan], check=True)
    try:
        demo = procs("typha", "demo", "--dataplane", "linux", "--duration", "1")
        assert demo.popen.wait(120) == 0, demo.output()
        assert f"removed namespace {orphan}" in demo.output()
        assert orphan not in os.listdir(NETNS_DIR)
    finally:
        subprocess.run(["ip", "netns", "del", orphan], capture_output=True)


def test_without_root_the_linux_demo_says_so_and_touches_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["demo", "--dataplane", "linux", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "needs root" in err
    assert "memory dataplane" in err
