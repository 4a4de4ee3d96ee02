"""The bench's minimal HTTP/2 watch reader: frames split anywhere, control
frames answered, messages reassembled, responses scanned like protobuf does."""

from __future__ import annotations

import pytest
from etcd3aio._protobuf import WatchResponse as PbWatchResponse

from loadtest.h2grpc import (
    DATA,
    FLAG_ACK,
    FLAG_END_STREAM,
    FLAG_PADDED,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    SETTINGS,
    STREAM,
    WINDOW_UPDATE,
    H2WatchReader,
    StreamEnded,
    frame,
    grpc_message,
    opening,
    scan_watch_response,
)


def encoded(
    revision: int, *, created: bool = False, canceled: bool = False, events: int = 0
) -> bytes:
    r = PbWatchResponse(created=created, canceled=canceled, watch_id=7)
    r.header.revision = revision
    r.header.cluster_id = 2**63 + 5  # a 10-byte varint before the revision
    r.header.raft_term = 3
    for i in range(events):
        ev = r.events.add()
        ev.kv.key = f"/calico/k{i}".encode()
        ev.kv.value = b"x" * 300
        ev.kv.mod_revision = revision
    return bytes(r.SerializeToString())


@pytest.mark.parametrize(
    ("revision", "created", "canceled", "events"),
    [(1, True, False, 0), (123_456_789_012, False, False, 3), (42, False, True, 0)],
)
def test_scan_reads_what_protobuf_wrote(
    revision: int, created: bool, canceled: bool, events: int
) -> None:
    got = scan_watch_response(encoded(revision, created=created, canceled=canceled, events=events))
    assert (got.revision, got.created, got.canceled) == (revision, created, canceled)


def test_messages_are_reassembled_across_frames_and_reads() -> None:
    msgs = [encoded(10 + i, events=40) for i in range(3)]  # ~14 KB each
    stream = b"".join(grpc_message(m) for m in msgs)
    # Split the gRPC stream into DATA frames at places that cut messages.
    wire = b"".join(
        frame(DATA, 0, STREAM, stream[i : i + 5000]) for i in range(0, len(stream), 5000)
    )
    reader = H2WatchReader()
    got: list[bytes] = []
    for i in range(0, len(wire), 777):  # and the socket reads cut frames
        out, reply = reader.feed(wire[i : i + 777])
        got += out
        assert reply == b""
    assert got == msgs


def test_padded_data_frames_lose_their_padding() -> None:
    body = grpc_message(encoded(5))
    payload = bytes((4,)) + body + b"\0" * 4
    out, _ = H2WatchReader().feed(frame(DATA, FLAG_PADDED, STREAM, payload))
    assert [scan_watch_response(m).revision for m in out] == [5]


def test_settings_and_ping_are_acknowledged_and_acks_are_not() -> None:
    reader = H2WatchReader()
    _, reply = reader.feed(frame(SETTINGS, 0, 0, b"") + frame(PING, 0, 0, b"12345678"))
    assert reply == frame(SETTINGS, FLAG_ACK, 0, b"") + frame(PING, FLAG_ACK, 0, b"12345678")
    _, reply = reader.feed(frame(SETTINGS, FLAG_ACK, 0, b"") + frame(PING, FLAG_ACK, 0, b"x" * 8))
    assert reply == b""


def test_windows_are_reopened_before_they_run_out() -> None:
    reader = H2WatchReader(reopen_after=100_000)
    chunk = frame(DATA, 0, STREAM, b"\0" * 16_000)
    replies = [reader.feed(chunk)[1] for _ in range(7)]
    assert replies[:6] == [b""] * 6  # 96,000 bytes: not yet
    inc = (16_000 * 7).to_bytes(4, "big")
    assert replies[6] == frame(WINDOW_UPDATE, 0, 0, inc) + frame(WINDOW_UPDATE, 0, STREAM, inc)
    assert reader.feed(chunk)[1] == b""  # counted afresh from there


@pytest.mark.parametrize(
    "ending",
    [
        frame(HEADERS, FLAG_END_STREAM | 0x4, STREAM, b"\x88"),
        frame(GOAWAY, 0, 0, b"\0" * 8),
        frame(DATA, FLAG_END_STREAM, STREAM, b""),
    ],
)
def test_the_end_of_the_stream_is_reported(ending: bytes) -> None:
    with pytest.raises(StreamEnded):
        H2WatchReader().feed(ending)


def test_opening_starts_with_the_preface_and_opens_stream_one() -> None:
    wire = opening("h:1", "/etcdserverpb.Watch/Watch", b"req")
    assert wire.startswith(PREFACE)
    assert wire.endswith(frame(DATA, 0, STREAM, grpc_message(b"req")))
    assert b"/etcdserverpb.Watch/Watch" in wire
    assert b"application/grpc" in wire
