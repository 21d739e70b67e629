"""Counts of the calls each emulator served, for tests and benchmarks that count API calls."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    status: int


class CallLog:
    """Every served request (method, path, status), kept in order; thread-safe."""

    def __init__(self, keep: int = 100_000) -> None:
        self._calls: list[Call] = []
        self._keep = keep
        self._lock = threading.Lock()
        self.total = 0

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.total += 1
            self._calls.append(Call(method, path, status))
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

    def by_endpoint(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(f"{c.method} {c.path}" for c in self._calls))

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
            self.total = 0
