"""`felix-agent explain`: asking a running agent (real etcd, typha and
agent processes) and computing from a state file; what it refuses and how.
The kernel's side is in tests/dataplane/test_explain_linux.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd
from commands.felix_agent import main
from dataplane.trace import TraceError, packet
from felix_client.calc.calculator import Calculator
from felix_client.explain import Query, pod_of, resolve
from felix_client.explain.route import ExplainGate
from tests.cluster import put_items
from tests.conftest import Proc, http_json, start_felix_agent, start_typha, wait_until
from tests.dataplane.test_linux_dataplane import STATE
from tests.dataplane.test_policy_counters_linux import BLOCKED, DENY_BLOCKED, policy

ROOT = Path(__file__).resolve().parents[2]
# A, B, C on n1; A is blocked; deny-blocked is enforced.
CLUSTER = {**STATE, **dict([policy("deny-blocked", DENY_BLOCKED), BLOCKED])}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "felix_client", "explain", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.integration
def test_a_running_agent_explains_from_its_tables(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    items = [(k, orjson.dumps(v)) for k, v in CLUSTER.items()]
    asyncio.run(put_items(etcd.endpoint, items))
    _typha, agent_port, _ = start_typha(procs, etcd)
    _agent, status = start_felix_agent(procs, f"127.0.0.1:{agent_port}", "n1")
    wait_until(lambda: http_json(f"http://127.0.0.1:{status}/status")["ready"], "agent ready")
    agent = f"127.0.0.1:{status}"

    res = run("default/a", "default/c", "--protocol", "icmp", "--agent", agent, "-o", "json")
    assert res.returncode == 0, res.stderr
    out = orjson.loads(res.stdout)
    assert out["verdict"] == "deny"
    assert out["tables"] == "computed"
    (ingress,) = [h for h in out["hops"] if h["direction"] == "ingress"]
    assert ingress["decided"] == {
        "tier": "default",
        "policy": "deny-blocked",
        "rule": "1",
        "action": "Deny",
        "staged": False,
    }
    text = run("default/a", "default/c", "--protocol", "icmp", "--agent", agent)
    assert "tier default, policy deny-blocked: rule 1 Deny  <- decided" in text.stdout
    assert text.stdout.rstrip().endswith("verdict: deny")

    # The memory dataplane has no kernel to read: said, exit 2.
    kernel = run("default/a", "default/c", "--kernel", "--agent", agent)
    assert kernel.returncode == 2
    assert "linux dataplane" in kernel.stderr
    bad = run("default/nobody", "default/c", "--agent", agent)
    assert bad.returncode == 2
    assert "'default/nobody' is not an address or a workload endpoint" in bad.stderr


def test_no_agent_there_is_exit_3() -> None:
    res = run("10.0.0.1", "10.0.0.2", "--agent", "127.0.0.1:1")
    assert res.returncode == 3
    assert "127.0.0.1:1" in res.stderr


def test_a_state_file_is_explained_without_an_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(orjson.dumps(CLUSTER))
    # From the other node's pod E, by address: only C's ingress is on n1,
    # where deny-blocked's tier ends in Deny for what it does not allow.
    args = ["explain", "10.65.2.3", "default/c", "--port", "80", "--state", str(path)]
    assert main([*args, "--node", "n1", "-o", "json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["verdict"] == "deny"
    assert [h["direction"] for h in out["hops"]] == ["ingress"]
    assert out["hops"][0]["decided"]["policy"] == "__END_OF_TIER__"
    assert out["packet"] == {
        "src": "10.65.2.3",
        "dst": "10.65.1.4",
        "protocol": 6,
        "sport": 40000,
        "dport": 80,
    }
    # On n2 the same packet leaves E: only its egress is there.
    assert main([*args, "--node", "n2", "-o", "json"]) == 0
    assert [h["direction"] for h in orjson.loads(capsys.readouterr().out)["hops"]] == ["egress"]
    assert main([*args]) == 2
    assert "--state needs --node" in capsys.readouterr().err


def test_pod_names_resolve_as_calico_writes_endpoint_names() -> None:
    assert pod_of("node--1-k8s-web--7f-eth0") == "web-7f"
    assert pod_of("plain") is None
    calc = Calculator("n1")
    calc.apply(list(CLUSTER.items()))
    eps = calc.policy.endpoints.eps
    assert resolve("default/a", eps) == [f"{STATE_WEP}/default/a"]
    assert resolve("other/a", eps) == []


STATE_WEP = "/calico/resources/v3/projectcalico.org/workloadendpoints"


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"to": "10.0.0.2"}, "both `from` and `to`"),
        ({"from": "10.0.0.1", "to": "10.0.0.2", "port": "eighty"}, "port must be a number"),
    ],
)
def test_a_query_that_cannot_be_answered_says_why(params: dict[str, str], why: str) -> None:
    with pytest.raises(TraceError, match=why):
        Query.of(params)


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"src": "10.0.0.1", "dst": "fd00::1", "protocol": 6}, "different IP families"),
        ({"src": "10.0.0.1", "dst": "10.0.0.2", "protocol": 1, "port": 80}, "ports need"),
        ({"src": "10.0.0.1", "dst": "10.0.0.2", "protocol": 6, "icmp_type": 8}, "ICMP type"),
        ({"src": "10.0.0.1", "dst": "10.0.0.2", "protocol": 6, "port": 70000}, "0-65535"),
        ({"src": "10.0.0", "dst": "10.0.0.2", "protocol": 6}, "does not appear"),
    ],
)
def test_a_packet_that_cannot_be_is_refused(kw: dict[str, Any], why: str) -> None:
    with pytest.raises(TraceError, match=why):
        packet(**kw)


def test_an_icmp_packet_without_a_type_is_an_echo_request() -> None:
    assert (
        packet("10.0.0.1", "10.0.0.2", 1).icmp_type,
        packet("fd00::1", "fd00::2", 58).icmp_type,
    ) == (8, 128)


def test_one_explanation_at_a_time_and_a_kernel_one_at_most_each_second() -> None:
    now = [10.0]
    gate = ExplainGate(clock=lambda: now[0])
    q = Query("10.0.0.1", "10.0.0.2")
    kq = Query("10.0.0.1", "10.0.0.2", kernel=True)
    assert gate.refusal(q) is None
    assert "running" in (gate.refusal(q) or "")  # the first has not finished
    gate.done()
    assert gate.refusal(kq) is None
    gate.done()
    now[0] += 0.5
    assert "per 1 s" in (gate.refusal(kq) or "")
    assert gate.refusal(q) is None  # the computed tables are not rate limited
    gate.done()
    now[0] += 0.6
    assert gate.refusal(kq) is None
