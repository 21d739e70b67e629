"""Exponential back-off with jitter, for changes that must be tried again later."""

from __future__ import annotations

import random
from dataclasses import dataclass

#: a generator of its own: the process's global one is left to the application (and its tests)
_JITTER = random.Random()


@dataclass(frozen=True)
class Backoff:
    """``delay(n)`` is the wait before attempt ``n + 1`` after ``n`` failed attempts:
    ``initial * factor ** (n - 1)``, capped at ``maximum``, then spread by ±``jitter`` (a
    fraction) so that changes that failed together do not all come back together."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.initial < 0 or self.factor < 1 or self.maximum < 0 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid back-off {self!r}")

    def base(self, attempt: int) -> float:
        """The delay without jitter."""
        exponent = max(attempt, 1) - 1
        # Stop multiplying once past the cap, so a large attempt count cannot overflow.
        delay = self.initial
        for _ in range(exponent):
            delay *= self.factor
            if delay >= self.maximum:
                return self.maximum
        return min(delay, self.maximum)

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``attempt`` failed attempts (1 = the first failure)."""
        base = self.base(attempt)
        if not self.jitter:
            return base
        spread = (rng or _JITTER).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1.0 + spread))
