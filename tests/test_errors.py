"""Every package's errors say whose fault they are, through two shared roots."""

from __future__ import annotations

import pytest

import calico_model.errors as model
import dataplane.errors as dataplane_errors
import felix_client.errors as client
import snapshot.errors as state
import syncproto.errors as proto
import typha.errors as server
from snapshot.errors import LocalMisuse, RemoteError
from syncproto.vocabulary import CloseReason

LOCAL = [
    state.RevisionRegression,
    proto.UsageError,
    proto.ConfigError,
    server.ConfigError,
    client.ConfigError,
    client.ValuesNotKept,
    dataplane_errors.BadFailsafePorts,
]
REMOTE = [
    proto.ProtocolError,
    proto.MalformedMessage,
    proto.FrameTooLarge,
    proto.HandshakeError,
    proto.RateLimited,
    proto.ConnectionTimeout,
    server.DatastoreError,
    client.ServerMisbehaved,
    client.DigestMismatch,
    client.BadValue,
    dataplane_errors.DataplaneError,
    dataplane_errors.KernelUnavailable,
    dataplane_errors.UnsafeValue,
    model.SelectorError,
    model.InvalidValue,
]


@pytest.mark.parametrize("cls", LOCAL)
def test_local_misuse_is_never_blamed_on_the_remote(cls: type[Exception]) -> None:
    assert issubclass(cls, LocalMisuse)
    assert not issubclass(cls, RemoteError)


@pytest.mark.parametrize("cls", REMOTE)
def test_remote_trouble_is_never_blamed_on_the_caller(cls: type[Exception]) -> None:
    assert issubclass(cls, RemoteError)
    assert not issubclass(cls, LocalMisuse)


def test_the_operator_can_catch_any_configuration_error_once() -> None:
    for cls in (server.ConfigError, client.ConfigError):
        assert issubclass(cls, proto.ConfigError)


def test_protocol_errors_carry_a_close_reason() -> None:
    for cls in (proto.FrameTooLarge, proto.MalformedMessage, proto.HandshakeError):
        assert isinstance(cls("x").code, CloseReason)
    assert proto.ConnectionTimeout(CloseReason.PONG_TIMEOUT).code is CloseReason.PONG_TIMEOUT
