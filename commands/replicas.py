"""Finding typha replicas by their HTTP side ports and asking them: shared by
`typha wait-applied` and `typha status`."""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import orjson

from runtime.hostport import BadAddress, parse_hostports
from syncclient.addresses import resolve_all
from typha.errors import ConfigError

DEFAULT_ENDPOINTS = "127.0.0.1:9098"
ENDPOINTS_HELP = (
    "the replicas' HTTP side ports, H:P[,H:P...]; each name is resolved to all of its "
    "addresses (give the headless Service) [env TYPHA_ENDPOINTS]"
)


def parse_endpoints(text: str) -> list[tuple[str, int]]:
    """`--endpoints`: H:P[,H:P...]; raises ConfigError naming a bad item."""
    try:
        return [(a.host, a.port) for a in parse_hostports(text)]
    except BadAddress as exc:
        raise ConfigError(f"--endpoints: {exc}") from None


async def resolve(endpoints: list[tuple[str, int]]) -> list[str]:
    """Every address of every endpoint (as the agents find replicas), as URL
    authorities.  A name that does not resolve stays as given, so that asking
    it fails and it is reported as not answering."""
    found: list[str] = []
    for host, port in endpoints:
        try:
            ips = await resolve_all(host, port, random.Random(0))
        except OSError:
            found.append(f"{host}:{port}")
            continue
        for ip in sorted(ips):
            where = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            if where not in found:
                found.append(where)
    return found


async def get_json(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> dict[str, Any] | None:
    """One request's JSON object, or None for any failure (a refused
    connection, a timeout of 5 s, a status other than 200, not an object)."""
    try:
        data = None if body is None else orjson.dumps(body)
        timeout = aiohttp.ClientTimeout(total=5)
        async with session.request(method, url, data=data, timeout=timeout) as resp:
            if resp.status != 200:
                return None
            answer = orjson.loads(await resp.read())
            return answer if isinstance(answer, dict) else None
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
        return None
