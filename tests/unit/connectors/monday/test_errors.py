"""The error table, one test per row: monday's reply shapes in, the right error class out."""

from __future__ import annotations

from typing import Any

import pytest

from crmsync.connectors.monday.errors import ERROR_TABLE, error_class, error_from_reply, parse_errors
from crmsync.errors import BudgetExhausted, CrmsyncError, Fatal, FixTheData, RetryLater

URL = "https://api.monday.com/v2"


def reply_for(status: int | None, code: str | None) -> tuple[int, dict[str, Any]]:
    """A reply monday could send for one table row."""
    if code is None:
        return int(status or 500), {"errors": [{"message": "Error", "extensions": {"status_code": status}}]}
    if code == "ComplexityException":
        message = (
            "Complexity budget exhausted, query cost 30001 budget remaining 19986 out of 1000000 "
            "reset in 3 seconds"
        )
        return 429, {"error_code": code, "status_code": 429, "error_message": message, "errors": [message]}
    body = {"errors": [{"message": f"{code} happened", "extensions": {"code": code}}], "account_id": 1}
    return int(status or 200), body


@pytest.mark.parametrize(("row", "expected"), sorted(ERROR_TABLE.items(), key=str), ids=str)
def test_every_row_of_the_table(row: tuple[int | None, str | None], expected: type[CrmsyncError]) -> None:
    status, body = reply_for(*row)
    error = error_from_reply(status, body, url=URL)
    assert type(error) is expected
    assert error.url == URL and error.status == status
    if row[1] is not None:
        assert error.vendor_code == row[1]


@pytest.mark.parametrize(
    ("body", "headers", "wait"),
    [
        (  # 2025-07 and later
            {
                "errors": [
                    {
                        "message": "Complexity budget exhausted",
                        "extensions": {"code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": 42},
                    }
                ]
            },
            {"Retry-After": "42"},
            42.0,
        ),
        (  # 2025-01/04
            {
                "errors": [
                    {
                        "message": "Complexity budget exhausted",
                        "extensions": {
                            "code": "COMPLEXITY_BUDGET_EXHAUSTED",
                            "retry_in_seconds": 17,
                            "complexity": 30001,
                            "complexity_budget_left": 100,
                            "complexity_budget_limit": 1000000,
                            "status_code": 429,
                        },
                    }
                ]
            },
            {},
            17.0,
        ),
        (  # legacy
            {
                "error_code": "ComplexityException",
                "status_code": 429,
                "error_message": "Complexity budget exhausted, query cost 30001 budget remaining 19986 "
                "out of 1000000 reset in 3 seconds",
                "errors": ["Complexity budget exhausted, ... reset in 3 seconds"],
            },
            {},
            3.0,
        ),
    ],
    ids=["2025-07", "2025-01", "legacy"],
)
def test_all_three_complexity_shapes(body: dict[str, Any], headers: dict[str, str], wait: float) -> None:
    error = error_from_reply(429, body, {k.lower(): v for k, v in headers.items()}, url=URL)
    assert isinstance(error, BudgetExhausted)
    assert error.retry_after == wait
    assert error.vendor_code in ("COMPLEXITY_BUDGET_EXHAUSTED", "ComplexityException")


def test_retry_after_header_when_the_body_has_no_hint() -> None:
    body = {
        "errors": [{"message": "Max concurrency exceeded", "extensions": {"code": "maxConcurrencyExceeded"}}]
    }
    error = error_from_reply(429, body, {"retry-after": "10"}, url=URL)
    assert isinstance(error, RetryLater) and error.retry_after == 10.0


def test_unknown_codes_fall_back_on_the_status_family() -> None:
    assert error_class(None, "SomethingNew") is FixTheData  # an application error under HTTP 200
    assert error_class(599, "SomethingNew") is RetryLater
    assert error_class(403, "SomethingNew") is Fatal
    assert error_class(418, None) is FixTheData


def test_a_body_that_is_not_json_still_explains_itself() -> None:
    error = error_from_reply(502, None, url=URL, text="<html>Bad gateway</html>")
    assert isinstance(error, RetryLater) and "Bad gateway" in error.message


def test_partial_errors_keep_their_alias_path_and_data() -> None:
    body = {
        "data": {"w0_0": {"id": "1"}, "w1_0": None},
        "errors": [
            {
                "message": "invalid value",
                "path": ["w1_0"],
                "extensions": {
                    "code": "ColumnValueException",
                    "error_data": {"column_type": "color", "column_value": '{"label":"x"}'},
                },
            }
        ],
    }
    [error] = parse_errors(body)
    assert error.path == ("w1_0",) and error.code == "ColumnValueException"
    assert error.data == {"column_type": "color", "column_value": '{"label":"x"}'}


def test_the_most_urgent_error_decides_a_whole_reply() -> None:
    body = {
        "errors": [
            {"message": "bad value", "extensions": {"code": "ColumnValueException"}},
            {"message": "blocked", "extensions": {"code": "API_TEMPORARILY_BLOCKED"}},
        ]
    }
    assert isinstance(error_from_reply(200, body, url=URL), RetryLater)


def test_retry_after_as_an_http_date() -> None:
    import datetime as dt
    from email.utils import format_datetime

    when = format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=45), usegmt=True)
    error = error_from_reply(429, None, {"retry-after": when}, url=URL, text="Too Many Requests")
    assert isinstance(error, RetryLater)
    assert error.retry_after is not None and 35 <= error.retry_after <= 45


def test_retry_after_header_on_a_bare_429_and_a_503() -> None:
    for status in (429, 503):
        error = error_from_reply(status, {"errors": [{"message": "busy"}]}, {"retry-after": "3"}, url=URL)
        assert isinstance(error, RetryLater) and error.retry_after == 3.0


def test_an_absurd_wait_is_clipped_to_a_day() -> None:
    body = {
        "errors": [
            {
                "message": "Rate Limit Exceeded",
                "extensions": {"code": "RATE_LIMIT_EXCEEDED", "retry_in_seconds": 1e20},
            }
        ]
    }
    error = error_from_reply(429, body, {"retry-after": "1e400"}, url=URL)
    assert isinstance(error, BudgetExhausted) and error.retry_after == 86_400.0
