"""The verdict counters are read before a scrape in a worker thread, one
read at a time, and the scrape formats what was read."""

from __future__ import annotations

import asyncio
import threading

from dataplane.batch import Action, Direction, RuleRef
from dataplane.policy_counters import CounterKey, Reading
from felix_client.metrics import verdict_refresher
from felix_client.verdict_series import VerdictSeries

KEY = CounterKey(RuleRef("default", "deny", "0"), Direction.INGRESS, Action.DENY)


def test_the_read_runs_off_the_event_loop_one_at_a_time() -> None:
    release = threading.Event()
    readers: list[int] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def read() -> dict[CounterKey, Reading]:
            readers.append(threading.get_ident())
            loop.call_soon_threadsafe(started.set)
            release.wait(10)
            return {KEY: Reading(7, 700)}

        vs = VerdictSeries(read, limit=10, min_interval=0)
        refresh = verdict_refresher(vs)
        first = asyncio.create_task(refresh())
        await started.wait()  # the read has started, in a thread
        # The loop is free meanwhile, and a second scrape does not read again.
        await refresh()
        assert len(readers) == 1
        assert [s.labels[1] for s in vs.current() if s.packets] == []  # not read yet
        release.set()
        await first
        assert [s.packets for s in vs.current() if s.labels[1] == "deny"] == [7]
        assert readers[0] != threading.get_ident()

    asyncio.run(scenario())


def test_before_any_read_the_folded_series_are_there_at_zero() -> None:
    vs = VerdictSeries(dict, limit=10)
    assert len(vs.current()) == 8
    assert {s.packets for s in vs.current()} == {0}
    assert vs.due()
    vs.refresh()
    assert not vs.due()  # within min_interval
