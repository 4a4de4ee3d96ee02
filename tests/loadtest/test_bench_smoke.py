"""`python -m loadtest.bench --tier smoke` runs every system and writes a
complete result.  No assertion on speed: only that everything ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SYSTEM_KEYS = {
    "server_cpu_s",
    "deliveries",
    "cpu_s_per_M_deliveries",
    "p50_ms",
    "p99_ms",
    "etcd_cpu_s_per_k_updates",
    "rss_kib",
    "rss_kib_per_conn",
}


def test_smoke_tier_produces_complete_results(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "--tier", "smoke", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "smoke.json").read_text())
    assert {"tier", "agents", "keys", "updates_per_s", "duration_s"} <= r.keys()
    assert r["tier"] == "smoke"
    for system in ("typha", "typha_few", "grpc_proxy", "direct"):
        assert r[system].keys() >= SYSTEM_KEYS, system
        # Every agent got every update: the run really happened.
        assert r[system]["deliveries"] == r[system]["expected_deliveries"], system
        assert r[system]["p99_ms"] > 0
    assert r["raw_ceiling"]["cpu_s_per_M_deliveries"] > 0
    assert {"agents", "keys", "all_in_sync_s", "snapshots_encoded", "peak_rss_kib"} <= r[
        "storm"
    ].keys()
    assert r["storm"]["snapshots_encoded"] >= 1
    assert {"bytes_resume_per_agent", "bytes_snapshot_per_agent"} <= r["resume"].keys()
    assert r["resume"]["resumes_on_second_replica"] == r["agents"], (
        r["resume"],
        proc.stderr[-3000:],
    )
    assert len(r["budgets"]) == 7
    assert r["typha_few"]["expected_deliveries"] < r["typha"]["expected_deliveries"]
    assert r["budgets"]["etcd_cpu_many_vs_few_agents"]["value"] is not None
    for plot in r["plots"]:
        assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cost_of_applied_reports_is_measured_against_plain_typha(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.bench",
            "--tier",
            "smoke",
            "--systems",
            "typha,typha_applied",
            "--name",
            "smoke-applied",
            "--out-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "smoke-applied.json").read_text())
    with_reports = r["typha_applied"]
    assert with_reports["deliveries"] == with_reports["expected_deliveries"]
    cost = r["applied_cost"]
    # Every agent reported during the churn, and never more often than the
    # server's interval (0.25 s for 50 agents) allows: at most one frame per
    # agent per interval, plus the first.
    assert cost["reports"] >= r["agents"]
    assert cost["reports"] <= r["agents"] * (with_reports["window_s"] / 0.25 + 1)
    assert r["typha"]["applied_reports"] == 0  # plain thin agents never report
    assert cost["server_cpu_us_per_report"] is not None
    assert cost["bytes_per_agent_per_s"] > 0
