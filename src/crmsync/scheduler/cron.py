"""Cron expressions, evaluated in UTC with croniter.

Five fields (minute hour day-of-month month day-of-week), optionally a sixth *after* them for
seconds, or one of the ``@hourly``, ``@daily``, ``@weekly``, ``@monthly`` and ``@yearly``
shorthands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from crmsync.errors import ConfigError

_EPSILON = timedelta(microseconds=1)


def is_valid(expression: str) -> bool:
    return bool(croniter.is_valid(expression))


@dataclass(frozen=True)
class Schedule:
    """A validated cron expression."""

    expression: str

    def __post_init__(self) -> None:
        if not is_valid(self.expression):
            raise ConfigError(f"invalid cron expression {self.expression!r}")

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment`` (an aware datetime), in UTC."""
        return _utc(croniter(self.expression, moment.astimezone(UTC)).get_next(datetime))

    def is_occurrence(self, moment: datetime) -> bool:
        """True if the schedule fires exactly at ``moment``."""
        return self.next_after(moment - _EPSILON) == moment


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
