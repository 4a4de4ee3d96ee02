"""Packet probes run inside a test namespace (`python -m tests.probe ...`):
one ICMP echo, or a TCP connect; exit status 0 if answered within the time.

    python -m tests.probe ping ADDR [TIMEOUT]
    python -m tests.probe connect ADDR PORT [TIMEOUT]
    python -m tests.probe listen PORT SECONDS
    python -m tests.probe echo PORT SECONDS          (echoes every byte back)
    python -m tests.probe stream ADDR PORT SECONDS   (one connection, a byte
        every 20 ms, each echoed within 2 s; prints "sent N echoed M")
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(addr: str, timeout: float) -> bool:
    """One ICMP (ICMPv6 for an IPv6 address) echo request; True if the reply
    comes back in time.  The kernel fills in an ICMPv6 checksum itself."""
    v6 = ":" in addr
    ident = os.getpid() & 0xFFFF
    request, reply = (128, 129) if v6 else (8, 0)
    payload = b"typha-probe"
    header = struct.pack("!BBHHH", request, 0, 0, ident, 1)
    checksum = 0 if v6 else _checksum(header + payload)
    packet = struct.pack("!BBHHH", request, 0, checksum, ident, 1) + payload
    family, proto = (
        (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    )
    with socket.socket(family, socket.SOCK_RAW, proto) as s:
        s.settimeout(timeout)
        s.sendto(packet, (addr, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(2048)
            except TimeoutError:
                return False
            start = 0 if v6 else (data[0] & 0x0F) * 4  # IPv4 raw sockets see the IP header
            kind, _, _, rid, _ = struct.unpack("!BBHHH", data[start : start + 8])
            if kind == reply and rid == ident:
                return True
    return False


def connect(addr: str, port: int, timeout: float) -> bool:
    """A TCP connect; True if it is accepted in time."""
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def listen(port: int, seconds: float) -> None:
    """Accept connections on every address for `seconds`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(16)
        s.settimeout(0.2)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                conn, _ = s.accept()
                conn.close()
            except TimeoutError:
                continue


def echo(port: int, seconds: float) -> None:
    """Echo every byte of one connection back, for `seconds`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(1)
        s.settimeout(seconds)
        conn, _ = s.accept()
        with conn:
            conn.settimeout(seconds)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)


def stream(addr: str, port: int, seconds: float) -> tuple[int, int]:
    """Send one byte every 20 ms over one connection for `seconds`; returns
    (sent, echoed).  A byte not echoed within 2 s ends the stream."""
    sent = echoed = 0
    with _connect_when_listening(addr, port) as s:
        s.settimeout(2)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s.sendall(b"x")
            sent += 1
            try:
                if s.recv(1) == b"x":
                    echoed += 1
                else:
                    break
            except TimeoutError:
                break
            time.sleep(0.02)
    return sent, echoed


def _connect_when_listening(addr: str, port: int, within: float = 5.0) -> socket.socket:
    """Connect, retrying while the other side is not listening yet."""
    deadline = time.monotonic() + within
    while True:
        try:
            return socket.create_connection((addr, port), timeout=2)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def udp_recv(port: int, seconds: float) -> None:
    """Print `<source address> <payload>` for each datagram to `port` (both
    families) until one says `end` (not printed), or `seconds` have passed."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        print("ready", flush=True)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, peer = s.recvfrom(512)
            except TimeoutError:
                break
            if data == b"end":
                break
            print(peer[0].removeprefix("::ffff:"), data.decode(errors="replace"), flush=True)


def udp_send(src: str, dst: str, port: int, payload: str, count: int) -> None:
    """Send `count` datagrams from `src` (an address of this namespace) to
    `dst`, 50 ms apart."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        for _ in range(count):
            s.sendto(payload.encode(), (dst, port))
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    """Entry point; the exit status says whether the probe was answered."""
    cmd = argv[0]
    if cmd == "ping":
        return 0 if ping(argv[1], float(argv[2]) if len(argv) > 2 else 1.0) else 1
    if cmd == "connect":
        return 0 if connect(argv[1], int(argv[2]), float(argv[3]) if len(argv) > 3 else 1.0) else 1
    if cmd == "listen":
        listen(int(argv[1]), float(argv[2]))
        return 0
    if cmd == "echo":
        echo(int(argv[1]), float(argv[2]))
        return 0
    if cmd == "udp-recv":
        udp_recv(int(argv[1]), float(argv[2]))
        return 0
    if cmd == "udp-send":
        udp_send(argv[1], argv[2], int(argv[3]), argv[4], int(argv[5]))
        return 0
    if cmd == "stream":
        sent, echoed = stream(argv[1], int(argv[2]), float(argv[3]))
        print(f"sent {sent} echoed {echoed}")
        return 0 if sent == echoed and sent > 0 else 1
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
