"""The wire protocol core shared by the server, the client and the load-test users:
framing, messages, vocabularies and the sans-I/O connection state machines.
No sockets, no event loop, no clock: callers pass `now`."""

from syncproto.connection import (
    CLIENT_CAPS,
    SERVER_CAPS,
    ClientConnection,
    Limits,
    ServerConnection,
    State,
)
from syncproto.frames import (
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    Frame,
    FrameDecoder,
    MsgType,
    encode_frame,
)
from syncproto.messages import (
    CAP_DATASTORE_STATUS,
    CAP_RESUME,
    CAP_ZSTD,
    PROTOCOL_VERSION,
    ClientHello,
    Codec,
    DatastoreStatusMsg,
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
from syncproto.vocabulary import CloseReason, DatastoreStatus, SyncMode

__all__ = [
    "CAP_DATASTORE_STATUS",
    "CAP_RESUME",
    "CAP_ZSTD",
    "CLIENT_CAPS",
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "SERVER_CAPS",
    "ClientConnection",
    "ClientHello",
    "CloseReason",
    "Codec",
    "DatastoreStatus",
    "DatastoreStatusMsg",
    "Delta",
    "Frame",
    "FrameDecoder",
    "Goodbye",
    "Limits",
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
    "SyncMode",
    "encode_frame",
]
