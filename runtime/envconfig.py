"""Settings from the environment, shared by `typha serve` and `felix-agent`:
every flag `--foo-bar` is also `<PREFIX>FOO_BAR`, Calico's own names for a
setting that means the same are read when ours is not set, and a variable
with our prefix that names nothing is reported rather than silently ignored.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping


def env_name(prefix: str, flag: str) -> str:
    """The variable that stands in for `--flag` (`prefix` such as `TYPHA_`)."""
    return prefix + flag.upper().replace("-", "_")


def env_default(
    env: Mapping[str, str], prefix: str, flag: str, calico: str | None, default: str | None
) -> str | None:
    """`--flag`'s default from the environment: our name, else Calico's
    spelling `calico` (if any), else `default`."""
    fallback = env.get(calico, default) if calico else default
    return env.get(env_name(prefix, flag), fallback)


def unknown_variables(
    env: Mapping[str, str], prefix: str, parser: argparse.ArgumentParser, known: Iterable[str]
) -> list[str]:
    """The `prefix` variables that name none of `parser`'s flags nor any of
    `known` (Calico's spellings, other commands' variables), sorted."""
    names = {env_name(prefix, a.dest.replace("_", "-")) for a in parser._actions}
    names |= set(known)
    return sorted(k for k in env if k.startswith(prefix) and k not in names)
