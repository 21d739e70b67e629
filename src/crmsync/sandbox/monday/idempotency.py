"""``Idempotency-Key``: the first call runs, its reply is kept for 30 minutes and replayed.

Keys are scoped to the token that sent them. A key is *in flight* from the moment its request
arrives until its reply is stored; another request with the same key meanwhile gets
``409 IDEMPOTENCY_CONFLICT``. Only successful (2xx) replies are kept, so a call refused for a
limit or a server error can be retried with the same key and will run.

::

    (unknown) --begin--> in flight --finish(2xx)--> cached --30 min--> (unknown)
                             |
                             +--finish(other)--> (unknown)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_TTL = 30 * 60.0


@dataclass(frozen=True)
class CachedReply:
    status: int
    body: bytes
    headers: dict[str, str]
    stored_at: float


class IdempotencyCache:
    def __init__(self, *, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._replies: dict[tuple[str, str], CachedReply] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def begin(self, token: str, key: str) -> CachedReply | bool:
        """The cached reply; else True if this request now owns the key, False if it is in flight."""
        scoped = (token, key)
        with self._lock:
            now = self.clock()
            cached = self._replies.get(scoped)
            if cached is not None:
                if now - cached.stored_at < self.ttl:
                    return cached
                del self._replies[scoped]
            if scoped in self._in_flight:
                return False
            self._in_flight.add(scoped)
            return True

    def finish(self, token: str, key: str, status: int, body: bytes, headers: dict[str, str]) -> None:
        scoped = (token, key)
        with self._lock:
            self._in_flight.discard(scoped)
            if 200 <= status < 300:
                self._replies[scoped] = CachedReply(status, body, headers, self.clock())

    def abandon(self, token: str, key: str) -> None:
        with self._lock:
            self._in_flight.discard((token, key))

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def clear(self) -> None:
        with self._lock:
            self._replies.clear()
            self._in_flight.clear()
