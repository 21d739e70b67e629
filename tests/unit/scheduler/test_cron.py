from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from crmsync.errors import ConfigError
from crmsync.scheduler.cron import Schedule, is_valid


def at(hour: int, minute: int = 0, second: int = 0, day: int = 6) -> datetime:
    return datetime(2024, 5, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        ("*/5 * * * *", at(10, 0, 30), at(10, 5)),
        ("*/5 * * * *", at(10, 5), at(10, 10)),  # strictly after an occurrence
        ("0 3 * * *", at(10), at(3, day=7)),
        ("@daily", at(10), at(0, day=7)),
        ("0 9 * * mon", at(10), datetime(2024, 5, 13, 9, tzinfo=UTC)),  # 2024-05-06 is a Monday
        ("* * * * * 30", at(10, 0, 31), at(10, 1, 30)),  # a sixth field: seconds
    ],
)
def test_next_after(expression: str, moment: datetime, expected: datetime) -> None:
    assert Schedule(expression).next_after(moment) == expected


def test_next_after_takes_any_zone_and_answers_in_utc() -> None:
    paris_noon = datetime(2024, 5, 6, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    nxt = Schedule("0 * * * *").next_after(paris_noon)
    assert nxt == at(11) and nxt.tzinfo == UTC


def test_is_occurrence() -> None:
    hourly = Schedule("0 * * * *")
    assert hourly.is_occurrence(at(10))
    assert not hourly.is_occurrence(at(10, 0, 30))
    assert not hourly.is_occurrence(at(10, 30))


@pytest.mark.parametrize("expression", ["", "61 * * * *", "every day", "* * *"])
def test_invalid_expressions(expression: str) -> None:
    assert not is_valid(expression)
    with pytest.raises(ConfigError, match="invalid cron expression"):
        Schedule(expression)
