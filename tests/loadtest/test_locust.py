"""A small headless Locust run (agent users + churn) completes and writes its
report.  The 500-user run is the same command with --users 500 (README)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_headless_locust_run_produces_a_report(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.locust_run",
            "--users",
            "20",
            "--spawn-rate",
            "20",
            "--duration",
            "8",
            "--rate",
            "20",
            "--keys",
            "300",
            "--out-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    html = (tmp_path / "locust-20.html").read_text()
    assert "<html" in html.lower()
    with open(tmp_path / "locust-20_stats.csv") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    assert int(rows["snapshot"]["Request Count"]) == 20
    assert int(rows["snapshot"]["Failure Count"]) == 0
    assert int(rows["delta"]["Request Count"]) > 20  # writes timed at the agents
    assert int(rows["write"]["Request Count"]) > 20
