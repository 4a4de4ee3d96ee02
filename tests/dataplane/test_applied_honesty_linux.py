"""An agent never says "applied" for what its kernel refused.

In the namespace fabric (etcd, typha and a `felix-agent --dataplane linux`
per node, real processes), another program takes the agent's nftables
table on n1 (deletes it and creates one of the same name that only it may
change: `flags owner`), so the kernel refuses every change the agent makes
there.  A deny policy written then is not in force on n1: n1's agent must
not report it applied (no APPLIED, `applied_revision` stays behind,
/readyz 503, /convergence lists it, `typha wait-applied` times out), while
n2 applies it.  Once that program exits and its table goes, the agent's
next resync programs the kernel, and only then is the revision applied:
`wait-applied` returns and the deny drops packets on both nodes.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.conftest import wait_until
from tests.dataplane.fabric_cluster import AGENT_HTTP, BIN, TYPHA_HTTP, fabric_cluster
from tests.dataplane.test_fabric import DENY_ICMP, DENY_ICMP_KEY
from tests.netns import sh

pytestmark = pytest.mark.integration


def owned_by_another(ns: str) -> bool:
    listed = sh(ns, "nft", "list", "table", "inet", "felix_typha", check=False).stdout
    return "flags owner" in listed


def take_table(ns: str) -> subprocess.Popen[str]:
    """A program that holds `inet felix_typha` in `ns` for as long as it runs
    (it retries while the agent's own resync recreates the table)."""
    holder = subprocess.Popen(
        ["ip", "netns", "exec", ns, "nft", "-i"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert holder.stdin is not None

    def take() -> bool:
        assert holder.stdin is not None
        holder.stdin.write("delete table inet felix_typha\n")
        holder.stdin.write("add table inet felix_typha { flags owner; }\n")
        holder.stdin.flush()
        time.sleep(0.2)
        return owned_by_another(ns)

    wait_until(take, "another program holds the agent's table")
    return holder


def test_a_refused_change_is_not_reported_applied_until_the_kernel_has_it(
    tmp_path: Path,
) -> None:
    with fabric_cluster(tmp_path) as c:
        holder = None
        try:

            def readyz(node: str) -> int:
                def get() -> int:
                    try:
                        with urllib.request.urlopen(f"http://{AGENT_HTTP}/readyz", timeout=2) as r:
                            return int(r.status)
                    except urllib.error.HTTPError as exc:
                        return int(exc.code)

                return c.agents[node].call(get)

            def wait_applied(revision: int, timeout: float) -> subprocess.CompletedProcess[bytes]:
                cmd = [str(BIN / "typha"), "wait-applied", "--revision", str(revision)]
                cmd += ["--endpoints", TYPHA_HTTP, "--timeout", str(timeout)]
                return subprocess.run([*c.exec_infra(), *cmd], capture_output=True, timeout=120)

            wait_until(lambda: c.reach("a", "c"), "a reaches c on n1")
            assert readyz("n1") == 200
            holder = take_table(c.nodes["n1"])
            revision = c.put({DENY_ICMP_KEY: DENY_ICMP})
            wait_until(lambda: c.status("n2").get("applied_revision", 0) >= revision, "n2 applies")
            wait_until(lambda: readyz("n1") == 503, "n1 says it is not ready")
            resyncs = c.status("n1")["kernel"]["resyncs"]
            wait_until(
                lambda: c.status("n1")["kernel"]["resyncs"] >= resyncs + 2,
                "two more resyncs, each refused",
            )
            st = c.status("n1")
            assert st["applied_revision"] < revision
            assert st["dataplane_failures"] >= 1
            assert st["ready"] is False
            assert st["readiness"] == "failing"  # it held a complete state before
            lagging = c.convergence(revision)["lagging"]
            assert [x["node"] for x in lagging] == ["n1"]
            assert wait_applied(revision, 2).returncode == 1
            assert c.reach("a", "c"), "n1's kernel has no deny (its table is not the agent's)"

            holder.stdin.close()  # type: ignore[union-attr]
            holder.wait(timeout=10)
            holder = None
            done = wait_applied(revision, 60)
            assert done.returncode == 0, done.stderr.decode()
            assert orjson.loads(done.stdout)["applied"] == 2
            assert not c.reach("a", "c"), "wait-applied returned, yet n1 lets ICMP in"
            assert not c.reach("a", "e")
            assert c.status("n1")["applied_revision"] >= revision
            assert readyz("n1") == 200
        finally:
            if holder is not None:
                holder.kill()
