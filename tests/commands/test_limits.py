"""The open-file limit is raised for a server's connections, within the hard limit."""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator

import pytest

from commands.limits import raise_open_files


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"hard open-file limit {hard} is too low to test with")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_raised_to_what_is_wanted(low_soft_limit: int) -> None:
    assert raise_open_files(700) == 700
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 700
    assert raise_open_files(300) == 700  # never lowered


def test_past_the_hard_limit_it_stops_there_and_says_so(
    low_soft_limit: int, caplog: pytest.LogCaptureFixture
) -> None:
    if low_soft_limit == resource.RLIM_INFINITY:
        pytest.skip("no hard open-file limit to reach")
    with caplog.at_level(logging.WARNING, logger="typha"):
        assert raise_open_files(low_soft_limit + 1) == low_soft_limit
    assert "below the" in caplog.text
