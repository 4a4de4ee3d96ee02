"""The kernel benchmarks run at a tiny size and produce complete results
(root only: each makes and removes its own network namespace)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.netns import ROOT, require_kernel

pytestmark = pytest.mark.integration


def _run(tmp_path: Path, module: str, *args: str) -> Any:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_dataplane_bench_programs_restarts_without_writes_and_updates(tmp_path: Path) -> None:
    require_kernel()
    r = _run(
        tmp_path,
        "loadtest.dataplane_bench",
        "--small",
        "300",
        "--large",
        "600",
        "--updates",
        "30",
    )
    for size in ("small", "large"):
        assert r[size]["routes"] > 0
        assert r[size]["kernel_changes"] > 0
        assert r[size]["restart_kernel_changes"] == 0
        assert r[size]["kernel_errors"] == 0
        assert r[size]["update_p99_ms"] >= r[size]["update_p50_ms"] > 0


def test_kernel_latency_measures_every_write_and_finds_the_new_routes(tmp_path: Path) -> None:
    require_kernel()
    args = ("--keys", "300", "--rates", "20", "--seconds", "2")
    r = _run(tmp_path, "loadtest.kernel_latency", *args)
    (run,) = r["runs"]
    assert run["writes"] >= 30
    assert run["kernel_errors"] == 0
    assert run["p99_ms"] >= run["p50_ms"] > 0
    assert r["new_blocks_written"] >= 3
    assert r["new_block_routes_in_kernel"] == r["new_blocks_written"]


def test_nft_transport_compares_three_ways_of_applying_a_batch(tmp_path: Path) -> None:
    require_kernel()
    r = _run(tmp_path, "loadtest.nft_transport", "--batches", "10")
    for way in ("libnftables", "nft_interactive", "nft_process_per_batch"):
        assert r[way]["p99_ms"] >= r[way]["p50_ms"] > 0, way
