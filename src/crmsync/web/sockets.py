"""The listening socket every crmsync server (the web app, the sandbox emulators) is served on."""

from __future__ import annotations

import socket

#: connections the kernel queues before the server accepts them (uvicorn's default)
BACKLOG = 2048


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0 picks a free one) and listening, ready to hand to uvicorn."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without it h11's separate header/body writes meet
    # delayed ACKs and every keep-alive request takes ~40 ms
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        # listening from now on: a client told the address (crmsync run prints it) is queued until
        # the server takes it, not refused while the process finishes starting
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock
