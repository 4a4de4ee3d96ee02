"""The layout shows the architecture: the import contracts hold and no package
dominates the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "snapshot",
    "syncproto",
    "runtime",
    "calico_model",
    "dataplane",
    "syncclient",
    "typha",
    "felix_client",
    "commands",
    "loadtest",
]


def lines_of(package: str) -> int:
    return sum(len(p.read_text().splitlines()) for p in (ROOT / package).rglob("*.py"))


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout


def test_no_package_holds_more_than_30_percent_of_the_code() -> None:
    sizes = {p: lines_of(p) for p in PACKAGES}
    total = sum(sizes.values())
    shares = {p: n / total for p, n in sizes.items()}
    assert max(shares.values()) <= 0.30, shares


def test_every_source_folder_is_a_listed_package() -> None:
    # A new top-level package must join the contracts above.
    found = {
        p.parent.name
        for p in ROOT.glob("*/__init__.py")
        if p.parent.name not in {"tests"} and not p.parent.name.startswith(".")
    }
    assert found == set(PACKAGES)


def test_the_image_and_the_wheel_carry_every_package() -> None:
    # The image installs the project's wheel (tools/build-image builds it),
    # so the wheel's package list is the image's.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--find-links /tmp/wheels -c /usr/share/typha-py/constraints.txt typha-py" in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text()
    for package in PACKAGES:
        assert f'"{package}*"' in pyproject, package
