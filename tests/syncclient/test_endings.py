"""How a connection ended decides what the client counts, logs and forgets."""

from __future__ import annotations

import pytest

from syncclient.client_stats import ClientStats
from syncclient.endings import RULES, Ending, classify
from syncclient.errors import BadValue, DigestMismatch
from syncclient.session import StaleUpstream
from syncproto import CloseReason
from syncproto.errors import ConnectionTimeout, MalformedMessage


@pytest.mark.parametrize(
    ("exc", "ending"),
    [
        (ConnectionRefusedError("refused"), Ending.UNREACHABLE),
        (TimeoutError(), Ending.UNREACHABLE),
        (MalformedMessage("bad"), Ending.PROTOCOL_ERROR),
        (DigestMismatch(5, "0" * 32, "1" * 32), Ending.DIGEST_MISMATCH),  # before its base class
        (BadValue("not json"), Ending.MISBEHAVED),
        (ConnectionTimeout(CloseReason.PONG_TIMEOUT), Ending.TIMED_OUT),
        (StaleUpstream("lost the datastore"), Ending.STALE_UPSTREAM),
        (KeyError("a bug"), Ending.INTERNAL_ERROR),
    ],
)
def test_each_exception_has_its_ending(exc: Exception, ending: Ending) -> None:
    assert classify(exc) is ending


def test_every_ending_has_a_rule_whose_counter_exists() -> None:
    stats = ClientStats()
    assert set(RULES) == set(Ending)
    for rule in RULES.values():
        if rule.counter is not None:
            assert isinstance(getattr(stats, rule.counter), int)


def test_what_the_server_got_wrong_costs_our_revision_and_a_timeout_does_not() -> None:
    forgets = {e for e, r in RULES.items() if r.forget_revision}
    assert forgets == {
        Ending.PROTOCOL_ERROR,
        Ending.DIGEST_MISMATCH,
        Ending.MISBEHAVED,
        Ending.INTERNAL_ERROR,
    }
