"""Flags declared once: a configuration dataclass's field says its default,
help text, type, bounds and how its text is read, and that one declaration
gives the command-line flag `--field-name`, its environment variable
(`<PREFIX>FIELD_NAME`, see `runtime.envconfig`), its help line and its
checked value.  Both daemons' configurations are such dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import ConfigError


@dataclass(frozen=True, slots=True)
class FlagSpec:
    """How one field is a flag.  `text` is the default as a user would write
    it (None: from the field's default); `minimum` and `maximum` bound a
    number; `parse`
    reads the text of a field that is neither a number nor a string (raising
    ConfigError); `required` flags have no default; `choices` limit the text."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    text: str | None = None
    parse: Callable[[str], Any] | None = None
    required: bool = False
    choices: tuple[str, ...] | None = None


def flag(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field that is also a flag (see FlagSpec for `spec`)."""
    return field(default=default, metadata={"flag": FlagSpec(help, **spec)})


@dataclass(frozen=True, slots=True)
class Flag:
    """One declared flag: its name (`--name`), field, type and spec."""

    name: str
    attr: str
    type: Any
    default: Any
    spec: FlagSpec


def declared(cls: type) -> Iterator[Flag]:
    """The flags `cls` (a dataclass) declares, in field order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("flag")
        if isinstance(spec, FlagSpec):
            yield Flag(f.name.replace("_", "-"), f.name, hints[f.name], f.default, spec)


def default_text(fl: Flag) -> str | None:
    """The flag's default as command-line text (None: required)."""
    if fl.spec.required:
        return None
    if fl.spec.text is not None:
        return fl.spec.text
    value = fl.default
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    default_of: Callable[[str, str | None], str | None],
    help_of: Callable[[str, str], str],
) -> None:
    """Add `cls`'s flags to `parser`; `default_of(name, text)` picks the
    default (from the environment, else `text`), `help_of(name, help)` the
    help line."""
    for fl in declared(cls):
        kw: dict[str, Any] = {}
        if fl.spec.choices is not None:
            kw["choices"] = list(fl.spec.choices)
        parser.add_argument(
            f"--{fl.name}",
            default=default_of(fl.name, default_text(fl)),
            help=help_of(fl.name, fl.spec.help),
            **kw,
        )


def number(
    raw: str,
    name: str,
    typ: type[int] | type[float],
    bounds: tuple[float | None, float | None],
    error: type[Exception] = ConfigError,
) -> float:
    """`raw` as `typ` within `bounds` (minimum, maximum; None: unbounded);
    raises `error` naming `--name`."""
    try:
        value = typ(raw)
    except (TypeError, ValueError):
        raise error(f"--{name}: {raw!r} is not a number") from None
    minimum, maximum = bounds
    if value != value or (minimum is not None and value < minimum):  # NaN too
        raise error(f"--{name}: must be at least {minimum if minimum is not None else 0:g}")
    if maximum is not None and value > maximum:
        raise error(f"--{name}: must be at most {maximum:g}")
    return value


def read_flags(
    ns: argparse.Namespace, cls: type, error: type[Exception] = ConfigError
) -> dict[str, Any]:
    """Every declared flag's value from parsed arguments, read and checked
    by its declaration; raises `error` (the daemon's ConfigError) naming the
    flag."""
    out: dict[str, Any] = {}
    for fl in declared(cls):
        raw = getattr(ns, fl.attr)
        if fl.spec.parse is not None:
            out[fl.attr] = fl.spec.parse(raw) if raw is not None else fl.default
        elif fl.type is int or fl.type is float:
            bounds = (fl.spec.minimum, fl.spec.maximum)
            value = number(raw, fl.name, fl.type, bounds, error)
            out[fl.attr] = int(value) if fl.type is int else value
        elif fl.type is str:
            out[fl.attr] = raw if raw is not None else ""
        else:  # pragma: no cover - a declaration without a way to read it
            raise TypeError(f"--{fl.name}: {fl.type} needs a parse function")
    return out
