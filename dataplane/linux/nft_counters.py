"""Reading a table's named counters in one netlink dump.

libnftables lists counters only after loading its whole cache of the
ruleset (every rule of every chain): 165 ms for one counter next to 10,000
rules (loadtest.scrape_cost).  The kernel answers a dump of one table's
counter objects (NFT_MSG_GETOBJ, filtered by table and type) with those
objects alone, so a scrape costs what the counters cost, not the rules.
Call from a thread in the namespace to read (the driver's kernel thread).
"""

from __future__ import annotations

import os
import socket
import struct

from dataplane.errors import DataplaneError
from dataplane.policy_counters import Reading

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWOBJ, NFT_MSG_GETOBJ = 18, 19  # a dump answers with NEWOBJ messages
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFPROTO_INET = 1
NFTA_OBJ_TABLE, NFTA_OBJ_NAME, NFTA_OBJ_TYPE, NFTA_OBJ_DATA = 1, 2, 3, 4
NFT_OBJECT_COUNTER = 1
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
NLA_TYPE_MASK = 0x3FFF
_HDR = struct.Struct("=IHHII")  # nlmsghdr
_NFGEN = struct.Struct("=BBH")  # nfgenmsg (res_id big-endian, 0 here)
_NLA = struct.Struct("=HH")
_U64 = struct.Struct(">Q")


def _attr(kind: int, payload: bytes) -> bytes:
    raw = _NLA.pack(_NLA.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def request(table: str, seq: int = 1) -> bytes:
    """The dump request for `table`'s (family inet) counter objects."""
    body = _NFGEN.pack(NFPROTO_INET, 0, 0)
    body += _attr(NFTA_OBJ_TABLE, table.encode() + b"\0")
    body += _attr(NFTA_OBJ_TYPE, struct.pack(">I", NFT_OBJECT_COUNTER))
    kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ
    return _HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _counter(data: bytes, start: int, end: int) -> tuple[str, Reading] | None:
    """One counter object's name and totals from its attributes (a plain
    loop: this runs once per counter per scrape)."""
    unpack = _NLA.unpack_from
    name: str | None = None
    packets = nbytes = 0
    while start + 4 <= end:
        length, kind = unpack(data, start)
        if length < 4:
            return None
        kind &= NLA_TYPE_MASK
        if kind == NFTA_OBJ_NAME:
            name = data[start + 4 : start + length].rstrip(b"\0").decode()
        elif kind == NFTA_OBJ_DATA:
            pos, stop = start + 4, start + length
            while pos + 12 <= stop:
                sub_len, sub = unpack(data, pos)
                if sub_len < 4:
                    break
                sub &= NLA_TYPE_MASK
                if sub == NFTA_COUNTER_PACKETS:
                    packets = _U64.unpack_from(data, pos + 4)[0]
                elif sub == NFTA_COUNTER_BYTES:
                    nbytes = _U64.unpack_from(data, pos + 4)[0]
                pos += (sub_len + 3) & ~3
        start += (length + 3) & ~3
    return None if name is None else (name, Reading(packets, nbytes))


def parse(data: bytes, out: dict[str, Reading]) -> bool:
    """Add the counters in one received buffer to `out`; True once the dump
    is done.  Raises DataplaneError for an error message."""
    pos = 0
    newobj = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ
    body = _HDR.size + _NFGEN.size
    while pos + _HDR.size <= len(data):
        length, kind, _, _, _ = _HDR.unpack_from(data, pos)
        if length < _HDR.size:
            raise DataplaneError("a malformed netlink message")
        if kind == NLMSG_DONE:
            return True
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, pos + _HDR.size)
            if code:
                raise DataplaneError(f"reading counters: {os.strerror(-code)}")
        elif kind == newobj:
            found = _counter(data, pos + body, pos + length)
            if found is not None:
                out[found[0]] = found[1]
        pos += (length + 3) & ~3
    return False


def read_counters(table: str) -> dict[str, Reading]:
    """Every counter object of inet table `table` in this thread's network
    namespace, by name.  Raises DataplaneError (no such table, no
    permission)."""
    out: dict[str, Reading] = {}
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.settimeout(10)
            s.bind((0, 0))
            s.send(request(table))
            while not parse(s.recv(1 << 20), out):
                pass
    except OSError as exc:
        raise DataplaneError(f"reading counters: {exc}") from None
    return out
