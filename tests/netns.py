"""The kernel tests' fabric: `commands.demo.netns.Fabric` (namespaces the
test creates and removes) plus probes run inside its namespaces.

Nothing here touches the root namespace's interfaces, routes or firewall.
`require_kernel()` skips the test with the reason when root,
CAP_NET_ADMIN, iproute2 or libnftables is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from commands.demo import netns as _netns
from commands.demo.netns import HOST_LL, HOST_MAC, kernel_missing, sh

__all__ = [
    "HOST_LL",
    "HOST_MAC",
    "Fabric",
    "fabric",
    "kernel_missing",
    "named_counters",
    "nft_packets",
    "require_kernel",
    "sh",
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def nft_packets(ns: str, what: str, having: str = "") -> int:
    """Packets counted by the rules of the agent's table in `ns` listed by
    `nft list <what>` (`table inet felix_typha`, `chain inet felix_typha
    wl_source`, ...) whose statements include `having` (`drop`, `log`;
    every rule if empty)."""
    doc = json.loads(sh(ns, "nft", "-j", "list", *what.split()).stdout)
    named = named_counters(ns)
    total = 0
    for obj in doc["nftables"]:
        exprs = obj.get("rule", {}).get("expr", [])
        if not having or any(having in e for e in exprs):
            for e in exprs:
                if "counter" in e:
                    c = e["counter"]
                    # A policy rule counts into a named counter (shared).
                    total += named[c][0] if isinstance(c, str) else c["packets"]
    return total


def named_counters(ns: str) -> dict[str, tuple[int, int]]:
    """The named counters of the agent's table in `ns`: (packets, bytes) by name."""
    res = sh(ns, "nft", "-j", "list", "counters", "table", "inet", "felix_typha", check=False)
    if res.returncode != 0:
        return {}
    return {
        c["name"]: (c["packets"], c["bytes"])
        for obj in json.loads(res.stdout)["nftables"]
        if (c := obj.get("counter"))
    }


def require_kernel() -> None:
    """Skip the calling test, with the reason, if the kernel is out of reach."""
    why = kernel_missing()
    if why:
        pytest.skip(why)


class Fabric(_netns.Fabric):
    """The demo's fabric, with probes (`python -m tests.probe`) run in its
    namespaces."""

    def ping(self, ns: str, ip: str) -> bool:
        """One ICMP (ICMPv6 for an IPv6 address) echo request from `ns`, one
        second to answer."""
        return self._probe(ns, "ping", ip, "1")

    def connect(self, ns: str, ip: str, port: int) -> bool:
        """One TCP connect from `ns`, one second to be accepted."""
        return self._probe(ns, "connect", ip, str(port), "1")

    def listen(self, ns: str, port: int, seconds: float) -> subprocess.Popen[bytes]:
        """A TCP listener in `ns` for `seconds`."""
        return subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "tests.probe",
                "listen",
                str(port),
                str(seconds),
            ],
            cwd=ROOT,
        )

    def probe(self, ns: str, *args: str) -> subprocess.Popen[str]:
        """Start a probe (`python -m tests.probe ...`) in `ns`; the caller
        waits for it."""
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.probe", *args]
        return subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def _probe(self, ns: str, *args: str) -> bool:
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.probe", *args]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=10).returncode == 0


@contextmanager
def fabric() -> Iterator[Fabric]:
    """A fabric that is always removed, whatever the test does."""
    require_kernel()
    f = Fabric()
    try:
        yield f
    finally:
        f.close()
