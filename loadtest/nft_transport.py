"""How to hand nftables a batch: libnftables in process, one long-lived
`nft -i` process, or an `nft -f -` process per batch (root only).

    python -m loadtest.nft_transport [--batches 300] [--elements 20]

In a network namespace made for the run (and removed after), a table with
a set and a chain; each batch adds `--elements` set elements and replaces
one rule, the shape of an agent's update.  Per transport, the wall time per
batch (p50, p99) and the CPU per batch of this process, the `nft` process
and the `nft` processes spawned.  For the
long-lived process, a batch is one input line (nft applies a line as one
transaction) followed by a listing of a one-element marker set, whose
closing brace says the batch is done.  Writes
loadtest/results/nft_transport.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataplane.linux.kernel_thread import KernelThread
from dataplane.linux.nft_lib import Nft

T = "inet bench"


def _setup(i: int) -> str:
    return (
        f"add table {T}\n"
        f"add set {T} s{i} {{ type ipv4_addr; }}\n"
        f"add set {T} done {{ type ipv4_addr; elements = {{ 127.0.0.1 }} }}\n"
        f"add chain {T} c{i}\n"
    )


def _batch(i: int, n: int, elements: int) -> str:
    base = n * elements
    elems = ", ".join(
        f"10.{(base + k) >> 16 & 255}.{(base + k) >> 8 & 255}.{(base + k) & 255}"
        for k in range(elements)
    )
    return (
        f"add element {T} s{i} {{ {elems} }}; flush chain {T} c{i}; "
        f"add rule {T} c{i} ip saddr @s{i} tcp dport {1000 + n % 60000} counter accept"
    )


def _cpu(pid: int = 0) -> float:
    """CPU seconds of this process (all threads), of its children that have
    exited, and of the running process `pid` if given."""
    t = os.times()
    total = time.process_time() + t.children_user + t.children_system
    if pid:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _measure(run: Callable[[int], object], batches: int, pid: int = 0) -> dict[str, Any]:
    lat = []
    c0 = _cpu(pid)
    for n in range(batches):
        t0 = time.perf_counter()
        run(n)
        lat.append(time.perf_counter() - t0)
    cpu = _cpu(pid) - c0
    lat.sort()
    return {
        "p50_ms": round(lat[len(lat) // 2] * 1e3, 3),
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 3),
        "cpu_ms_per_batch": round(cpu / batches * 1e3, 3),
    }


def measure(batches: int, elements: int) -> dict[str, Any]:
    """All three transports in one namespace, one after the other."""
    ns = f"nftbench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    out: dict[str, Any] = {"batches": batches, "elements_per_batch": elements}
    try:
        thread = KernelThread(f"/run/netns/{ns}")
        nft = thread.call(Nft)
        thread.call(lambda: nft.run(_setup(0)))
        out["libnftables"] = _measure(
            lambda n: thread.call(lambda: nft.run(_batch(0, n, elements))), batches
        )
        thread.call(nft.close)
        thread.close()

        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "nft", "-i"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout
        for line in _setup(1).splitlines():
            stdin.write(line + "\n")

        def interactive(n: int) -> None:
            stdin.write(_batch(1, n, elements) + "\n")
            stdin.write(f"list set {T} done\n")
            stdin.flush()
            depth = 0
            while True:  # the marker listing ends with the table's closing brace
                line = stdout.readline()
                if not line:
                    raise RuntimeError("nft -i exited")
                depth += line.count("{") - line.count("}")
                if "}" in line and depth == 0:
                    return

        out["nft_interactive"] = _measure(interactive, batches, proc.pid)
        stdin.close()
        proc.wait(10)

        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=_setup(2), text=True, check=True
        )

        def spawn(n: int) -> None:
            subprocess.run(
                ["ip", "netns", "exec", ns, "nft", "-f", "-"],
                input=_batch(2, n, elements) + "\n",
                text=True,
                check=True,
            )

        out["nft_process_per_batch"] = _measure(spawn, batches)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return out


def main() -> None:
    """Run and write the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--elements", type=int, default=20)
    p.add_argument("--out", default="loadtest/results/nft_transport.json")
    ns = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("nft_transport needs root (network namespaces, nftables)")
    results = measure(ns.batches, ns.elements)
    print(json.dumps(results, indent=2))
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
