"""The agent wire protocol: framing, messages and the sans-I/O connection core."""

from typha.protocol.connection import CLIENT_CAPS, SERVER_CAPS, ClientConnection, Limits, ServerConnection, State
from typha.protocol.frames import DEFAULT_MAX_FRAME, HEADER_SIZE, Frame, FrameDecoder, MsgType, encode_frame
from typha.protocol.messages import (
    CAP_RESUME,
    CAP_ZSTD,
    PROTOCOL_VERSION,
    ClientHello,
    Codec,
    Delta,
    Goodbye,
    Message,
    Ping,
    Pong,
    Progress,
    ServerHello,
    SnapshotChunk,
    SnapshotEnd,
)

__all__ = [
    "CAP_RESUME",
    "CAP_ZSTD",
    "CLIENT_CAPS",
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "Limits",
    "PROTOCOL_VERSION",
    "ClientConnection",
    "ClientHello",
    "Codec",
    "Delta",
    "Frame",
    "FrameDecoder",
    "Goodbye",
    "Message",
    "MsgType",
    "Ping",
    "Pong",
    "Progress",
    "ServerConnection",
    "ServerHello",
    "SnapshotChunk",
    "SnapshotEnd",
    "State",
    "encode_frame",
]
