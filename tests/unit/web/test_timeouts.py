"""Slow clients cannot hold a connection: headers and bodies have read timeouts in the served app."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from crmsync.service.process import Process

from .conftest import MakeRuntime

CONFIG = """
version: 1
store: {url: "%(store)s"}
web: {host: 127.0.0.1, port: 0, header_timeout_seconds: 0.5, body_timeout_seconds: 0.5}
connections:
  monday: {type: monday, api_url: "http://127.0.0.1:9/v2", token: t}
"""


@pytest.fixture
def served(make_runtime: MakeRuntime) -> Iterator[int]:
    runtime = make_runtime(CONFIG)
    proc = Process(runtime, web=True, workers=0, scheduler=False)
    proc.bind()
    thread = threading.Thread(target=proc.run, daemon=True)
    thread.start()
    port = proc.bound_port
    assert port is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.02)
    try:
        yield port
    finally:
        proc.stop()
        thread.join(10)


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    received = b""
    while True:
        chunk = sock.recv(4096)  # raises TimeoutError if the server keeps the connection open
        if not chunk:
            return received, time.monotonic() - started
        received += chunk


def read_response(sock: socket.socket) -> bytes:
    """One whole response (headers and a Content-Length body), however the server split it up."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_connection_with_partial_headers_is_closed(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"POST /webhooks/monday/monday HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
        received, took = read_until_closed(sock, limit=10)
    assert received == b"" and took < 5


def test_a_request_with_a_partial_body_is_answered_408_and_closed(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(
            b"POST /webhooks/monday/monday HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"event": ['
        )
        received, took = read_until_closed(sock, limit=10)
    assert received.startswith(b"HTTP/1.1 408") and b"request_timeout" in received
    assert took < 5


def test_a_keep_alive_connection_gets_the_header_timeout_again(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the second request stalls
        received, took = read_until_closed(sock, limit=10)
    assert received == b"" and took < 5


def test_prompt_clients_are_served(served: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{served}") as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
