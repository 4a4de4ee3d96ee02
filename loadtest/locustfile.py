"""Locust users: agents that follow typha, and a churn writer on etcd.

    locust -f loadtest/locustfile.py --headless -u 501 -r 100 -t 60s \\
        --html loadtest/results/locust.html
    (or: python -m loadtest.locust_run --users 500 --duration 60, which also
     starts etcd and typha)

Environment: TYPHA_ADDR (host:port of typha), ETCD_ENDPOINT (host:port of
etcd's client port), CHURN_RATE (writes per second, default 50).

`AgentUser` is a gevent socket adapter over the same sans-I/O protocol core
as the asyncio client: it connects, takes the snapshot and follows deltas.
It reports two request types to Locust's statistics:
  snapshot  connect to in sync (ms), response length = bytes received
  delta     etcd write to receipt (ms) for each write the churn user made,
            timed with the write times the churn user recorded in this process
`ChurnUser` (exactly one) writes DATA_MODEL-shaped objects through etcd's
JSON gateway at CHURN_RATE.  Run Locust as one process: write times are
shared in memory, so deltas are only timed for writes made in the same
process.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from typing import Any

import orjson
import requests
from locust import User, constant_throughput, task

from commands.demo.cluster import Churn
from runtime.hostport import parse_hostport
from syncproto import ClientConnection, Delta, SnapshotEnd
from syncproto.errors import ConnectionTimeout, ProtocolError

TYPHA = os.environ.get("TYPHA_ADDR", "127.0.0.1:5473")
ETCD = os.environ.get("ETCD_ENDPOINT", "127.0.0.1:2379")
RATE = float(os.environ.get("CHURN_RATE", "50"))

# etcd revision -> time.monotonic() when the churn user started the write.
WRITES: dict[int, float] = {}
_NODE_COUNTER = iter(range(10**9))


class AgentUser(User):
    """A node agent, as Locust sees it: connects, takes the snapshot, then times every delivery
    (etcd write to receipt)."""

    weight = 100

    def on_start(self) -> None:
        """Connect and send the hello."""
        self.node = f"locust-{next(_NODE_COUNTER)}"
        self.sock: socket.socket | None = None
        self.core: ClientConnection | None = None
        self.last_revision = 0
        self._connect()

    def on_stop(self) -> None:
        """Close the connection."""
        if self.sock is not None:
            self.sock.close()

    def _connect(self) -> None:
        where = parse_hostport(TYPHA)
        host, port = where.host, where.port
        start = time.monotonic()
        received = 0
        try:
            self.sock = socket.create_connection((host, port), timeout=10)
            self.core = ClientConnection(node=self.node, now=start)
            self._flush()
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("server closed during the snapshot")
                received += len(data)
                msgs = self.core.receive_data(data, time.monotonic())
                self._flush()
                if any(isinstance(m, SnapshotEnd) for m in msgs):
                    self.last_revision = self.core.revision
                    break
            self._fire("snapshot", (time.monotonic() - start) * 1000, received, None)
        except (OSError, ProtocolError, ConnectionError) as exc:
            self._fire("snapshot", (time.monotonic() - start) * 1000, received, exc)
            self.sock = None

    def _flush(self) -> None:
        assert self.core is not None
        assert self.sock is not None
        out = self.core.data_to_send()
        if out:
            self.sock.sendall(b"".join(out))

    def _fire(self, name: str, ms: float, length: int, exc: BaseException | None) -> None:
        self.environment.events.request.fire(
            request_type="typha",
            name=name,
            response_time=ms,
            response_length=length,
            exception=exc,
            context={},
        )

    @task
    def follow(self) -> None:
        """Read what the server sent, report each delivery, answer timers."""
        if self.sock is None or self.core is None:
            time.sleep(1)
            self._connect()
            return
        self.sock.settimeout(1.0)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            data = None
        except OSError as exc:
            self._fire("delta", 0, 0, exc)
            self.sock = None
            return
        now = time.monotonic()
        try:
            if data == b"":
                raise ConnectionError("server closed the connection")
            if data:
                for msg in self.core.receive_data(data, now):
                    if isinstance(msg, Delta):
                        self._time_writes(msg.prev_revision, msg.revision, now, len(data))
            self.core.handle_timer(now)
            self._flush()
        except (ProtocolError, ConnectionTimeout, ConnectionError, OSError) as exc:
            self._fire("delta", 0, 0, exc)
            self.sock = None

    def _time_writes(self, prev: int, revision: int, now: float, length: int) -> None:
        for rev in range(max(prev, self.last_revision) + 1, revision + 1):
            t = WRITES.get(rev)
            if t is not None:
                self._fire("delta", (now - t) * 1000, length, None)
        self.last_revision = revision


class ChurnUser(User):
    """Writes churn into etcd, recording when each revision was written."""

    fixed_count = 1
    wait_time = constant_throughput(RATE)

    def on_start(self) -> None:
        """Open the etcd connection."""
        self.session = requests.Session()
        self.churn = Churn(nodes=20, seed=int(time.time()))

    @task
    def write(self) -> None:
        """Write one churn operation."""
        op = self.churn.next()
        key = base64.b64encode(op.key.encode()).decode()
        start = time.monotonic()
        if op.value is None:
            url, body = f"http://{ETCD}/v3/kv/deleterange", {"key": key}
        else:
            value = base64.b64encode(orjson.dumps(op.value)).decode()
            url, body = f"http://{ETCD}/v3/kv/put", {"key": key, "value": value}
        try:
            resp = self.session.post(url, json=body, timeout=5)
            resp.raise_for_status()
            header: dict[str, Any] = resp.json().get("header", {})
            WRITES[int(header["revision"])] = start
            self.environment.events.request.fire(
                request_type="etcd",
                name="write",
                response_time=(time.monotonic() - start) * 1000,
                response_length=len(resp.content),
                exception=None,
                context={},
            )
        except (requests.RequestException, KeyError, ValueError) as exc:
            self.environment.events.request.fire(
                request_type="etcd",
                name="write",
                response_time=0,
                response_length=0,
                exception=exc,
                context={},
            )
