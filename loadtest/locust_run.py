"""A headless Locust run against a real etcd and `typha serve`, started here.

    python -m loadtest.locust_run --users 500 --duration 60

Starts an embedded etcd, seeds it, starts `typha serve`, runs
`locust --headless` with USERS agent users plus one churn user, and writes
loadtest/results/locust-<users>.html (Locust's report) and its CSV stats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from commands.demo.etcd import EmbeddedEtcd
from loadtest.bench import seed, start_typha, stop


def main() -> int:
    """Run etcd, typha and a headless Locust; returns Locust's exit status."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--spawn-rate", type=float, default=100)
    p.add_argument("--duration", type=int, default=60)
    p.add_argument("--rate", type=float, default=50, help="churn writes per second")
    p.add_argument("--keys", type=int, default=2000)
    p.add_argument("--out-dir", default="loadtest/results")
    ns = p.parse_args()
    out = Path(ns.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="typha-locust-") as tmp:
        etcd = EmbeddedEtcd(os.path.join(tmp, "etcd")).start()
        server = None
        try:
            asyncio.run(seed(etcd.endpoint, ns.keys))
            server, port, _ = start_typha(etcd, Path(tmp))
            env = {
                **os.environ,
                "TYPHA_ADDR": f"127.0.0.1:{port}",
                "ETCD_ENDPOINT": etcd.endpoint,
                "CHURN_RATE": str(ns.rate),
            }
            stem = out / f"locust-{ns.users}"
            cmd = [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(Path(__file__).with_name("locustfile.py")),
                "--headless",
                "-u",
                str(ns.users + 1),
                "-r",
                str(ns.spawn_rate),
                "-t",
                f"{ns.duration}s",
                "--html",
                f"{stem}.html",
                "--csv",
                str(stem),
                "--only-summary",
                "--stop-timeout",
                "5",
            ]
            return subprocess.run(cmd, env=env, check=False).returncode
        finally:
            if server is not None:
                stop(server)
            etcd.stop()


if __name__ == "__main__":
    sys.exit(main())
