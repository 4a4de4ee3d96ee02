"""The chart's alerts under `promtool test rules`: every alert fires on the
series of the failure it names and stays quiet on its near misses
(tests/helm/alerts_test.yaml), as rendered by the real Helm SDK with the
default values.  Also: every alert waits (`for:`), links its runbook, and has
a firing and a quiet case."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parents[1] / "helm" / "typha"
OPERATIONS = HERE.parents[1] / "docs" / "operations.md"
PROMTOOL = shutil.which("promtool")


def rendered_rules() -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    values = {"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}}
    manifests = chart.render(values, name="typha", namespace="calico-system", is_install=True)
    for text in manifests.values():
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] == "PrometheusRule":
                return [r for g in doc["spec"]["groups"] for r in g["rules"]]
    raise AssertionError("no PrometheusRule rendered")


def unit_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
    return tests


def test_every_alert_waits_links_its_runbook_and_is_unit_tested_both_ways() -> None:
    rules = rendered_rules()
    docs = OPERATIONS.read_text()
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in unit_tests():
        for check in case["alert_rule_test"]:
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in rules}
    assert len(names) == len(rules)  # no name used twice
    for rule in rules:
        name = rule["alert"]
        assert rule.get("for"), f"{name} has no for:"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"
        assert f"### {name}" in docs, f"no runbook for {name}"
        assert 'namespace="calico-system"' in rule["expr"]
    assert names <= firing, f"no firing case for {names - firing}"
    assert names <= quiet, f"no quiet case for {names - quiet}"
    assert firing | quiet <= names  # the tests name no alert that is gone


def test_the_runbook_base_url_is_the_operators() -> None:
    chart = helm.Chart.load(CHART)
    base = "https://git.example.com/typha/blob/v0.1.0/docs/operations.md"
    values = {"prometheusRule": {"enabled": True, "runbookBaseUrl": base}}
    manifests = chart.render(values, name="typha", namespace="calico-system", is_install=True)
    docs = [d for t in manifests.values() for d in yaml.safe_load_all(t) if d]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    urls = {r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert f"{base}#typhadown" in urls
    assert all(u.startswith(base + "#") for u in urls)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (sh tools/test-deps installs it)")
def test_promtool_unit_tests_of_every_alert_pass(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "typha", "rules": rendered_rules()}]})
    )
    shutil.copy(HERE / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    res = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr
