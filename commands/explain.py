"""`felix-agent explain`: which policy rule decides a packet on this node.

    felix-agent explain FROM TO [--protocol tcp] [--port N] [--icmp-type T]
                        [--icmp-code C] [--kernel] [-o text|json] [--agent H:P]
    felix-agent explain FROM TO ... --state FILE --node NAME [--prefix /calico/]

FROM and TO are addresses or workload endpoints (`<namespace>/<pod>`).  The
first form asks the node's running agent (its status port, `--agent`,
default FELIX_HTTP_LISTEN or 127.0.0.1:9099), which answers from the tables
it computed, or with `--kernel` from the ruleset the kernel holds.  The
second computes the node's tables from a state file (`{key: value}`, as
`felix-agent compute` reads) and answers from them, no agent needed.
Exit status: 0 explained, 2 a query that cannot be answered (or a state
file that cannot be read), 3 no agent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import orjson

from commands.state_file import read_state
from dataplane.memory import MemoryDataplane
from dataplane.trace import TraceError
from felix_client.calc import Calculator
from felix_client.config import normalise_prefix
from felix_client.explain import Query, explain
from runtime.errors import ConfigError

DEFAULT_AGENT = "127.0.0.1:9099"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="felix-agent explain",
        description="The path a packet takes through this node's policy: each tier and"
        " policy consulted, the rule that decided, the verdict.",
    )
    p.add_argument("src", metavar="FROM", help="source address or <namespace>/<pod>")
    p.add_argument("dst", metavar="TO", help="destination address or <namespace>/<pod>")
    p.add_argument("--protocol", default="tcp", help="tcp, udp, sctp, icmp, icmpv6 or 0-255")
    p.add_argument("--port", type=int, help="destination port")
    p.add_argument("--icmp-type", type=int, help="ICMP type (default: echo request)")
    p.add_argument("--icmp-code", type=int, help="ICMP code")
    p.add_argument(
        "--kernel", action="store_true", help="from the kernel's live ruleset (linux dataplane)"
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument(
        "--agent",
        default=os.environ.get("FELIX_HTTP_LISTEN") or DEFAULT_AGENT,
        help="the agent's status port H:P [env FELIX_HTTP_LISTEN]",
    )
    p.add_argument("--state", help="compute the tables from this state file instead (- = stdin)")
    p.add_argument("--node", help="with --state: the node to compute for")
    p.add_argument("--prefix", default="/calico/", help="with --state: the keys' prefix")
    return p


def _ask_agent(agent: str, q: Query) -> dict[str, Any]:
    """The agent's answer.  Raises TraceError (it refused the query) or
    OSError (no agent there)."""
    url = f"http://{agent}/explain?" + urllib.parse.urlencode(q.params())
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 429):  # a query it cannot answer; busy
            raise TraceError(json.loads(exc.read()).get("error", "refused")) from None
        raise OSError(f"the agent answered {exc.code}") from None
    out: dict[str, Any] = orjson.loads(body)
    return out


def _from_state(ns: argparse.Namespace, q: Query) -> dict[str, Any]:
    """Explained over tables computed from a state file.  Raises
    TraceError or ConfigError."""
    if not ns.node:
        raise ConfigError("--state needs --node")
    if q.kernel:
        raise ConfigError("--kernel asks a running agent; it does not go with --state")
    state = read_state(ns.state)
    calc = Calculator(ns.node, prefix=normalise_prefix(ns.prefix))
    dp = MemoryDataplane()
    dp.apply(calc.apply(list(state.items())))
    ex = explain(q, ns.node, calc.policy.endpoints.eps, dp)
    return {**ex.to_dict(), "text": ex.text()}


def explain_command(argv: Sequence[str]) -> int:
    """`felix-agent explain`; returns the exit status."""
    ns = _parser().parse_args(argv)
    q = Query(ns.src, ns.dst, ns.protocol, ns.port, ns.icmp_type, ns.icmp_code, kernel=ns.kernel)
    try:
        answer = _from_state(ns, q) if ns.state else _ask_agent(ns.agent, q)
    except (TraceError, ConfigError) as exc:
        print(f"felix-agent explain: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = ns.state or ns.agent
        print(f"felix-agent explain: {where}: {exc}", file=sys.stderr)
        return 3
    text = answer.pop("text", "")
    if ns.output == "json":
        sys.stdout.buffer.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(text)
    return 0
