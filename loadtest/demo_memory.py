"""Peak memory of every process of a bounded `typha demo` run.

    python -m loadtest.demo_memory [--nodes 1000] [--pods-per-node 20]
        [--agents 100] [--duration 120]

Runs the demo (embedded etcd, the server in the demo's own process, the
agents in worker processes) and samples, once a second, the kernel's
high-water mark (VmHWM) of the demo and of each of its descendants.  Prints
and writes (loadtest/results/demo_memory.json) the peak of each process, the
largest worker's, and how the demo ended: its exit status and the closing
check of every agent's digest against etcd.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest.memory import hwm_mib


def children(pid: int) -> list[int]:
    """The direct children of `pid` (empty once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def descendants(pid: int) -> list[int]:
    """Every process below `pid`."""
    out: list[int] = []
    todo = children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def role(pid: int) -> str:
    """A short name for a process of the demo."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = b" ".join(args).decode(errors="replace")
    if "agent_worker" in text:
        return "agent worker"
    if "etcd" in text.split(" ", 1)[0]:
        return "etcd"
    return text[:40]


def main() -> int:
    """Entry point; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods-per-node", type=int, default=20)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--out", default="loadtest/results/demo_memory.json")
    ns = ap.parse_args()
    bindir = Path(sys.executable).parent
    cmd = [
        str(bindir / "typha"),
        "demo",
        "--nodes",
        str(ns.nodes),
        "--pods-per-node",
        str(ns.pods_per_node),
        "--agents",
        str(ns.agents),
        "--duration",
        str(ns.duration),
    ]
    # The demo's output goes to a file, not a pipe read at the end: a long
    # run would fill the pipe and block the demo on its own live view.
    with tempfile.TemporaryFile() as output:
        demo = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT)
        peaks: dict[int, tuple[str, float]] = {}
        while demo.poll() is None:
            for pid in [demo.pid, *descendants(demo.pid)]:
                mib = hwm_mib(pid) if Path(f"/proc/{pid}").exists() else 0.0
                name = "demo (server, churn, view)" if pid == demo.pid else role(pid)
                if mib >= peaks.get(pid, ("", 0.0))[1]:
                    peaks[pid] = (name, mib)
            time.sleep(1.0)
        output.seek(0)
        lines = output.read().decode(errors="replace").splitlines()
    workers = [mib for name, mib in peaks.values() if name == "agent worker"]
    result = {
        "command": " ".join(["typha", *cmd[1:]]),
        "exit_status": demo.returncode,
        "closing_check": [ln for ln in lines if "agents match etcd" in ln],
        "largest_worker_peak_rss_mib": round(max(workers, default=0.0), 1),
        "processes": [
            {"process": name, "peak_rss_mib": round(mib, 1)}
            for name, mib in sorted(peaks.values(), key=lambda p: -p[1])
        ],
    }
    print(json.dumps(result, indent=2))
    Path(ns.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if demo.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
