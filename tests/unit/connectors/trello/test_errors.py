"""Trello's error replies, plain text and JSON, sorted by the error table: one case per row."""

from __future__ import annotations

import json

import pytest

from crmsync.connectors.trello.errors import ERROR_TABLE, error_class, make_error, read_body
from crmsync.errors import BudgetExhausted, CallbackUnreachable, Fatal, FixTheData, RetryLater

#: (status, body as Trello sends it, class): one per row of ERROR_TABLE, in its order
CASES = [
    (429, '{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}', BudgetExhausted),
    (429, '{"error":"API_KEY_LIMIT_EXCEEDED","message":"Rate limit exceeded"}', BudgetExhausted),
    (429, '{"error":"API_TOKEN_DB_LIMIT_EXCEEDED","message":"too many expensive requests"}', BudgetExhausted),
    (429, '{"message":"Exceeded rate limit to /1/member","error":"RATE_LIMIT_EXCEEDED"}', BudgetExhausted),
    (400, '{"error":"API_TOO_MANY_CARDS_REQUESTED","message":"too many cards"}', Fatal),
    (429, "Too Many Requests", BudgetExhausted),
    (400, "invalid id", FixTheData),
    (400, "invalid value for idList", FixTheData),
    (400, "member is already on the card", FixTheData),
    (400, "A webhook with that callback, model, and token already exists", FixTheData),
    (404, "The requested resource was not found.", FixTheData),
    (400, "URL (https://x.example/hook) did not return 200 status code, got 405", CallbackUnreachable),
    (401, "invalid key", Fatal),
    (401, "invalid token", Fatal),
    (401, "unauthorized token", Fatal),
    (401, "unauthorized permission requested", Fatal),
    (401, "unauthorized card permission requested", Fatal),
    (401, "webhook does not belong to token", Fatal),
    (404, "Cannot GET /1/cardz/abc", Fatal),
    (500, "Internal Server Error", RetryLater),
    (502, "<html>Bad Gateway</html>", RetryLater),
    (503, "Service Unavailable", RetryLater),
    (504, "", RetryLater),
]


def test_every_row_has_a_case() -> None:
    assert len(CASES) == len(ERROR_TABLE)
    for (status, body, cls), rule in zip(CASES, ERROR_TABLE, strict=True):
        vendor = read_body(status, body.encode())
        assert error_class(vendor.status, vendor.code, vendor.message) is rule.cls is cls, body


@pytest.mark.parametrize(("status", "body", "cls"), CASES)
def test_row(status: int, body: str, cls: type) -> None:
    error = make_error(read_body(status, body.encode()), url="https://api.trello.com/1/cards")
    assert type(error) is cls
    assert error.status == status and error.url == "https://api.trello.com/1/cards"


def test_json_bodies_give_code_and_message() -> None:
    vendor = read_body(429, b'{"error":"API_KEY_LIMIT_EXCEEDED","message":"Rate limit exceeded"}')
    assert (vendor.code, vendor.message) == ("API_KEY_LIMIT_EXCEEDED", "Rate limit exceeded")
    openapi = read_body(400, json.dumps({"code": "BAD", "message": "nope"}))
    assert (openapi.code, openapi.message) == ("BAD", "nope")
    batch_entry = read_body(400, {"message": "invalid id", "statusCode": 400})
    assert (batch_entry.code, batch_entry.message) == (None, "invalid id")


def test_plain_text_keeps_the_message_and_a_quoted_string_is_unwrapped() -> None:
    assert read_body(400, b"invalid id\n").message == "invalid id"
    assert read_body(400, b'"invalid id"').message == "invalid id"
    assert read_body(502, b"").message == "HTTP 502"


def test_a_budget_error_waits_for_the_next_window_or_the_hint() -> None:
    body = b'{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}'
    assert make_error(read_body(429, body)).retry_after == 10.0  # type: ignore[attr-defined]
    hinted = make_error(read_body(429, body), headers={"Retry-After": "3"})
    assert hinted.retry_after == 3.0  # type: ignore[attr-defined]


def test_a_refused_login_says_what_to_check() -> None:
    assert "TRELLO_TOKEN" in str(make_error(read_body(401, b"invalid token")))
    assert "TRELLO_TOKEN" not in str(make_error(read_body(401, b"unauthorized permission requested")))


def test_unknown_statuses_fall_back_to_their_family() -> None:
    assert error_class(507, None, "x") is RetryLater
    assert error_class(403, None, "forbidden") is Fatal
    assert error_class(422, None, "bad") is FixTheData
