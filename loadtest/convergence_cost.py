"""What agents' applied reports cost the server, in process, no sockets.

    python -m loadtest.convergence_cost [--agents 1000] [--reports 200000]

N agent streams are opened on a real SnapshotCache through the real
ServerStream, and APPLIED frames are fed to them round-robin, each one
revision higher, the way the server's protocol handler does it: decode and
check in the stream, then the convergence tracker's update.  Process CPU per
report is the figure; bytes per agent per second follow from the frame size
and the client's 250 ms coalescing (at most four reports a second per agent),
and the reports a replica takes per second from its budget
(`--applied-reports-per-second`).  Socket reads are not included: the bench's
`typha_applied` system measures them too.
Writes loadtest/results/convergence_cost.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from snapshot import SnapshotCache, canonical_json
from syncproto import Applied, ClientConnection, Codec, DatastoreStatus, DatastoreStatusMsg, Limits
from syncproto.encoding import FrameEncoder
from syncproto.stream import ServerStream, StreamPolicy, StreamStats
from typha.config import ServeConfig
from typha.fanout.convergence import ConvergenceTracker, report_interval_ms

REPORTS_PER_AGENT_PER_S = 4  # felix_client's 250 ms coalescing, at most


def measure(agents: int, reports: int) -> dict[str, Any]:
    """CPU per report over `reports` reports spread over `agents` streams."""
    limits = Limits()
    encoder = FrameEncoder(max_frame=limits.max_frame)
    cache = SnapshotCache(encode_batch=encoder.batch, encode_snapshot=encoder.snapshot)
    cache.load([("/calico/k", canonical_json({"v": 0}))], 1)
    for i in range(2, 2 + reports // agents + 2):
        cache.apply([("/calico/k", canonical_json({"v": i}))], i)
    codec = Codec(max_frame=limits.max_frame)
    status = codec.encode(DatastoreStatusMsg(DatastoreStatus.IN_SYNC))
    tracker = ConvergenceTracker()
    streams = []
    for n in range(agents):
        stream = ServerStream(
            cache,
            server_id="s",
            now=0.0,
            limits=limits,
            policy=StreamPolicy(max_buffer_bytes=1 << 30, max_lag=1e9, resume_wait=0.0),
            stats=StreamStats(),
        )
        client = ClientConnection(node=f"node-{n}", now=0.0)
        stream.receive_data(b"".join(client.data_to_send()), 0.0)
        stream.start(0.0, ready=True, status_frame=status)
        tracker.connected(f"node-{n}", reports=True)
        streams.append((f"node-{n}", stream))
    frames = [codec.encode(Applied(r)) for r in range(2, 2 + reports // agents + 1)]
    start_cpu, start = time.process_time(), time.perf_counter()
    done = 0
    for frame in frames:
        for node, stream in streams:
            stream.receive_data(frame, 1.0)
            revision = stream.take_applied()
            if revision is not None:
                tracker.applied(node, revision, 1.0)
            done += 1
            if done >= reports:
                break
        if done >= reports:
            break
    cpu = time.process_time() - start_cpu
    assert tracker.reports == done, (tracker.reports, done)
    frame_bytes = len(frames[0])
    # Each agent reports at most once per the interval its replica names.
    budget = ServeConfig(etcd_endpoints=("",)).applied_reports_per_second
    reports_per_s = agents / (report_interval_ms(agents, budget) / 1000)
    return {
        "agents": agents,
        "reports": done,
        "cpu_s": round(cpu, 3),
        "wall_s": round(time.perf_counter() - start, 3),
        "cpu_us_per_report": round(cpu / done * 1e6, 2),
        "frame_bytes": frame_bytes,
        "max_bytes_per_agent_per_s": frame_bytes * REPORTS_PER_AGENT_PER_S,
        "reports_per_s_at_default_budget": round(reports_per_s, 1),
        "server_cpu_share_at_default_budget": round(cpu / done * reports_per_s, 4),
    }


def main() -> None:
    """Entry point of `python -m loadtest.convergence_cost`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--agents", type=int, nargs="+", default=[1_000, 10_000])
    p.add_argument("--reports", type=int, default=200_000)
    p.add_argument("--out", default="loadtest/results/convergence_cost.json")
    ns = p.parse_args()
    results = [measure(n, ns.reports) for n in ns.agents]
    Path(ns.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
