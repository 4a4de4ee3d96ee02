"""Reconnect delays with a fake clock: they grow until a connection has
stayed in sync long enough, whatever happened in between."""

from __future__ import annotations

import random

from syncclient.addresses import ReconnectBackoff


def test_failures_right_after_the_hello_keep_growing_the_delay() -> None:
    b = ReconnectBackoff(0.1, 5.0, healthy_after=10.0, rng=random.Random(1))
    uppers = []
    for i in range(8):
        # Each connection got in sync (a hello, a snapshot) and failed 1 s later.
        delay = b.after_connection(in_sync_since=100.0 * i, now=100.0 * i + 1.0)
        uppers.append(b.upper)
        assert 0.0 <= delay <= 5.0
    assert uppers == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_a_connection_healthy_for_long_enough_resets_the_delay() -> None:
    b = ReconnectBackoff(0.1, 5.0, healthy_after=10.0, rng=random.Random(2))
    for _ in range(5):
        b.after_connection(None, 0.0)  # never got in sync
    assert b.upper == 3.2
    b.after_connection(in_sync_since=50.0, now=59.9)  # not quite long enough
    assert b.upper == 5.0
    delay = b.after_connection(in_sync_since=50.0, now=60.0)
    assert delay <= 0.1
    assert b.upper == 0.2
