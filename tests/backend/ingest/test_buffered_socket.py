"""The consumer's buffered socket: paho's many small reads served from one large recv, with
pending() telling paho's loop to read on, and the socket's own behaviour at the edges."""

from __future__ import annotations

import socket

import pytest

from backend.ingest.service import _BufferedSocket


def test_small_reads_come_from_one_recv_and_pending_counts_what_is_left() -> None:
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        sock = _BufferedSocket(b)
        a.sendall(b"\x30\x05hello\x30\x03abc")
        assert sock.pending() == 0
        assert sock.recv(1) == b"\x30"
        assert sock.pending() == 11  # the rest is already here: paho must not wait in select()
        assert sock.recv(1) == b"\x05"
        assert sock.recv(5) == b"hello"
        assert sock.recv(2) == b"\x30\x03"  # never more than asked
        assert sock.recv(100) == b"abc"  # nor past what arrived
        assert sock.pending() == 0
        with pytest.raises(BlockingIOError):  # nothing buffered, nothing on the wire: paho's "again"
            sock.recv(1)
        a.sendall(b"xy")
        assert sock.recv(5) == b"xy"
        assert sock.fileno() == b.fileno()  # select() and everything else reach the socket
        a.close()
        assert sock.recv(1) == b""  # the peer closed: paho sees the connection lost
    finally:
        a.close()
        b.close()
