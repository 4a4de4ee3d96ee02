"""The `typha` command: `typha serve` and `typha demo`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

import uvloop

from typha.app import TyphaApp
from typha.config import ServeConfig, add_serve_arguments, serve_config
from typha.errors import ConfigError

log = logging.getLogger("typha")


def setup_logging(level: str) -> None:
    """Log to stderr at `level`, with time stamps."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def serve(config: ServeConfig) -> int:
    """Run `typha serve` until SIGTERM or SIGINT; returns the exit status."""
    app = TyphaApp(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    await stop.wait()
    log.info("signal received; draining over %.1fs", config.shutdown_timeout)
    await app.drain()
    await app.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `typha` command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="typha", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="serve agents from etcd")
    add_serve_arguments(p_serve, os.environ)
    p_demo = sub.add_parser("demo", help="embedded etcd + server + agents + churn, live")
    from commands.demo.run import add_demo_arguments

    add_demo_arguments(p_demo)
    ns = parser.parse_args(argv)
    try:
        if ns.command == "serve":
            config = serve_config(ns)
            setup_logging(config.log_level)
            return uvloop.run(serve(config))
        from commands.demo.run import run_demo

        setup_logging(ns.log_level)
        return uvloop.run(run_demo(ns))
    except ConfigError as exc:
        print(f"typha: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
