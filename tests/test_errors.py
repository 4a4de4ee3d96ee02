"""Every package's errors say whose fault they are, through two shared roots."""

from __future__ import annotations

import importlib
import inspect

import pytest

import runtime.errors as runtime_errors
import snapshot.errors as state
import syncclient.errors as client
import syncproto.errors as proto
import typha.errors as server
from snapshot.errors import LocalMisuse, RemoteError
from syncproto.vocabulary import CloseReason
from tests.test_layout import PACKAGES as LAYOUT
from tests.test_layout import ROOT

# Every package of the layout that has an errors module.
PACKAGES = [p for p in LAYOUT if (ROOT / p / "errors.py").exists()]


def _discovered() -> list[type[BaseException]]:
    """Every exception class the packages' errors modules define."""
    out = []
    for pkg in PACKAGES:
        module = importlib.import_module(f"{pkg}.errors")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                out.append(cls)
    return out


ERRORS = _discovered()
# A package's own base class (deriving from Exception alone) and the two
# shared roots say nothing about fault; nor do the outcomes a caller expects
# and handles (their errors modules say so); every other error says exactly
# one.
BASES = [c for c in ERRORS if c.__bases__ == (Exception,)]
OUTCOMES = [
    state.HistoryUnavailable,  # the history was trimmed: answered with a snapshot
    client.NotConnected,  # the client is closed: the caller's own close, or while waiting
]
LEAVES = [c for c in ERRORS if c not in BASES and c not in OUTCOMES]


def test_discovery_finds_every_package_and_both_kinds() -> None:
    modules = {c.__module__.partition(".")[0] for c in ERRORS}
    assert modules == set(PACKAGES)
    assert any(issubclass(c, LocalMisuse) for c in LEAVES)
    assert any(issubclass(c, RemoteError) for c in LEAVES)
    assert all(c in ERRORS for c in OUTCOMES)


@pytest.mark.parametrize("cls", OUTCOMES, ids=lambda c: c.__name__)
def test_an_expected_outcome_blames_no_one(cls: type[BaseException]) -> None:
    assert not issubclass(cls, LocalMisuse)
    assert not issubclass(cls, RemoteError)


@pytest.mark.parametrize("cls", LEAVES, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_error_is_local_misuse_or_remote_trouble_never_both(
    cls: type[BaseException],
) -> None:
    assert issubclass(cls, LocalMisuse) != issubclass(cls, RemoteError)


def test_the_operator_can_catch_any_configuration_error_once() -> None:
    for cls in (server.ConfigError, client.ConfigError):
        assert issubclass(cls, runtime_errors.ConfigError)


def test_protocol_errors_carry_a_close_reason() -> None:
    for cls in (proto.FrameTooLarge, proto.MalformedMessage, proto.HandshakeError):
        assert isinstance(cls("x").code, CloseReason)
    assert proto.ConnectionTimeout(CloseReason.PONG_TIMEOUT).code is CloseReason.PONG_TIMEOUT
