from __future__ import annotations

import pytest

from syncproto import HEADER_SIZE, Codec, FrameDecoder, MsgType, encode_frame
from syncproto.errors import FrameTooLarge, MalformedMessage
from syncproto.messages import KNOWN_TYPES


def test_header_layout_is_as_documented() -> None:
    f = encode_frame(MsgType.DELTA, b"abc", revision=0x0102030405060708, flags=1)
    assert len(f) == HEADER_SIZE + 3 == 19
    assert f[:4] == b"\0\0\0\x03"  # body length
    assert f[4] == 5
    assert f[5] == 1
    assert f[6:8] == b"\0\0"
    assert f[8:16] == bytes(range(1, 9))
    assert f[16:] == b"abc"


def test_frames_split_at_every_byte_boundary() -> None:
    stream = b"".join(encode_frame(MsgType.PING, bytes([i]) * i, revision=i) for i in range(1, 6))
    for cut in range(len(stream) + 1):
        dec = FrameDecoder(max_frame=100)
        frames = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert [(f.revision, f.body) for f in frames] == [(i, bytes([i]) * i) for i in range(1, 6)]
        assert dec.buffered == 0


def test_oversized_length_rejected_from_the_header_alone() -> None:
    dec = FrameDecoder(max_frame=1024)
    header = encode_frame(MsgType.DELTA, b"x" * 2000)[:HEADER_SIZE]
    with pytest.raises(FrameTooLarge):
        dec.feed(header)  # no body bytes needed to reject it


def test_unknown_type_and_flags_rejected() -> None:
    with pytest.raises(MalformedMessage, match="unknown message type 99"):
        FrameDecoder(known_types=KNOWN_TYPES).feed(b"\0\0\0\0" + bytes([99, 0, 0, 0]) + bytes(8))
    # Without a list of types the framing passes it on; the codec refuses it.
    (frame,) = FrameDecoder().feed(b"\0\0\0\0" + bytes([99, 0, 0, 0]) + bytes(8))
    with pytest.raises(MalformedMessage, match="unknown message type 99"):
        Codec(max_frame=1024).decode(frame)
    with pytest.raises(MalformedMessage):
        FrameDecoder().feed(b"\0\0\0\0" + bytes([5, 0x80, 0, 0]) + bytes(8))
