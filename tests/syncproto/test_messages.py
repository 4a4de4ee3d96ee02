from __future__ import annotations

import msgpack
import pytest
import zstandard

import syncproto
from syncproto import (
    Applied,
    AppliedInterval,
    ClientHello,
    Codec,
    DatastoreStatus,
    DatastoreStatusMsg,
    Delta,
    FrameDecoder,
    Goodbye,
    Message,
    MsgType,
    Ping,
    Pong,
    Progress,
    Sender,
    ServerHello,
    SnapshotChunk,
    SnapshotEnd,
    encode_frame,
)
from syncproto.errors import MalformedMessage
from syncproto.vocabulary import SyncMode

D = "0123456789abcdef" * 2

MESSAGES: list[Message] = [
    ClientHello(node="n1", caps=frozenset({"zstd"}), revision=5, digest=D, client="x"),
    ServerHello(server="s1", caps=frozenset({"zstd"}), sync=SyncMode.SNAPSHOT, max_frame=1 << 20),
    ServerHello(server="s2", caps=frozenset({"applied"}), max_frame=4096, applied_interval_ms=750),
    AppliedInterval(1500),
    SnapshotChunk(revision=9, entries=[("k", b'{"a":1}'), ("k2", b"{}")]),
    SnapshotEnd(revision=9, keys=2, digest=D),
    Delta(prev_revision=9, revision=11, updates=[("k", b"{}"), ("k2", None)], digest=D),
    Progress(prev_revision=11, revision=12, digest=D),
    Ping(7),
    Pong(7),
    Goodbye("slow_client", "behind by 9 MiB"),
    DatastoreStatusMsg(DatastoreStatus.RESYNCING),
    Applied(41),
]


def test_every_declared_message_has_a_round_trip_sample_and_a_number_of_its_own() -> None:
    # A new message class in syncproto/messages.py must be sampled above.
    assert {type(m) for m in MESSAGES} == set(syncproto.MESSAGES)
    assert len({m.TYPE for m in syncproto.MESSAGES}) == len(syncproto.MESSAGES)
    assert {m.TYPE for m in syncproto.MESSAGES} == set(MsgType)


@pytest.mark.parametrize("cls", syncproto.MESSAGES, ids=lambda c: c.__name__)
def test_each_message_declares_who_sends_it(cls: type[Message]) -> None:
    assert isinstance(cls.SENT_BY, Sender)
    assert cls.CAP is None or isinstance(cls.CAP, str)
    # Only the hellos belong to the handshake, and each side sends one.
    assert (cls in (ClientHello, ServerHello)) == cls.HANDSHAKE


def decode_one(codec: Codec, data: bytes) -> Message:
    (frame,) = FrameDecoder(codec.max_frame).feed(data)
    return codec.decode(frame)


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(msg: Message, compress: bool) -> None:
    codec = Codec(max_frame=1 << 20)
    assert decode_one(codec, codec.encode(msg, compress=compress)) == msg


def test_revision_travels_in_the_header() -> None:
    codec = Codec(max_frame=1 << 20)
    data = codec.encode(Delta(3, 42, [], D))
    assert int.from_bytes(data[8:16], "big") == 42


@pytest.mark.parametrize(
    ("mtype", "body"),
    [
        (MsgType.CLIENT_HELLO, msgpack.packb([1, 2])),
        (MsgType.CLIENT_HELLO, msgpack.packb({"version": 1, "caps": [], "revision": 0})),
        (
            MsgType.CLIENT_HELLO,
            msgpack.packb({"version": "1", "caps": [], "node": "n", "revision": 0}),
        ),
        (MsgType.DELTA, msgpack.packb({"prev": 1, "updates": [["k"]], "digest": D})),
        (MsgType.DELTA, msgpack.packb({"prev": 1, "updates": [[1, b"x"]], "digest": D})),
        (MsgType.DELTA, msgpack.packb({"prev": 1, "updates": [], "digest": "XYZ"})),
        (MsgType.SNAPSHOT_CHUNK, msgpack.packb({"entries": [["k", None]]})),
        (
            MsgType.SERVER_HELLO,
            msgpack.packb(
                {"version": 1, "caps": [], "server": "s", "sync": "snapshot", "max_frame": 9}
                | {"applied_interval_ms": -1}
            ),
        ),
        (
            MsgType.SERVER_HELLO,
            msgpack.packb(
                {"version": 1, "caps": [], "server": "s", "sync": "snapshot", "max_frame": 9}
                | {"applied_interval_ms": "250"}
            ),
        ),
        (MsgType.APPLIED_INTERVAL, msgpack.packb({"interval_ms": 0})),
        (MsgType.APPLIED_INTERVAL, msgpack.packb({"interval_ms": -5})),
        (MsgType.APPLIED_INTERVAL, msgpack.packb({})),
        (MsgType.PING, b"\xc1"),  # never-used msgpack byte
        (MsgType.PING, msgpack.packb({"token": True})),
    ],
)
def test_malformed_bodies_raise_only_malformed(mtype: MsgType, body: bytes) -> None:
    codec = Codec(max_frame=1 << 20)
    with pytest.raises(MalformedMessage):
        decode_one(codec, encode_frame(mtype, body))


def test_decompression_is_bounded_by_the_frame_limit() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * 200_000)
    codec = Codec(max_frame=65_536)
    assert len(bomb) < 65_536
    with pytest.raises(MalformedMessage):
        decode_one(codec, encode_frame(MsgType.SNAPSHOT_CHUNK, bomb, flags=1))


def test_a_server_hello_without_an_applied_interval_reads_as_none() -> None:
    # An older server's hello: the field is absent, the client uses its default.
    body = {"version": 1, "caps": [], "server": "old", "sync": "snapshot", "max_frame": 4096}
    codec = Codec(max_frame=1 << 20)
    hello = decode_one(codec, encode_frame(MsgType.SERVER_HELLO, msgpack.packb(body)))
    assert isinstance(hello, ServerHello)
    assert hello.applied_interval_ms == 0
