"""Listening sockets bound by the process itself."""

from __future__ import annotations

import os
import socket

import pytest

from runtime.sockets import listening_socket


def test_port_zero_gives_a_listening_non_blocking_socket_on_a_free_port() -> None:
    sock = listening_socket("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1"
        assert port > 0
        assert not sock.getblocking()
        with socket.create_connection((host, port), timeout=5):
            pass  # the kernel completes the handshake: it is listening
    finally:
        sock.close()


def test_a_port_in_use_raises_and_leaves_no_socket_open() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    fds = set(os.listdir("/proc/self/fd"))
    try:
        with pytest.raises(OSError, match="in use"):
            listening_socket("127.0.0.1", holder.getsockname()[1])
        assert set(os.listdir("/proc/self/fd")) == fds  # the failed socket was closed
    finally:
        holder.close()
