"""Flags declared once on a dataclass: the flag, its variable's default,
its help and its checked value all come from the one declaration."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from runtime import flags
from runtime.errors import ConfigError
from runtime.flags import flag


def _pair(text: str) -> tuple[str, str]:
    a, _, b = text.partition("=")
    if not b:
        raise ConfigError(f"--pair: {text!r} is not a=b")
    return a, b


@dataclass(frozen=True)
class Sample:
    page_size: int = flag(100, "keys per page", minimum=1, maximum=1000)
    window: float = flag(0.5, "seconds to wait", minimum=0.0)
    name: str = flag("", "a name")
    pair: tuple[str, str] = flag(("a", "b"), "a pair", text="a=b", parse=_pair)
    not_a_flag: int = 7


def parse(argv: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser()
    env = env or {}
    flags.add_flags(
        p,
        Sample,
        lambda name, text: env.get("X_" + name.upper().replace("-", "_"), text),
        lambda name, help_: help_,
    )
    return flags.read_flags(p.parse_args(argv), Sample)


def test_each_declared_field_is_a_flag_with_its_default() -> None:
    assert [f.name for f in flags.declared(Sample)] == ["page-size", "window", "name", "pair"]
    assert parse([]) == {"page_size": 100, "window": 0.5, "name": "", "pair": ("a", "b")}
    assert Sample(**parse(["--page-size", "7", "--pair", "x=y"])) == Sample(  # type: ignore[arg-type]
        page_size=7, pair=("x", "y")
    )


def test_the_environment_sets_the_default_and_the_flag_wins() -> None:
    assert parse([], {"X_WINDOW": "2"})["window"] == 2.0
    assert parse(["--window", "3"], {"X_WINDOW": "2"})["window"] == 3.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--page-size", "0"], "--page-size: must be at least 1"),
        (["--page-size", "1001"], "--page-size: must be at most 1000"),
        (["--page-size", "ten"], "--page-size: 'ten' is not a number"),
        (["--window", "-1"], "--window: must be at least 0"),
        (["--window", "nan"], "--window: must be at least 0"),
        (["--page-size", "1e3"], "--page-size: '1e3' is not a number"),
        (["--pair", "nope"], "--pair: 'nope' is not a=b"),
    ],
)
def test_a_bad_value_names_its_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(argv)
