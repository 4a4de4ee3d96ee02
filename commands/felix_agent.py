"""The `felix-agent` command.

    felix-agent --typha H:P[,H:P...] --node NAME [--http-listen H:P] [--prefix /calico/]
                [--dataplane memory|linux] [--dataplane-netns PATH] [--resync-interval S]
    felix-agent compute --node NAME [--prefix /calico/] [FILE]
    felix-agent explain FROM TO [--protocol P] [--port N] [--kernel] [-o text|json]

Every flag of the first form is also an env var FELIX_<FLAG>.  `compute` reads
a state (one JSON object `{key: value}`, stdin by default) and prints the
node's tables as JSON: `{"routes": [...], "ipsets": {...}, "chains": {...}}`.
`explain` says which policy rule decides a packet (commands.explain).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import orjson
import uvloop

from commands.explain import explain_command
from commands.state_file import read_state
from commands.version import package_version
from dataplane.errors import KernelUnavailable
from felix_client.agent import run_agent
from felix_client.calc import compute
from felix_client.config import (
    AgentConfig,
    agent_parser,
    normalise_prefix,
    parse_agent_args,
    unknown_variables,
)
from runtime.errors import ConfigError
from runtime.logformat import configure_logging
from runtime.tls import client_context

log = logging.getLogger("felix_agent")


async def _main(config: AgentConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ssl_context = None
    if config.tls_ca_file:
        ssl_context = client_context(config.tls_ca_file, config.tls_cert_file, config.tls_key_file)
    await run_agent(config, stop, ssl_context=ssl_context, version=package_version())
    return 0


def compute_tables(argv: Sequence[str]) -> int:
    """`felix-agent compute`: a whole state in, the node's tables out."""
    p = argparse.ArgumentParser(prog="felix-agent compute", description=compute_tables.__doc__)
    p.add_argument("--node", required=True, help="the node to compute for")
    p.add_argument("--prefix", default="/calico/", help="datastore prefix of the keys")
    p.add_argument("file", nargs="?", default="-", help="state as one JSON object (- = stdin)")
    ns = p.parse_args(argv)
    try:
        state = read_state(ns.file)
    except ConfigError as exc:
        print(f"felix-agent compute: {exc}", file=sys.stderr)
        return 2
    tables = compute(state, ns.node, prefix=normalise_prefix(ns.prefix))
    out: dict[str, Any] = {
        "routes": [str(tables.routes[dst]) for dst in sorted(tables.routes)],
        "ipsets": {sid.name: sorted(members) for sid, members in sorted(tables.ipsets.items())},
        "ipset_defs": {sid.name: sid.to_dict() for sid in sorted(tables.ipsets)},
        "endpoints": {key: info.to_dict() for key, info in sorted(tables.endpoints.items())},
        "chains": {
            str(ck): [rule.to_dict() for rule in rules]
            for ck, rules in sorted(tables.chains.items())
        },
    }
    sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `felix-agent`; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args:
        print(f"felix-agent {package_version()}")
        return 0
    try:
        if args[:1] == ["compute"]:
            return compute_tables(args[1:])
        if args[:1] == ["explain"]:
            return explain_command(args[1:])
        config = parse_agent_args(args, os.environ)
        configure_logging(config.log_level, config.log_format)
        for name in unknown_variables(os.environ, agent_parser(os.environ)):
            log.warning("%s is set but names no felix-agent setting; ignoring it", name)
        return uvloop.run(_main(config))
    except ConfigError as exc:
        print(f"felix-agent: {exc}", file=sys.stderr)
        return 2
    except KernelUnavailable as exc:
        print(f"felix-agent: the linux dataplane cannot start: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
