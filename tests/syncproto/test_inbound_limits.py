"""The sans-I/O core's defences against a hostile peer, and the datastore
status message."""

from __future__ import annotations

import pytest

from syncproto import (
    ClientConnection,
    Codec,
    DatastoreStatus,
    DatastoreStatusMsg,
    Limits,
    Ping,
    Pong,
    ServerConnection,
    State,
)
from syncproto.errors import ConnectionTimeout, FrameTooLarge, MalformedMessage, RateLimited

SERVER_LIMITS = Limits(
    max_inbound_frame=1024,
    accept_compressed=False,
    inbound_msgs_per_sec=10,
    inbound_burst=20,
    partial_frame_timeout=5,
    ping_interval=10,
    pong_timeout=5,
)
codec = Codec(max_frame=1 << 20)


def opened(limits: Limits = SERVER_LIMITS) -> tuple[ServerConnection, ClientConnection]:
    server = ServerConnection(server_id="s", now=0.0, limits=limits)
    client = ClientConnection(node="n", now=0.0)
    server.receive_data(b"".join(client.data_to_send()), 0.0)
    server.accept()
    client.receive_data(b"".join(server.data_to_send()), 0.0)
    return server, client


def test_compressed_frames_are_refused_where_not_accepted() -> None:
    server, _ = opened()
    with pytest.raises(MalformedMessage, match="compressed"):
        server.receive_data(codec.encode(Ping(1), compress=True), 1.0)
    assert server.state is State.CLOSED
    assert server.close_reason == "malformed"
    # The client side still takes compressed frames (snapshots are).
    _, client = opened()
    client.receive_data(codec.encode(Ping(2), compress=True), 1.0)
    assert client.data_to_send() == [codec.encode(Pong(2))]


def test_a_long_announced_frame_is_refused_from_its_header() -> None:
    from syncproto import MsgType, encode_frame

    server, _ = opened()
    with pytest.raises(FrameTooLarge):
        server.receive_data(encode_frame(MsgType.PING, b"x" * 2000)[:20], 1.0)


def test_a_message_flood_exhausts_the_budget() -> None:
    server, _ = opened()
    ping = codec.encode(Ping(1))
    server.receive_data(ping * 20, 1.0)  # the burst
    server.data_to_send()
    with pytest.raises(RateLimited):
        server.receive_data(ping * 20, 1.0)
    assert server.close_reason == "rate_limited"


def test_the_budget_refills_at_its_rate() -> None:
    server, _ = opened()
    ping = codec.encode(Ping(1))
    for second in range(1, 30):  # 10 per second, sustained, is fine
        server.receive_data(ping * 10, float(second))
    assert server.state is State.OPEN


def test_an_unanswered_ping_is_a_dead_peer() -> None:
    server, _ = opened()
    server.handle_timer(11.0)  # quiet for 11 s: ping
    assert server.data_to_send()
    server.handle_timer(15.0)
    with pytest.raises(ConnectionTimeout) as info:
        server.handle_timer(16.5)
    assert info.value.code == "pong_timeout"


def test_any_answer_clears_the_ping_deadline() -> None:
    server, _ = opened()
    server.handle_timer(11.0)
    server.receive_data(codec.encode(Pong(1)), 12.0)
    server.handle_timer(20.0)
    assert server.state is State.OPEN


def test_half_a_frame_left_hanging_times_out() -> None:
    server, _ = opened()
    server.receive_data(codec.encode(Ping(3))[:7], 1.0)
    server.receive_data(b"", 3.0)  # nothing new completes it
    server.handle_timer(5.5)
    with pytest.raises(ConnectionTimeout) as info:
        server.handle_timer(6.5)
    assert info.value.code == "frame_timeout"


def test_a_frame_that_completes_clears_the_partial_deadline() -> None:
    server, _ = opened()
    frame = codec.encode(Ping(3))
    server.receive_data(frame[:7], 1.0)
    server.receive_data(frame[7:], 5.0)
    server.handle_timer(9.0)
    assert server.state is State.OPEN


def test_datastore_status_reaches_a_client_that_asked_for_it() -> None:
    server, client = opened()
    assert server.wants_datastore_status
    frame = codec.encode(DatastoreStatusMsg(DatastoreStatus.RESYNCING))
    server.send_frames([frame])
    (msg,) = client.receive_data(b"".join(server.data_to_send()), 1.0)
    assert msg == DatastoreStatusMsg(DatastoreStatus.RESYNCING)
    assert client.datastore_status == msg


def test_datastore_status_without_the_capability_is_a_protocol_error() -> None:
    server = ServerConnection(server_id="s", now=0.0, caps=frozenset({"zstd", "resume"}))
    client = ClientConnection(node="n", now=0.0)
    server.receive_data(b"".join(client.data_to_send()), 0.0)
    server.accept()
    assert not server.wants_datastore_status
    client.receive_data(b"".join(server.data_to_send()), 0.0)
    with pytest.raises(MalformedMessage, match="capability"):
        client.receive_data(codec.encode(DatastoreStatusMsg(DatastoreStatus.IN_SYNC)), 1.0)


def test_an_unknown_datastore_status_is_malformed() -> None:
    import msgpack

    from syncproto import MsgType, encode_frame
    from syncproto.frames import Frame

    body = msgpack.packb({"status": "on_fire"})
    frame = encode_frame(MsgType.DATASTORE_STATUS, body)
    with pytest.raises(MalformedMessage, match="unknown status"):
        codec.decode(Frame(MsgType.DATASTORE_STATUS, 0, 0, frame[16:]))
