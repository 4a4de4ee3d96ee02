"""`typha check-values`: the server's validation as a command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from commands.demo.cluster import seed_cluster

V3 = "/calico/resources/v3/projectcalico.org"


def run(lines: list[bytes], *args: str) -> list[dict[str, object]]:
    typha = Path(sys.executable).with_name("typha")
    done = subprocess.run(
        [str(typha), "check-values", *args],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        check=True,
        timeout=60,
    )
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def test_each_line_gets_a_verdict_from_the_servers_validation() -> None:
    key, value = next(iter(seed_cluster(1, 1)))
    bad_kind = dict(value, kind="Nonsense")
    lines = [
        orjson.dumps({"key": key, "value": value}),
        orjson.dumps({"key": key, "value": bad_kind}),
        orjson.dumps({"key": f"{V3}/ippools/p", "value": [1, 2]}),
        b"not json",
        orjson.dumps({"value": {}}),
    ]
    out = run(lines)
    assert out[1]["reason"] == "kind_mismatch: kind: key says IPPool, value says 'Nonsense'"
    assert str(out[2]["reason"]).startswith("not_object: ")
    out[1]["reason"] = out[2]["reason"] = "-"
    assert out == [
        {"key": key, "valid": True, "reason": ""},
        {"key": key, "valid": False, "reason": "-"},
        {"key": f"{V3}/ippools/p", "valid": False, "reason": "-"},
        {"key": "", "valid": False, "reason": "bad_input"},
        {"key": "", "valid": False, "reason": "bad_input"},
    ]


def test_the_prefix_decides_which_keys_are_resources() -> None:
    key, value = next(iter(seed_cluster(1, 1)))
    moved = "/other/" + key.removeprefix("/calico/")
    bad = dict(value, kind="Nonsense")
    line = orjson.dumps({"key": moved, "value": bad})
    # Under /calico/ the key is not a resource key: only JSON-object checks apply.
    assert run([line])[0]["valid"] is True
    verdict = run([line], "--prefix", "/other/")[0]
    assert verdict["valid"] is False
    assert str(verdict["reason"]).startswith("kind_mismatch: kind: ")
