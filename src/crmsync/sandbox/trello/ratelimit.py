"""Trello's rate limits: per token, per API key and for ``/1/members/*``, in fixed windows.

- ``token_limit`` requests per ``window_seconds`` per token (Trello: 100 / 10 s);
- ``key_limit`` per key, summed over its tokens (300 / 10 s);
- ``member_limit`` per token on ``/1/members/*`` per ``member_window_seconds`` (100 / 900 s);
- a key that draws more than ``lockout_after`` 429s in one key window gets 429 for every
  request until that window ends (a client that keeps hammering locks itself out).

Every answered request carries the ``x-rate-limit-api-key-*`` and ``x-rate-limit-api-token-*``
headers; a refused one gets a 429 JSON body naming the limit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

TOKEN_EXCEEDED = {"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}
KEY_EXCEEDED = {"error": "API_KEY_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}
MEMBER_EXCEEDED = {"message": "Exceeded rate limit to /1/member", "error": "RATE_LIMIT_EXCEEDED"}


@dataclass
class _Window:
    started: float = 0.0
    used: int = 0
    refused: int = 0

    def roll(self, now: float, length: float) -> None:
        if now - self.started >= length:
            self.started = now
            self.used = 0
            self.refused = 0


@dataclass
class Verdict:
    headers: dict[str, str]
    refusal: dict[str, Any] | None = None


@dataclass
class RateLimiter:
    token_limit: int = 100
    key_limit: int = 300
    window_seconds: float = 10.0
    member_limit: int = 100
    member_window_seconds: float = 900.0
    lockout_after: int = 200
    _tokens: dict[str, _Window] = field(default_factory=dict)
    _keys: dict[str, _Window] = field(default_factory=dict)
    _members: dict[str, _Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._keys.clear()
            self._members.clear()

    def check(self, key: str, token: str, path: str, now: float | None = None) -> Verdict:
        """Count one request (unless refused) and say whether it may be served."""
        now = time.monotonic() if now is None else now
        with self._lock:
            key_window = self._keys.setdefault(key, _Window(started=now))
            token_window = self._tokens.setdefault(token, _Window(started=now))
            key_window.roll(now, self.window_seconds)
            token_window.roll(now, self.window_seconds)
            refusal: dict[str, Any] | None = None
            if key_window.refused > self.lockout_after or key_window.used >= self.key_limit:
                refusal = KEY_EXCEEDED
            elif token_window.used >= self.token_limit:
                refusal = TOKEN_EXCEEDED
            elif path.startswith(("/1/members", "/1/member/")):
                member_window = self._members.setdefault(token, _Window(started=now))
                member_window.roll(now, self.member_window_seconds)
                if member_window.used >= self.member_limit:
                    refusal = MEMBER_EXCEEDED
                else:
                    member_window.used += 1
            if refusal is None:
                key_window.used += 1
                token_window.used += 1
            else:
                key_window.refused += 1
            headers = {
                "x-rate-limit-api-key-interval-ms": str(int(self.window_seconds * 1000)),
                "x-rate-limit-api-key-max": str(self.key_limit),
                "x-rate-limit-api-key-remaining": str(max(0, self.key_limit - key_window.used)),
                "x-rate-limit-api-token-interval-ms": str(int(self.window_seconds * 1000)),
                "x-rate-limit-api-token-max": str(self.token_limit),
                "x-rate-limit-api-token-remaining": str(max(0, self.token_limit - token_window.used)),
            }
            return Verdict(headers, refusal)
