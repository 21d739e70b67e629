"""Field limits from a describe: what each target field can hold, fetched once in the background."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from crmsync.engine.limits import DescribedLimits, FieldLimit, from_describe, generic_problem
from crmsync.errors import RetryLater

DESCRIBE = {
    "fields": [
        {"name": "Name", "type": "string", "length": 80},
        {"name": "Amount", "type": "currency", "precision": 18, "scale": 2},
        {"name": "Employees", "type": "int", "digits": 8, "precision": 0},
        {"name": "Seats", "type": "int", "digits": 0, "precision": 4},
        {"name": "Done", "type": "boolean"},
        {"name": "Address", "type": "address"},
        {"bad": "entry"},
    ]
}


def test_limits_are_read_from_the_describe() -> None:
    limits = from_describe(DESCRIBE)
    assert limits == {
        "Name": FieldLimit("Name", "text", length=80),
        "Amount": FieldLimit("Amount", "decimal", precision=18, scale=2),
        "Employees": FieldLimit("Employees", "integer", precision=8),
        "Seats": FieldLimit("Seats", "integer", precision=4),
    }


def test_each_limit_names_what_does_not_fit() -> None:
    limits = from_describe(DESCRIBE)
    assert limits["Name"].problem("x" * 80) is None
    assert limits["Name"].problem("x" * 81) == "81 characters long; Name holds at most 80"
    assert limits["Amount"].problem(10**15) is None
    assert "at most 16 digit(s)" in str(limits["Amount"].problem(10**16))
    assert "not a number" in str(limits["Amount"].problem("lots"))
    assert "yes/no" in str(limits["Amount"].problem(True))
    assert limits["Employees"].problem(99_999_999) is None
    assert "at most 8 digit(s)" in str(limits["Employees"].problem(100_000_000))
    assert "not a whole number" in str(limits["Seats"].problem(1.5))
    assert all(limit.problem(None) is None for limit in limits.values())


def test_generic_bounds_hold_without_a_describe() -> None:
    assert generic_problem("x" * 131_072) is None
    assert generic_problem("x" * 131_073) == "131,073 characters long; at most 131,072 allowed"
    assert "digits" in str(generic_problem(10**40))
    assert generic_problem(1.5) is None and generic_problem(True) is None


def test_a_describe_is_fetched_once_in_the_background_and_retried_after_a_failure() -> None:
    calls: list[tuple[str, str]] = []
    release = threading.Event()

    def fetch(connection: str, object_name: str) -> dict[str, Any]:
        calls.append((connection, object_name))
        release.wait(10)
        if len(calls) == 1:
            raise RetryLater("down")
        return DESCRIBE

    with ThreadPoolExecutor(1) as pool:
        limits = DescribedLimits(fetch, pool, retry_seconds=0)
        assert limits.get("sf", "Account") == {}  # never waits
        release.set()
        assert limits.wait("sf", "Account", timeout=10) == {}  # the first fetch failed
        assert limits.wait("sf", "Account", timeout=10)["Name"].length == 80
        assert limits.get("sf", "Account")["Name"].length == 80
    assert calls == [("sf", "Account")] * 2
