"""Fakes for tests of code that raises alerts: an outbox to pass as ``Alerter(notify=...)`` and
a clock to move by hand."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Sent:
    title: str
    body: str
    notice: str


@dataclass
class Outbox:
    """Records every notification; ``fail`` makes deliveries fail (returns False)."""

    fail: bool = False
    sent: list[Sent] = field(default_factory=list)
    attempts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, title: str, body: str, notice: str) -> bool:
        with self._lock:
            self.attempts += 1
            if self.fail:
                return False
            self.sent.append(Sent(title, body, notice))
            return True

    def notices(self) -> list[str]:
        with self._lock:
            return [s.notice for s in self.sent]


@dataclass
class ManualClock:
    """A clock that moves only when told: ``clock.advance(minutes=61)``."""

    now: datetime = field(default_factory=lambda: datetime(2024, 6, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now
