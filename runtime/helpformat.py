"""The `--help` format both the server's and the agent's commands use."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each flag's default (after the environment), except empty
    ones and those whose `dest` is in `secret_dests` (values that may come
    from the environment and must not be printed).  Help texts must not
    contain a bare `%`."""

    secret_dests: frozenset[str] = frozenset({"etcd_password"})

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.dest in self.secret_dests or action.default in ("", None):
            return action.help
        return super()._get_help_string(action)
