"""Process CPU/RSS sampling and the latency/delivery arithmetic of the bench."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import psutil


def cpu_s(pids: Iterable[int]) -> float:
    """CPU seconds (user + system) used so far by these processes."""
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    try:
        return int(psutil.Process(pid).memory_info().rss // 1024)
    except psutil.NoSuchProcess:
        return 0


class PeakRss:
    """Samples a process's RSS in a thread until stopped; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, rss_kib(self.pid))

    def stop(self) -> int:
        """Stop sampling; returns the peak RSS in KiB."""
        self._stop.set()
        self._thread.join()
        return self.peak


def deliveries(write_revs: Sequence[int], firsts: Sequence[int], finals: Sequence[int]) -> int:
    """(agent, write) pairs delivered: writes after each agent's start and up
    to the revision it reached."""
    total = 0
    for first, final in zip(firsts, finals, strict=True):
        total += bisect.bisect_right(write_revs, final) - bisect.bisect_right(write_revs, first)
    return total


def latencies_ms(
    write_revs: Sequence[int],
    write_times: Sequence[float],
    samples: Sequence[dict[str, Any]],
    firsts: Sequence[int],
) -> list[float]:
    """For each sampled agent and each write it received: receipt time of the
    first frame at or past the write's revision, minus the write time."""
    out: list[float] = []
    for sample, first in zip(samples, firsts, strict=False):
        revs, times = sample["revs"], sample["times"]
        if not revs:
            continue
        for rev, t in zip(write_revs, write_times, strict=True):
            if rev <= first:
                continue
            i = bisect.bisect_left(revs, rev)
            if i == len(revs):
                break
            out.append((times[i] - t) * 1000)
    return out


def pct(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, nearest rank."""
    if not values:
        return float("nan")
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)
