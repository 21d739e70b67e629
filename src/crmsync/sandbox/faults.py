"""Fault rules: rehearse a bad day against the emulators.

A rule matches requests (or outgoing webhook deliveries) by method, a regular expression
searched in the path (or callback URL), a probability and a count, and then does one thing:

- ``latency_ms``: delay the request, then serve it normally;
- ``error``: answer with the vendor's own body for a named error kind (each emulator lists
  its kinds, e.g. ``server_error``, ``unavailable``, ``rate_limit``, ``limit_exceeded``,
  ``session_expired``), or ``status`` for the vendor's generic body with that status; with
  ``retry_after`` (seconds, or an HTTP date sent as given) the reply carries ``Retry-After``;
- ``hang``: serve the request (a write lands) but withhold the answer until the client gives up
  and closes the connection, or ``hang_seconds`` pass (then the answer is sent);
- ``webhook``: ``drop``, ``duplicate`` or ``reorder`` matching webhook deliveries.

Rules come in through the control API (``POST /_sandbox/faults``) or the Python API
(:meth:`FaultSet.add`), and are removed when their count is spent.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

WebhookFault = Literal["drop", "duplicate", "reorder"]

_ids = itertools.count(1)


@dataclass
class FaultRule:
    """One fault rule. ``count=None`` fires forever; ``probability`` is per matching request."""

    method: str | None = None
    path: str | None = None
    probability: float = 1.0
    count: int | None = None
    latency_ms: int = 0
    error: str | None = None
    status: int | None = None
    hang: bool = False
    hang_seconds: float = 120.0
    retry_after: float | str | None = None
    webhook: WebhookFault | None = None
    id: int = field(default_factory=lambda: next(_ids))
    fired: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if self.count is not None and self.count < 0:
            raise ValueError("count must be positive")
        if self.webhook not in (None, "drop", "duplicate", "reorder"):
            raise ValueError("webhook must be one of drop, duplicate, reorder")
        if self.path is not None:
            re.compile(self.path)
        effects = [bool(self.error or self.status), self.hang, self.webhook is not None]
        if sum(effects) > 1:
            raise ValueError("a rule does one thing: error/status, hang or webhook")
        if not any(effects) and not self.latency_ms:
            raise ValueError("a rule needs an effect: latency_ms, error, status, hang or webhook")
        if self.hang_seconds < 0:
            raise ValueError("hang_seconds must not be negative")
        if self.retry_after is not None:
            if not (self.error or self.status):
                raise ValueError("retry_after goes with an error or status rule")
            if isinstance(self.retry_after, bool) or not isinstance(self.retry_after, int | float | str):
                raise ValueError("retry_after is seconds or an HTTP date")
            if isinstance(self.retry_after, str) and not self.retry_after.strip():
                raise ValueError("retry_after must not be empty")
            if not isinstance(self.retry_after, str) and not 0 <= self.retry_after < float("inf"):
                raise ValueError("retry_after must be a non-negative number of seconds")

    def retry_after_header(self) -> str | None:
        """The ``Retry-After`` value this rule's reply carries (whole seconds as an integer)."""
        value = self.retry_after
        if value is None or isinstance(value, str):
            return value
        return str(int(value)) if float(value).is_integer() else f"{value:g}"

    def retry_after_seconds(self, default: int) -> int:
        """The wait to write into a vendor body that carries one (``retry_in_seconds``)."""
        value = self.retry_after
        if value is None or isinstance(value, str):
            return default
        return math.ceil(value)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        allowed = {
            "method",
            "path",
            "probability",
            "count",
            "latency_ms",
            "error",
            "status",
            "hang",
            "hang_seconds",
            "retry_after",
            "webhook",
        }
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault rule keys: {sorted(unknown)}; valid: {sorted(allowed)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


class FaultSet:
    """The live rules of one emulator; safe to use from any thread."""

    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def seed(self, seed: int | str) -> None:
        """Draw the rules' probabilities from a generator seeded with ``seed`` (a test replays a run)."""
        with self._lock:
            self._random.seed(seed)

    def add(self, rule: FaultRule | None = None, **kwargs: Any) -> FaultRule:
        rule = rule if rule is not None else FaultRule(**kwargs)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def _take(self, method: str, path: str, webhook: bool) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if (rule.webhook is not None) != webhook or not rule.matches(method, path):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                if rule.count is not None and rule.fired >= rule.count:
                    self._rules.remove(rule)
                return rule
        return None

    def for_request(self, method: str, path: str) -> FaultRule | None:
        """The first request rule that fires for this request, if any (its count is spent)."""
        return self._take(method, path, webhook=False)

    def for_webhook(self, url: str) -> FaultRule | None:
        """The first webhook rule that fires for a delivery to ``url``, if any."""
        return self._take("POST", url, webhook=True)
