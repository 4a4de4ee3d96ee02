"""The asyncio adapters stay thin: every class in a module of the fan-out,
the datastore input or the client library that imports asyncio is at most
200 lines.  Decisions belong in the sans-I/O cores beside them (the fan-out
core, the watch fold, the client session), where tests drive them with
explicit times; an adapter that grows is taking decisions back.  (The
process wiring, `typha/app.py` and `felix_client/agent.py`, composes
adapters and is not one.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ADAPTER_PACKAGES = ("typha/fanout", "typha/datastore", "syncclient")
LIMIT = 200


def adapter_modules() -> list[Path]:
    return sorted(
        path
        for package in ADAPTER_PACKAGES
        for path in (ROOT / package).glob("*.py")
        if "import asyncio" in path.read_text()
    )


def test_the_known_adapters_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in adapter_modules()}
    assert {
        "typha/fanout/server.py",
        "typha/datastore/syncer.py",
        "syncclient/client.py",
        "syncclient/connector.py",
    } <= names


@pytest.mark.parametrize("path", adapter_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_adapter_class_is_over_the_limit(path: Path) -> None:
    tree = ast.parse(path.read_text())
    too_long = {
        node.name: lines
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and (lines := (node.end_lineno or node.lineno) - node.lineno + 1) > LIMIT
    }
    assert not too_long, f"classes over {LIMIT} lines: {too_long}"
