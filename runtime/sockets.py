"""Listening sockets the processes bind themselves (so that port 0 works and
the port actually bound can be logged and reported)."""

from __future__ import annotations

import socket


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A non-blocking TCP socket listening on host:port (IPv6 when the host
    has a colon).  Raises OSError, having closed the socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
