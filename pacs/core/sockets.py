"""Listening TCP sockets for both ports: IPv4 or IPv6 by the bind address, reusable at once."""

from __future__ import annotations

import socket


def listening_socket(bind: str, port: int, *, backlog: int = 128) -> socket.socket:
    """A TCP socket bound to (`bind`, `port`) and listening; closed again if either fails."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
