"""Whatever bytes arrive, the core raises only its own ProtocolError and never
buffers more than one header plus the frame limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncproto import (
    HEADER_SIZE,
    ClientConnection,
    ClientHello,
    Codec,
    Delta,
    Limits,
    MsgType,
    ServerConnection,
    ServerHello,
    SnapshotEnd,
    encode_frame,
)
from syncproto.errors import ProtocolError

LIMITS = Limits(max_frame=4096)
D = "0" * 32

# Chunks that are partly valid frames, partly garbage, so the fuzzer gets past the header.
valid = Codec(max_frame=4096)
chunk = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda t, b: encode_frame(t, b), st.sampled_from(list(MsgType)), st.binary(max_size=40)
    ),
    st.just(valid.encode(ServerHello(server="s", caps=frozenset({"zstd"}), max_frame=4096))),
    st.just(valid.encode(ClientHello(node="n"))),
    st.just(valid.encode(SnapshotEnd(1, 0, D))),
    st.just(valid.encode(Delta(1, 2, [("k", b"{}")], D))),
)


def feed(core: ServerConnection | ClientConnection, chunks: list[bytes]) -> None:
    for c in chunks:
        try:
            core.receive_data(c, 0.0)
        except ProtocolError:
            return
        assert core.buffered_bytes <= HEADER_SIZE + LIMITS.max_frame


@settings(max_examples=300, deadline=None)
@given(st.lists(chunk, max_size=12))
def test_server_core_fuzz(chunks: list[bytes]) -> None:
    feed(ServerConnection(server_id="s", now=0.0, limits=LIMITS), chunks)


@settings(max_examples=300, deadline=None)
@given(st.lists(chunk, max_size=12))
def test_client_core_fuzz(chunks: list[bytes]) -> None:
    feed(ClientConnection(node="n", now=0.0, limits=LIMITS), chunks)
