"""The installed package's version, as both commands print it (`--version`).

pyproject.toml is the one place the version is written; the Helm chart's
`appVersion` and image tag are kept equal to it by a test.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "typha-py"


def package_version() -> str:
    """The version of the installed distribution (`0+unknown` when running
    from a tree that was never installed)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
