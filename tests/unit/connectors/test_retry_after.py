"""``Retry-After`` in both of its forms, and what is made of values that are neither."""

from __future__ import annotations

import datetime as dt

import pytest

from crmsync.connectors.retry_after import (
    MAX_RETRY_AFTER,
    bounded_wait,
    parse_retry_after,
    retry_after_header,
)

NOW = dt.datetime(2026, 12, 5, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "wait"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("2.5", 2.5),
        ("Sat, 05 Dec 2026 12:01:30 GMT", 90.0),
        ("Saturday, 05-Dec-26 12:00:10 GMT", 10.0),  # the obsolete RFC 850 form
        ("Sat, 05 Dec 2026 11:00:00 GMT", 0.0),  # a date in the past: now
        ("99999999999999999999", MAX_RETRY_AFTER),  # clipped, never an overflow later
        ("soon", None),
        ("-5", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, wait: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == wait


def test_the_header_name_is_case_insensitive() -> None:
    assert retry_after_header({"RETRY-AFTER": "4"}) == 4.0
    assert retry_after_header({"retry-after": "4"}) == 4.0
    assert retry_after_header({}) is None and retry_after_header(None) is None


def test_bounded_wait() -> None:
    assert bounded_wait(float("nan")) is None and bounded_wait(float("inf")) is None
    assert bounded_wait(-1.0) == 0.0 and bounded_wait(1e20) == MAX_RETRY_AFTER
