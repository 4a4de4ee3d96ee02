"""`felix-agent --typha H:P[,H:P...] --node NAME [--http-listen H:P] [--dataplane memory]`"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

import uvloop

from felix_client.addresses import parse_addresses
from felix_client.agent import run_agent
from felix_client.errors import ConfigError
from typha.errors import ConfigError as TyphaConfigError
from typha.tls import client_context


async def _main(ns: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host, port = parse_addresses(ns.http_listen)[0]
    ssl_context = None
    if ns.tls_ca_file:
        ssl_context = client_context(ns.tls_ca_file, ns.tls_cert_file, ns.tls_key_file)
    await run_agent(
        ns.typha,
        ns.node,
        host,
        port,
        ns.dataplane,
        stop,
        ssl_context=ssl_context,
        server_name=ns.tls_server_name or None,
        upstream_stale_after=ns.upstream_stale_after,
        max_snapshot_bytes=ns.max_snapshot_bytes,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="felix-agent", description="node agent fed by typha")
    p.add_argument("--typha", required=True, help="typha addresses H:P[,H:P...]")
    p.add_argument("--node", required=True, help="this node's name")
    p.add_argument("--http-listen", default="127.0.0.1:9099", help="status port H:P")
    p.add_argument("--dataplane", default="memory", choices=["memory"], help="dataplane driver")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--tls-ca-file", default="", help="CA that signs typha's certificate (PEM)")
    p.add_argument("--tls-cert-file", default="", help="this agent's certificate (PEM)")
    p.add_argument("--tls-key-file", default="", help="this agent's private key (PEM)")
    p.add_argument("--tls-server-name", default="", help="name to verify typha's certificate by")
    p.add_argument(
        "--upstream-stale-after",
        type=float,
        default=10.0,
        help="seconds a replica may report the datastore lost before the agent moves away",
    )
    p.add_argument(
        "--max-snapshot-bytes",
        type=int,
        default=1 << 30,
        help="largest snapshot accepted (keys + values); a larger one is refused",
    )
    ns = p.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, ns.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        parse_addresses(ns.typha)
        return uvloop.run(_main(ns))
    except (ConfigError, TyphaConfigError) as exc:
        print(f"felix-agent: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
