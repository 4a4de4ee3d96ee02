"""Write to etcd from inside a test namespace (`ip netns exec NS python -m
tests.etcd_write ENDPOINT < state.json`): one JSON object {key: value or
null}, written in one transaction (null deletes).  A process of its own,
because gRPC's threads stay in the namespace they were started in."""

from __future__ import annotations

import asyncio
import sys

import orjson

from tests.cluster import put_items


def main() -> int:
    """Write stdin's object to the etcd at argv[1]; prints the revision."""
    items = orjson.loads(sys.stdin.buffer.read())
    values = [(k, None if v is None else orjson.dumps(v)) for k, v in items.items()]
    print(asyncio.run(put_items(sys.argv[1], values)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
