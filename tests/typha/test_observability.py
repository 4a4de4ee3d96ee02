"""What an operator scrapes and probes, from real processes: both /metrics
outputs pass `promtool check metrics` and carry the histograms, gauges,
build info and zero-initialised series the dashboard and alerts use; the
agent's /readyz; a replica that lost etcd still serves a new agent."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from commands.demo.etcd import EmbeddedEtcd
from tests.cluster import put_items
from tests.conftest import (
    Proc,
    free_port,
    http_json,
    http_text,
    metric,
    start_felix_agent,
    start_typha,
    wait_until,
)
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration

PROMTOOL = shutil.which("promtool")
CHART = Path(__file__).resolve().parents[2] / "helm" / "typha"
METRIC_NAME = re.compile(r"\b((?:typha|felix|process|python)_[a-z_]+)\b")


def exported_names(*texts: str) -> set[str]:
    """Every sample name in Prometheus expositions (with _bucket, _total, ...)."""
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for text in texts
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def dashboard_queries() -> list[str]:
    dashboard = json.loads((CHART / "dashboards" / "typha.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    values = {"prometheusRule": {"enabled": True}}
    manifests = chart.render(values, name="typha", namespace="calico-system", is_install=True)
    for text in manifests.values():
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] == "PrometheusRule":
                return list(doc["spec"]["groups"][0]["rules"])
    raise AssertionError("no PrometheusRule rendered")


def promtool_check_rules(tmp: Path) -> str:
    """promtool's verdict on the alert rules and on every dashboard query
    (as recording rules, with Grafana's variables filled in): '' when all
    parse."""
    assert PROMTOOL is not None
    queries = [
        {
            "record": f"dashboard:query{i}",
            "expr": q.replace("$__rate_interval", "5m").replace("$namespace", "calico-system"),
        }
        for i, q in enumerate(dashboard_queries())
    ]
    groups = [{"name": "alerts", "rules": alert_rules()}, {"name": "dashboard", "rules": queries}]
    path = tmp / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    res = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, timeout=30)
    return "" if res.returncode == 0 else (res.stdout + res.stderr).decode()


def seed(etcd: EmbeddedEtcd, n: int = 20) -> None:
    items = [(f"/calico/t/k{i}", b'{"v": %d}' % i) for i in range(n)]
    asyncio.run(put_items(etcd.endpoint, items))


def etcd_digest(etcd: EmbeddedEtcd) -> str:
    return asyncio.run(read_etcd_state([etcd.endpoint])).digest


def promtool_problems(text: str) -> str:
    """promtool's verdict on one exposition: '' when clean."""
    assert PROMTOOL is not None
    res = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    out = (res.stdout + res.stderr).decode()
    return out if res.returncode != 0 or out.strip() else ""


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (sh tools/test-deps installs it)")
def test_both_metrics_outputs_pass_promtool_and_carry_what_dashboards_use(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc], tmp_path: Path
) -> None:
    seed(etcd)
    _typha, agent_port, http_port = start_typha(procs, etcd, "--ping-interval", "0.5")
    _agent, status_port = start_felix_agent(procs, f"127.0.0.1:{agent_port}", "n1")
    wait_until(lambda: http_json(f"http://127.0.0.1:{status_port}/status")["in_sync"], "agent")
    for i in range(5):
        asyncio.run(put_items(etcd.endpoint, [(f"/calico/t/later{i}", b'{"w": 1}')]))
    digest = etcd_digest(etcd)
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{status_port}/status")["digest"] == digest, "agent"
    )
    server_url = f"http://127.0.0.1:{http_port}/metrics"
    agent_url = f"http://127.0.0.1:{status_port}/metrics"
    wait_until(
        lambda: metric(http_text(server_url), "typha_ping_rtt_seconds_count") >= 1,
        "a ping answered",
    )
    server, client = http_text(server_url), http_text(agent_url)

    assert promtool_problems(server) == ""
    assert promtool_problems(client) == ""

    # Latency histograms observed what happened.
    # One sample per batch with updates (writes close together share one; the
    # start-up replay of history is a batch too), never one per agent.
    batches = metric(server, "typha_fanout_latency_seconds_count")
    assert 1 <= batches <= metric(server, "typha_batches_total")
    assert metric(server, "typha_snapshot_send_seconds_count") == 1
    assert metric(server, 'typha_fanout_latency_seconds_bucket{le="+Inf"}') == metric(
        server, "typha_fanout_latency_seconds_count"
    )
    # Gauges of the fleet and the state.
    assert metric(server, "typha_streaming_connections") == 1
    assert metric(server, "typha_ready") == 1
    assert metric(server, 'typha_snapshot_bytes{encoding="zstd"}') > 0
    # Build info and the process collectors.
    assert 'typha_build_info{python="' in server
    assert "version=" in server
    assert metric(server, "process_cpu_seconds_total") > 0
    assert metric(server, "process_open_fds") > 0
    assert "python_info{" in server
    # Labelled counters exist at zero before their first event.
    for line in (
        'typha_connections_closed_total{reason="slow_client"} 0.0',
        'typha_protocol_errors_total{code="malformed"} 0.0',
        'typha_invalid_values_total{reason="not_json"} 0.0',
        'typha_task_failures_total{task="syncer"} 0.0',
    ):
        assert line in server, line

    assert metric(client, "felix_ready") == 1
    assert metric(client, "felix_in_sync") == 1
    deltas = metric(client, "felix_deltas_total")
    assert deltas >= 1
    assert metric(client, "felix_apply_seconds_count") == 1 + deltas  # the snapshot too
    assert metric(client, "felix_snapshots_total") == 1
    assert 'felix_calc_errors_total{reason="rule_http"} 0.0' in client
    assert 'felix_build_info{python="' in client
    assert metric(client, "process_resident_memory_bytes") > 0

    # The dashboard and the alerts ask only for what the processes export,
    # and Prometheus can parse every query.
    exported = exported_names(server, client)
    exprs = dashboard_queries() + [rule["expr"] for rule in alert_rules()]
    assert len(exprs) > 20
    for expr in exprs:
        names = METRIC_NAME.findall(expr)
        # Only the scrape-health alerts ask for no metric of ours: Prometheus's own `up`.
        assert names or re.fullmatch(r"(absent\()?up\{[^}]*\} == [01]\)?", expr), expr
        assert set(names) <= exported, (expr, set(names) - exported)
    assert promtool_check_rules(tmp_path) == ""


def test_the_agent_is_ready_once_its_dataplane_holds_a_complete_state(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    seed(etcd)
    port = free_port()
    _, status_port = start_felix_agent(procs, f"127.0.0.1:{port}", "n1")
    readyz = f"http://127.0.0.1:{status_port}/readyz"

    def ready() -> bool:
        try:
            return bool(http_json(readyz)["ready"])
        except Exception:
            return False

    assert not ready()  # no typha yet: nothing programmed
    assert metric(http_text(f"http://127.0.0.1:{status_port}/metrics"), "felix_ready") == 0
    typha, _, _ = start_typha(procs, etcd, agent_port=port)
    wait_until(ready, "the agent programmed a complete state")
    typha.stop()
    # Between replicas it still enforces what it has: still ready.
    wait_until(lambda: not http_json(f"http://127.0.0.1:{status_port}/status")["connected"], "gone")
    assert ready()


def test_a_replica_without_etcd_serves_its_state_marked_stale_to_a_new_agent(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    seed(etcd, 50)
    digest = etcd_digest(etcd)
    _, agent_port, http_port = start_typha(procs, etcd, "--etcd-watch-timeout", "3")
    etcd.kill()
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{http_port}/status")["readiness"] == "stale",
        "the replica notices etcd is gone",
    )
    with pytest.raises(Exception, match="503"):
        http_json(f"http://127.0.0.1:{http_port}/readyz")
    # An agent that starts now (a node reboot during the outage) still gets
    # the whole state, and learns it is not current.
    _, status_port = start_felix_agent(procs, f"127.0.0.1:{agent_port}", "new-node")
    status_url = f"http://127.0.0.1:{status_port}/status"
    wait_until(lambda: http_json(status_url)["in_sync"], "the new agent gets the state")
    st = http_json(status_url)
    assert st["digest"] == digest
    assert st["keys"] == 50
    wait_until(lambda: http_json(status_url)["upstream_status"] == "waiting", "marked stale")
    assert http_json(status_url)["upstream_in_sync"] is False
    assert http_json(f"http://127.0.0.1:{status_port}/readyz")["ready"] is True
