"""The `typha` command: `typha serve`, `typha demo`, `typha status`, `typha wait-applied`
and `typha check-values`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

import orjson
import uvloop

from calico_model.errors import InvalidValue
from calico_model.validation import validate
from commands.limits import raise_open_files
from commands.replicas import DEFAULT_ENDPOINTS, ENDPOINTS_HELP
from commands.status import collect, render
from commands.version import package_version
from commands.wait_applied import wait_applied
from runtime.errors import ConfigError as RuntimeConfigError
from runtime.helpformat import DefaultsHelpFormatter
from runtime.logformat import configure_logging
from typha.app import TyphaApp
from typha.config import (
    ServeConfig,
    add_serve_arguments,
    serve_config,
    unknown_variables,
)
from typha.errors import ConfigError, DatastoreError

log = logging.getLogger("typha")


async def serve(config: ServeConfig) -> int:
    """Run `typha serve` until SIGTERM or SIGINT; returns the exit status."""
    # One descriptor per agent, plus etcd, the side port and a margin: the
    # usual soft limit of 1,024 would cap a replica far below its sizing.
    raise_open_files(config.max_connections + 256)
    app = TyphaApp(config, version=package_version())
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


def check_values(path: str, prefix: str) -> int:
    """`typha check-values`: JSON lines `{"key": K, "value": V}` in, one line
    `{"key": K, "valid": bool, "reason": str}` out per input line, judged by
    the server's own validation.  A reason is `<label>: <field>: <problem>`,
    the label being the one `typha_invalid_values` counts.  A line that is not such an object is
    reported invalid with reason `bad_input`.  Returns 0."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    out = sys.stdout.buffer
    with stream:
        for line in stream:
            if not line.strip():
                continue
            out.write(orjson.dumps(_check_line(line, prefix)) + b"\n")
    out.flush()
    return 0


def _check_line(line: bytes, prefix: str) -> dict[str, object]:
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {"key": "", "valid": False, "reason": "bad_input"}
    if not isinstance(item, dict) or not isinstance(item.get("key"), str) or "value" not in item:
        key = item.get("key") if isinstance(item, dict) else ""
        return {"key": key if isinstance(key, str) else "", "valid": False, "reason": "bad_input"}
    key = item["key"]
    try:
        validate(key, orjson.dumps(item["value"]), prefix)
    except InvalidValue as exc:
        return {"key": key, "valid": False, "reason": str(exc)}
    except orjson.JSONEncodeError:
        return {"key": key, "valid": False, "reason": "bad_input"}
    return {"key": key, "valid": True, "reason": ""}


def show_status(endpoints: str, output: str) -> int:
    """`typha status`: print the view; 0 when it lists no problem, else 1."""
    view = uvloop.run(collect(endpoints))
    if output == "json":
        print(orjson.dumps(view.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(render(view))
    return 1 if view.problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `typha` command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="typha", description=__doc__)
    parser.add_argument("--version", action="version", version=f"typha {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = DefaultsHelpFormatter
    p_serve = sub.add_parser("serve", help="serve agents from etcd", formatter_class=fmt)
    add_serve_arguments(p_serve, os.environ)
    p_demo = sub.add_parser(
        "demo", help="embedded etcd + server + agents + churn, live", formatter_class=fmt
    )
    p_check = sub.add_parser(
        "check-values", help="validate JSON lines {key, value} as served", formatter_class=fmt
    )
    p_check.add_argument("file", nargs="?", default="-", help="JSON lines (- = stdin)")
    p_check.add_argument("--prefix", default="/calico/", help="the served key prefix")
    p_wait = sub.add_parser(
        "wait-applied",
        help="wait until every connected agent's dataplane applied a revision",
        formatter_class=fmt,
    )
    p_wait.add_argument("--revision", type=int, required=True, help="etcd revision to wait for")
    p_wait.add_argument("--timeout", type=float, default=60.0, help="seconds before giving up")
    p_status = sub.add_parser(
        "status",
        help="every replica, its agents and their convergence, from the side ports",
        formatter_class=fmt,
    )
    p_status.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="output format"
    )
    for p in (p_wait, p_status):
        p.add_argument(
            "--endpoints",
            default=os.environ.get("TYPHA_ENDPOINTS", DEFAULT_ENDPOINTS),
            help=ENDPOINTS_HELP,
        )
    # Imported here: `typha serve` need not load the demo (and with it the agent).
    from commands.demo.run import add_demo_arguments

    add_demo_arguments(p_demo)
    ns = parser.parse_args(argv)
    if ns.command == "check-values":
        return check_values(ns.file, ns.prefix)
    try:
        if ns.command == "wait-applied":
            if ns.revision < 0 or ns.timeout < 0:
                raise ConfigError("--revision and --timeout must not be negative")
            return uvloop.run(wait_applied(ns.revision, ns.endpoints, ns.timeout))
        if ns.command == "status":
            return show_status(ns.endpoints, ns.output)
        if ns.command == "serve":
            config = serve_config(ns)
            configure_logging(config.log_level, config.log_format)
            for name in unknown_variables(os.environ, p_serve):
                log.warning("%s is set but names no typha setting; ignoring it", name)
            return uvloop.run(serve(config))
        configure_logging(ns.log_level)
        if ns.dataplane == "linux":
            from commands.demo.linux_run import run_linux_demo

            ns.nodes = 3 if ns.nodes is None else ns.nodes
            ns.pods_per_node = 2 if ns.pods_per_node is None else ns.pods_per_node
            return uvloop.run(run_linux_demo(ns))
        from commands.demo.run import run_demo

        ns.nodes = 50 if ns.nodes is None else ns.nodes
        ns.pods_per_node = 10 if ns.pods_per_node is None else ns.pods_per_node
        return uvloop.run(run_demo(ns))
    except (ConfigError, RuntimeConfigError) as exc:  # the latter: TLS files unusable
        print(f"typha: {exc}", file=sys.stderr)
        return 2
    except DatastoreError as exc:  # the demo's embedded etcd could not start
        print(f"typha: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
