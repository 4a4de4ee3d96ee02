"""Convergence on real kernels: in the namespace fabric, with node n2's
dataplane held back, `typha wait-applied` for a deny policy's revision
returns only once the deny blocks packets on every node, and /convergence
tells, node by node, where it is already in force."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from tests.conftest import wait_until
from tests.dataplane.fabric_cluster import BIN, TYPHA_HTTP, fabric_cluster
from tests.dataplane.test_fabric import DENY_ICMP, DENY_ICMP_KEY

pytestmark = pytest.mark.integration

SLOW = 4.0  # seconds each of n2's batches is held back before the kernel sees it


def test_wait_applied_returning_means_the_deny_blocks_packets_on_every_node(
    tmp_path: Path,
) -> None:
    with fabric_cluster(tmp_path, agent_args={"n2": ["--dataplane-delay", str(SLOW)]}) as c:
        wait_until(lambda: c.reach("a", "e"), "a reaches e across the fabric")
        assert c.reach("a", "c")
        revision = c.put({DENY_ICMP_KEY: DENY_ICMP})
        waiter = subprocess.Popen(
            [
                *c.exec_infra(),
                str(BIN / "typha"),
                "wait-applied",
                "--revision",
                str(revision),
                "--endpoints",
                TYPHA_HTTP,
                "--timeout",
                "120",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            # n1 has applied it, n2 not yet: in force on n1 only.
            wait_until(
                lambda: [x["node"] for x in c.convergence(revision)["lagging"]] == ["n2"],
                "n1 applies the deny while n2 lags",
            )
            assert c.convergence(revision)["applied"] == 1
            assert not c.reach("a", "c"), "n1 reported the deny applied, yet c answers"
            assert waiter.poll() is None, "wait-applied returned while n2 lagged"
            assert c.reach("a", "e"), "n2 has not applied the deny, yet e is already cut off"
            out, err = waiter.communicate(timeout=120)
        finally:
            if waiter.poll() is None:
                waiter.kill()
        assert waiter.returncode == 0, err.decode()
        assert orjson.loads(out)["applied"] == 2
        # One attempt each, no retry: returning must mean in force.
        assert not c.reach("a", "e"), "wait-applied returned but e still answers"
        assert not c.reach("a", "c")
        assert c.status("n2")["applied_revision"] >= revision
        assert c.status("n2")["kernel"]["errors"] == 0
