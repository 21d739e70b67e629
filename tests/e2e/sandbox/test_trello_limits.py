"""Trello's rate limits over HTTP (the default 100 per token and 300 per key per 10 s), the headers
on every response, the key lock-out, and the emulator's throughput."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from crmsync.sandbox.runner import serve
from crmsync.sandbox.trello import TrelloEmulator

TOKEN_LIMIT = {"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}
KEY_LIMIT = {"error": "API_KEY_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}


@pytest.fixture
def emulator() -> Iterator[TrelloEmulator]:
    emu = TrelloEmulator()  # the real limits: 100 per token, 300 per key, in 10 s windows
    emu.seed("demo")
    with serve(emu):
        yield emu


def client(emulator: TrelloEmulator, token: str | None = None) -> httpx.Client:
    auth = {"key": emulator.key, "token": token or emulator.token}
    return httpx.Client(base_url=emulator.base_url + "/1", params=auth)


def test_the_101st_request_of_a_token_gets_429(emulator: TrelloEmulator) -> None:
    board = emulator.board_id("Delivery")
    with client(emulator) as api:
        for n in range(100):
            reply = api.get(f"/boards/{board}")
            assert reply.status_code == 200
            assert reply.headers["x-rate-limit-api-token-remaining"] == str(99 - n)
        assert reply.headers["x-rate-limit-api-token-max"] == "100"
        assert reply.headers["x-rate-limit-api-token-interval-ms"] == "10000"
        assert reply.headers["x-rate-limit-api-key-max"] == "300"
        assert reply.headers["x-rate-limit-api-key-remaining"] == "200"
        refused = api.get(f"/boards/{board}")
        assert refused.status_code == 429 and refused.json() == TOKEN_LIMIT
        assert refused.headers["x-rate-limit-api-token-remaining"] == "0"
        # errors carry the headers too
        assert "x-rate-limit-api-key-remaining" in api.get("/cards/nope").headers
    other = emulator.add_token()
    with client(emulator, other) as api:  # another token of the same key still has its own budget
        assert api.get(f"/boards/{board}").status_code == 200


def test_the_key_limit_sums_its_tokens(emulator: TrelloEmulator) -> None:
    tokens = [emulator.token, emulator.add_token(), emulator.add_token()]
    for token in tokens:
        with client(emulator, token) as api:
            assert all(api.get("/members/me").status_code == 200 for _ in range(100))
    with client(emulator, emulator.add_token()) as api:
        refused = api.get("/members/me")
        assert refused.status_code == 429 and refused.json() == KEY_LIMIT
        assert refused.headers["x-rate-limit-api-key-remaining"] == "0"


def test_hammering_locks_the_key_for_the_window() -> None:
    emu = TrelloEmulator(token_limit=1)
    with serve(emu):
        with client(emu) as api:
            assert api.get("/members/me").status_code == 200
            bodies = [api.get("/members/me").json() for _ in range(201)]
            assert all(b == TOKEN_LIMIT for b in bodies)  # the 201st refusal is more than 200
            assert api.get("/members/me").json() == KEY_LIMIT
        with client(emu, emu.add_token()) as fresh:  # even a fresh token of that key is refused now
            assert fresh.get("/members/me").json() == KEY_LIMIT


def test_windows_roll_over() -> None:
    emu = TrelloEmulator(token_limit=2, window_seconds=0.3)
    with serve(emu), client(emu) as api:
        assert [api.get("/members/me").status_code for _ in range(3)] == [200, 200, 429]
        deadline = time.monotonic() + 5
        while api.get("/members/me").status_code == 429:
            assert time.monotonic() < deadline
        assert api.get("/members/me").status_code == 200
