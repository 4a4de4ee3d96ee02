from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncproto import (
    CAP_APPLIED,
    Applied,
    AppliedInterval,
    ClientConnection,
    ClientHello,
    Codec,
    Delta,
    Goodbye,
    Limits,
    Message,
    Ping,
    Progress,
    ServerConnection,
    ServerHello,
    SnapshotChunk,
    SnapshotEnd,
    State,
)
from syncproto.connection import STREAM_TRANSITIONS, StreamPhase
from syncproto.errors import ConnectionTimeout, HandshakeError, MalformedMessage, UsageError
from syncproto.vocabulary import CloseReason, SyncMode

D = "0" * 32
codec = Codec(max_frame=1 << 20)


def pipe(src: ServerConnection | ClientConnection) -> bytes:
    return b"".join(src.data_to_send())


def handshake() -> tuple[ServerConnection, ClientConnection]:
    server = ServerConnection(server_id="s", now=0.0)
    client = ClientConnection(node="n", now=0.0)
    (hello,) = server.receive_data(pipe(client), 0.0)
    assert isinstance(hello, ClientHello)
    assert hello.node == "n"
    server.accept()
    (sh,) = client.receive_data(pipe(server), 0.0)
    assert isinstance(sh, ServerHello)
    return server, client


def test_capabilities_are_the_intersection() -> None:
    server, client = handshake()
    assert (
        server.caps == client.caps == frozenset({"zstd", "resume", "datastore_status", "applied"})
    )
    old = ServerConnection(server_id="s", now=0.0, caps=frozenset({"zstd"}))
    old.receive_data(pipe(ClientConnection(node="n", now=0.0)), 0.0)
    assert old.caps == frozenset({"zstd"})  # never more than both offered
    assert server.state is State.OPEN
    assert client.state is State.OPEN


def test_snapshot_then_deltas_and_revision_continuity() -> None:
    server, client = handshake()
    server.send_frames(
        [
            codec.encode(SnapshotChunk(10, [("k", b"{}")]), compress=True),
            codec.encode(SnapshotEnd(10, 1, D)),
            codec.encode(Delta(10, 12, [("k", None)], D)),
            codec.encode(Progress(12, 13, D)),
        ]
    )
    msgs = client.receive_data(pipe(server), 1.0)
    assert [type(m).__name__ for m in msgs] == ["SnapshotChunk", "SnapshotEnd", "Delta", "Progress"]
    assert client.revision == 13
    assert client.synced


def test_client_rejects_a_revision_gap() -> None:
    server, client = handshake()
    server.send_frames([codec.encode(SnapshotEnd(10, 0, D)), codec.encode(Delta(11, 12, [], D))])
    with pytest.raises(MalformedMessage, match="gap"):
        client.receive_data(pipe(server), 1.0)
    assert client.state is State.CLOSED
    bye = codec.decode(next(iter(_frames(pipe(client)))))
    assert isinstance(bye, Goodbye)
    assert bye.reason == "malformed"


def test_client_rejects_delta_before_snapshot_end() -> None:
    server, client = handshake()
    server.send_frames([codec.encode(Delta(0, 1, [], D))])
    with pytest.raises(MalformedMessage):
        client.receive_data(pipe(server), 1.0)


def test_server_requires_hello_first_and_only_once() -> None:
    server = ServerConnection(server_id="s", now=0.0)
    with pytest.raises(HandshakeError):
        server.receive_data(codec.encode(Progress(0, 1, D)), 0.0)
    server = ServerConnection(server_id="s", now=0.0)
    hello = codec.encode(ClientHello(node="n"))
    with pytest.raises(HandshakeError):
        server.receive_data(hello + hello, 0.0)


def test_server_rejects_data_messages_from_clients() -> None:
    server, _ = handshake()
    with pytest.raises(MalformedMessage):
        server.receive_data(codec.encode(Delta(0, 1, [], D)), 1.0)


def test_send_before_accept_is_a_usage_error() -> None:
    server = ServerConnection(server_id="s", now=0.0)
    with pytest.raises(UsageError):
        server.send_frames([b"x"])


def test_ping_pong_keeps_an_idle_link_alive() -> None:
    limits = Limits(ping_interval=5, idle_timeout=20)
    server = ServerConnection(server_id="s", now=0.0, limits=limits)
    client = ClientConnection(node="n", now=0.0, limits=limits)
    server.receive_data(pipe(client), 0.0)
    server.accept()
    client.receive_data(pipe(server), 0.0)
    now = 0.0
    for _ in range(20):  # 120 "seconds" with no data traffic at all
        now += 6
        server.handle_timer(now)
        client.handle_timer(now)
        if data := pipe(server):
            client.receive_data(data, now)
        if data := pipe(client):
            server.receive_data(data, now)
        if data := pipe(server):  # pongs
            client.receive_data(data, now)
    assert server.state is State.OPEN
    assert client.state is State.OPEN


def test_idle_timeout_when_the_peer_is_silent() -> None:
    server, _ = handshake()
    server.handle_timer(30.0)  # sends a ping
    with pytest.raises(ConnectionTimeout, match="idle_timeout"):
        server.handle_timer(61.0)
    assert server.state is State.CLOSED


def test_handshake_timeout() -> None:
    server = ServerConnection(server_id="s", now=0.0, limits=Limits(handshake_timeout=5))
    server.handle_timer(4.0)
    with pytest.raises(ConnectionTimeout, match="handshake_timeout"):
        server.handle_timer(6.0)


def test_goodbye_closes() -> None:
    server, client = handshake()
    server.close(CloseReason.SHUTDOWN)
    (bye,) = client.receive_data(pipe(server), 1.0)
    assert isinstance(bye, Goodbye)
    assert bye.reason == "shutdown"
    assert client.state is State.CLOSED
    assert server.state is State.CLOSED


def _frames(data: bytes):  # type: ignore[no-untyped-def]
    from syncproto import FrameDecoder

    return FrameDecoder().feed(data)


def resumed_client(revision: int) -> tuple[ServerConnection, ClientConnection]:
    server = ServerConnection(server_id="s", now=0.0)
    client = ClientConnection(node="n", now=0.0, revision=revision, digest=D)
    server.receive_data(pipe(client), 0.0)
    server.accept(sync=SyncMode.RESUME)
    client.receive_data(pipe(server), 0.0)
    return server, client


def test_resume_accepts_a_first_batch_that_straddles_our_revision() -> None:
    server, client = resumed_client(11)
    assert client.synced
    server.send_frames([codec.encode(Delta(10, 12, [], D)), codec.encode(Progress(12, 13, D))])
    client.receive_data(pipe(server), 1.0)
    assert client.revision == 13


def test_resume_still_rejects_gaps_after_the_first_batch() -> None:
    server, client = resumed_client(11)
    server.send_frames([codec.encode(Delta(11, 12, [], D)), codec.encode(Delta(10, 14, [], D))])
    with pytest.raises(MalformedMessage, match="gap"):
        client.receive_data(pipe(server), 1.0)


def test_resume_rejects_a_first_batch_that_starts_after_our_revision() -> None:
    server, client = resumed_client(11)
    server.send_frames([codec.encode(Delta(12, 13, [], D))])
    with pytest.raises(MalformedMessage, match="gap"):
        client.receive_data(pipe(server), 1.0)


def test_a_pong_gives_the_round_trip_of_the_latest_ping_even_after_other_frames() -> None:
    limits = Limits(ping_interval=5, idle_timeout=60)
    server = ServerConnection(server_id="s", now=0.0, limits=limits)
    client = ClientConnection(node="n", now=0.0, limits=limits)
    server.receive_data(pipe(client), 0.0)
    server.accept()
    client.receive_data(pipe(server), 0.0)
    server.handle_timer(10.0)  # ping sent at 10.0
    ping = pipe(server)
    client.receive_data(ping, 10.2)
    pong = pipe(client)
    # Something else from the client arrives first: not a round trip.
    server.receive_data(codec.encode(Ping(99)), 10.3)
    assert server.take_rtt() is None
    server.receive_data(pong, 10.4)
    assert server.take_rtt() == pytest.approx(0.4)
    assert server.take_rtt() is None  # taken once
    # A stray pong (no ping outstanding) is not a sample.
    server.receive_data(pong, 11.0)
    assert server.take_rtt() is None


def test_applied_reports_reach_the_server_highest_first_and_once() -> None:
    server, client = handshake()
    assert client.send_applied(5)
    assert client.send_applied(9)
    assert client.send_applied(7)  # crossed on the wire with 9: 9 stands
    msgs = server.receive_data(pipe(client), 0.0)
    assert msgs == [Applied(5), Applied(9), Applied(7)]
    assert server.take_applied() == 9
    assert server.take_applied() is None  # nothing new since
    assert server.applied_revision == 9


def test_applied_is_not_sent_to_a_server_without_the_capability() -> None:
    old = ServerConnection(server_id="s", now=0.0, caps=frozenset({"zstd"}))
    client = ClientConnection(node="n", now=0.0)
    old.receive_data(pipe(client), 0.0)
    old.accept()
    client.receive_data(pipe(old), 0.0)
    assert CAP_APPLIED not in client.caps
    assert client.send_applied(3) is False
    assert pipe(client) == b""


def test_applied_without_the_capability_is_a_protocol_error() -> None:
    old = ServerConnection(server_id="s", now=0.0, caps=frozenset({"zstd"}))
    old.receive_data(pipe(ClientConnection(node="n", now=0.0)), 0.0)
    old.accept()
    with pytest.raises(MalformedMessage, match="APPLIED without the capability"):
        old.receive_data(codec.encode(Applied(3)), 0.0)
    assert old.close_reason is CloseReason.MALFORMED


def test_applied_from_the_server_is_refused_by_the_client() -> None:
    _, client = handshake()
    with pytest.raises(MalformedMessage):
        client.receive_data(codec.encode(Applied(3)), 0.0)


def test_applied_before_the_handshake_is_refused() -> None:
    client = ClientConnection(node="n", now=0.0)
    assert client.send_applied(1) is False  # not open yet
    server = ServerConnection(server_id="s", now=0.0)
    with pytest.raises(HandshakeError):
        server.receive_data(codec.encode(Applied(1)), 0.0)


def test_the_reporting_interval_goes_only_to_clients_that_report() -> None:
    server = ServerConnection(server_id="s", now=0.0)
    client = ClientConnection(node="n", now=0.0)
    server.receive_data(pipe(client), 0.0)
    server.accept(applied_interval_ms=1500)
    (hello,) = client.receive_data(pipe(server), 0.0)
    assert isinstance(hello, ServerHello)
    assert hello.applied_interval_ms == 1500

    server = ServerConnection(server_id="s", now=0.0)
    old_client = ClientConnection(node="n", now=0.0, caps=frozenset({"zstd"}))
    server.receive_data(pipe(old_client), 0.0)
    server.accept(applied_interval_ms=1500)
    (hello,) = old_client.receive_data(pipe(server), 0.0)
    assert isinstance(hello, ServerHello)
    assert hello.applied_interval_ms == 0


def test_the_server_may_change_the_reporting_interval_of_a_client_that_reports() -> None:
    server, client = handshake()
    frame = codec.encode(AppliedInterval(2000))
    assert server.send_applied_interval(frame)
    (msg,) = client.receive_data(pipe(server), 0.0)
    assert msg == AppliedInterval(2000)
    assert client.applied_interval_ms == 2000


def test_applied_interval_needs_the_capability_on_both_sides() -> None:
    server = ServerConnection(server_id="s", now=0.0)
    old_client = ClientConnection(node="n", now=0.0, caps=frozenset({"zstd"}))
    server.receive_data(pipe(old_client), 0.0)
    server.accept()
    old_client.receive_data(pipe(server), 0.0)
    assert server.send_applied_interval(codec.encode(AppliedInterval(2000))) is False
    assert pipe(server) == b""
    with pytest.raises(MalformedMessage, match="APPLIED_INTERVAL without the capability"):
        old_client.receive_data(codec.encode(AppliedInterval(2000)), 0.0)


@settings(max_examples=300)
@given(
    start=st.floats(min_value=0.0, max_value=1e7, allow_nan=False),
    ping=st.floats(min_value=0.1, max_value=100.0),
    pong=st.floats(min_value=0.1, max_value=100.0),
)
def test_a_timer_run_at_its_deadline_always_acts(start: float, ping: float, pong: float) -> None:
    # The server's timer loop runs a connection at exactly next_deadline();
    # a deadline that is due but does nothing is due again at once, forever
    # (start 510.607: 510.607 + 10 - 510.607 < 10).  Each run must either
    # move the deadline on or end the connection.
    limits = Limits(ping_interval=ping, pong_timeout=pong, idle_timeout=ping + pong + 1)
    for conn in (
        ServerConnection(server_id="s", now=start, limits=limits),
        ClientConnection(node="n", now=start, limits=limits),
    ):
        for _ in range(10):
            deadline = conn.next_deadline()
            if deadline is None:
                break
            try:
                conn.handle_timer(deadline)
            except ConnectionTimeout:
                break
            after = conn.next_deadline()
            assert after is None or after > deadline
        assert conn.state is State.CLOSED


def test_the_float_case_that_froze_a_server() -> None:
    limits = Limits(ping_interval=10, handshake_timeout=60)
    server = ServerConnection(server_id="s", now=510.607, limits=limits)
    server.handle_timer(server.next_deadline() or 0.0)
    assert isinstance(codec.decode(next(iter(_frames(pipe(server))))), Ping)


STREAM_SAMPLES = {
    SnapshotChunk: SnapshotChunk(10, [("k", b"{}")]),
    SnapshotEnd: SnapshotEnd(10, 1, D),
    Delta: Delta(10, 11, [], D),
    Progress: Progress(10, 11, D),
}


@pytest.mark.parametrize("phase", [StreamPhase.SNAPSHOT, StreamPhase.SYNCED])
@pytest.mark.parametrize("cls", list(STREAM_SAMPLES), ids=lambda c: c.__name__)
def test_a_stream_message_is_taken_exactly_where_the_table_says(
    phase: StreamPhase, cls: type[Message]
) -> None:
    server, client = handshake()
    assert client.phase is StreamPhase.SNAPSHOT
    if phase is StreamPhase.SYNCED:
        server.send_frames([codec.encode(SnapshotEnd(10, 0, D))])
        client.receive_data(pipe(server), 1.0)
        assert client.phase is StreamPhase.SYNCED
    server.send_frames([codec.encode(STREAM_SAMPLES[cls])])
    if (phase, cls) in STREAM_TRANSITIONS:
        client.receive_data(pipe(server), 2.0)
        assert client.phase is STREAM_TRANSITIONS[phase, cls]
    else:
        with pytest.raises(MalformedMessage, match=r"outside a snapshot|before the snapshot"):
            client.receive_data(pipe(server), 2.0)
        assert client.state is State.CLOSED
