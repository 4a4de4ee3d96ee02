"""`felix-agent compute`: a state file in, the node's tables out."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from commands.demo.cluster import seed_cluster
from commands.felix_agent import main
from felix_client.calc import compute


def test_compute_prints_the_tables_the_agent_would_program(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = {"/x/" + k.removeprefix("/calico/"): v for k, v in seed_cluster(4, 3)}
    path = tmp_path / "state.json"
    path.write_bytes(orjson.dumps(state))
    assert main(["compute", "--node", "node-1", "--prefix", "/x/", str(path)]) == 0
    out = orjson.loads(capsys.readouterr().out)
    expected = compute(state, "node-1", prefix="/x/")
    assert len(out["routes"]) == len(expected.routes) > 4
    assert {k: set(v) for k, v in out["ipsets"].items()} == {
        sid.name: members for sid, members in expected.ipsets.items()
    }
    assert {name: d["selector"] for name, d in out["ipset_defs"].items()} == {
        sid.name: sid.selector for sid in expected.ipsets
    }
    assert out["chains"] == {
        str(ck): [r.to_dict() for r in rules] for ck, rules in expected.chains.items()
    }
    assert out["endpoints"] == {k: i.to_dict() for k, i in expected.endpoints.items()}
    assert {e["kind"] for e in out["endpoints"].values()} == {
        "workload"
    }  # node-1: no host endpoint
    # Every rule names its action; named-port sets list ip,proto:port members.
    assert all("action" in r for rules in out["chains"].values() for r in rules)
    named = [m for n, ms in out["ipsets"].items() if n.startswith("cali40n:") for m in ms]
    assert named
    assert all(",tcp:" in m for m in named)


def test_compute_refuses_input_that_is_not_one_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.json"
    path.write_text("[1, 2]")
    assert main(["compute", "--node", "n", str(path)]) == 2
    assert "one JSON object" in capsys.readouterr().err
