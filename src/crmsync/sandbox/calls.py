"""Counts of the calls each emulator served, for tests and benchmarks that count API calls (and
how many were in flight at once)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    status: int
    #: when the request came in and when its answer started (``time.time()``; 0.0 when not known)
    started: float = 0.0
    answered: float = 0.0


class CallLog:
    """Every served request (method, path, status), kept in order; thread-safe."""

    def __init__(self, keep: int = 100_000) -> None:
        self._calls: list[Call] = []
        self._keep = keep
        self._lock = threading.Lock()
        self.total = 0

    def record(self, method: str, path: str, status: int, started: float | None = None) -> None:
        now = time.time()
        with self._lock:
            self.total += 1
            self._calls.append(Call(method, path, status, now if started is None else started, now))
            if len(self._calls) > self._keep:
                del self._calls[: len(self._calls) - self._keep]

    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many calls matched ``method`` and had ``path_contains`` in their path."""
        with self._lock:
            return sum(
                1
                for c in self._calls
                if (method is None or c.method == method.upper())
                and (path_contains is None or path_contains in c.path)
            )

    def peak_in_flight(self, path_prefix: str = "") -> int:
        """The most requests under ``path_prefix`` that were in flight at once (from their arrival
        until their answer started)."""
        with self._lock:
            spans = [(c.started, c.answered) for c in self._calls if c.path.startswith(path_prefix)]
        events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
        inside = most = 0
        for _, step in events:
            inside += step
            most = max(most, inside)
        return most

    def by_endpoint(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(f"{c.method} {c.path}" for c in self._calls))

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
            self.total = 0
