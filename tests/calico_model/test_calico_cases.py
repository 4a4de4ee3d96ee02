"""Calico's own validator examples, judged by our validation.

The cases are transcribed from the table of Calico's validator tests by
`tools/calico-cases/gather.py` (see its docstring for the command): each is a
whole resource as the datastore would hold it and the verdict Calico gives.
Every value Calico accepts must be accepted here; of the values it refuses,
only those listed in KNOWN_GAPS, each with the reason, may be accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from calico_model.errors import InvalidValue
from calico_model.validation import validate

DATA = Path(__file__).parent / "data" / "calico_validator_cases.json"

# Upstream-invalid cases accepted here, by the line of Calico's test file:
# why each is accepted.  Empty: every upstream-invalid case is refused.
KNOWN_GAPS: dict[int, str] = {}

# Calico's figure for this release is "at most 5% of the invalid values
# accepted"; the table must also stay big enough to mean something.
MAX_ACCEPTED_INVALID_SHARE = 0.05
MIN_CASES_EACH_WAY = 200


def _expand(v: Any) -> Any:
    """Undo gather.py's compaction of long runs of one character."""
    if isinstance(v, dict):
        if set(v) == {"$repeat", "count"}:
            return v["$repeat"] * v["count"]
        return {k: _expand(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_expand(x) for x in v]
    return v


def _cases() -> list[dict[str, Any]]:
    data = json.loads(DATA.read_text())
    return [{**c, "value": _expand(c["value"])} for c in data["cases"]]


CASES = _cases()


def _accepted(case: dict[str, Any]) -> bool:
    try:
        validate(case["key"], orjson.dumps(case["value"]))
    except InvalidValue:
        return False
    return True


def test_the_table_has_both_verdicts_in_number() -> None:
    valid = sum(c["valid"] for c in CASES)
    assert valid >= MIN_CASES_EACH_WAY
    assert len(CASES) - valid >= MIN_CASES_EACH_WAY
    assert len({c["value"]["kind"] for c in CASES}) >= 9


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c["valid"]],
    ids=lambda c: f"line{c['line']}",
)
def test_what_calico_accepts_is_accepted(case: dict[str, Any]) -> None:
    assert _accepted(case), case["description"]


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if not c["valid"] and c["line"] not in KNOWN_GAPS],
    ids=lambda c: f"line{c['line']}",
)
def test_what_calico_refuses_is_refused(case: dict[str, Any]) -> None:
    assert not _accepted(case), case["description"]


def test_known_gaps_are_still_gaps_and_few() -> None:
    invalid = [c for c in CASES if not c["valid"]]
    accepted = {c["line"] for c in invalid if _accepted(c)}
    # A gap that closed must leave the list, so the list stays the truth.
    assert accepted == set(KNOWN_GAPS)
    assert len(accepted) <= MAX_ACCEPTED_INVALID_SHARE * len(invalid)
