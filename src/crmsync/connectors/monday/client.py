"""The HTTP client for one monday.com account: GraphQL over ``POST /v2``, paced to the budget.

Blocking calls (``httpx.Client``), safe to share between worker threads. Every request

- carries the token (bare, as monday's SDKs send it) and the pinned ``API-Version``;
- is paced: its estimated complexity is reserved first (:mod:`.budget`), and corrected by the
  ``complexity { before after query reset_in_x_seconds }`` that every query selects;
- on a mutation, carries an ``Idempotency-Key`` (the caller derives it from the writes, so a
  request retried after a crash is replayed by monday, not run twice);
- turns every failure into the error tree of :mod:`crmsync.errors` (see :mod:`.errors`); network
  errors and timeouts are :class:`~crmsync.errors.RetryLater`.

A spent complexity budget (429, any of the three shapes) and an in-flight duplicate (409
``IDEMPOTENCY_CONFLICT``) are waited out and the same request sent again, a few times; other
errors are raised for the engine's own backoff.

httpx is imported in this module only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from crmsync.connectors.base import ApiUsage
from crmsync.connectors.monday.budget import ComplexityPacer
from crmsync.connectors.monday.errors import VendorError, error_from_reply, make_error, parse_errors
from crmsync.connectors.monday.settings import MondaySettings
from crmsync.errors import BudgetExhausted, CrmsyncError, RetryLater

log = logging.getLogger(__name__)

#: selected by every query so that each reply reports the budget
COMPLEXITY_FIELD = "complexity { before after query reset_in_x_seconds }"
#: estimated points of one root mutation (monday's documented order of magnitude plus its selection)
MUTATION_COST = 10_010
#: estimated points of one item read with its column values
ITEM_READ_COST = 120
#: estimated points of a small query (me, webhooks, board columns)
SMALL_QUERY_COST = 1_000
#: monday's single-query ceiling
MAX_QUERY_COST = 5_000_000
#: how often a request refused for the budget or an in-flight duplicate is sent again
RESEND_ATTEMPTS = 4
#: the longest wait for an in-flight duplicate (409) before sending again
CONFLICT_WAIT_CAP = 10.0


def idempotency_key(*parts: Any) -> str:
    """A UUID-shaped key derived from ``parts`` (JSON-able): the same parts give the same key."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return str(uuid.UUID(bytes=hashlib.sha256(canonical.encode()).digest()[:16]))


@dataclass(frozen=True)
class Reply:
    """A GraphQL reply: ``data`` (possibly partial) and the per-field ``errors``."""

    data: dict[str, Any]
    errors: list[VendorError] = field(default_factory=list)
    replayed: bool = False
    url: str = ""

    def errors_for(self, alias: str) -> list[VendorError]:
        return [e for e in self.errors if e.path and e.path[0] == alias]


class MondayClient:
    """One account and token; many threads."""

    def __init__(
        self,
        settings: MondaySettings,
        *,
        pacer: ComplexityPacer | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.pacer = (
            pacer if pacer is not None else ComplexityPacer(settings.complexity_per_minute, sleep=sleep)
        )
        self.sleep = sleep
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.timeout_seconds),
            transport=transport,
            follow_redirects=False,
            headers={
                "Authorization": settings.token,
                "API-Version": settings.api_version,
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        self._stats_lock = threading.Lock()
        self.calls_made = 0
        self.replays = 0

    @property
    def url(self) -> str:
        return self.settings.api_url

    def api_usage(self) -> ApiUsage:
        """Complexity points reserved in the current window, of the configured budget."""
        return self.pacer.usage()

    def query(self, text: str, variables: Mapping[str, Any] | None = None, *, cost: int) -> Reply:
        """Run a query; ``text`` should select :data:`COMPLEXITY_FIELD` at its root."""
        return self.execute(text, variables, cost=cost)

    def mutate(self, text: str, variables: Mapping[str, Any] | None = None, *, cost: int, key: str) -> Reply:
        """Run a mutation with ``Idempotency-Key: key``."""
        return self.execute(text, variables, cost=cost, key=key)

    def execute(
        self,
        text: str,
        variables: Mapping[str, Any] | None = None,
        *,
        cost: int,
        key: str | None = None,
    ) -> Reply:
        """Send one GraphQL document; raise for a failed request, return partial data with errors."""
        body = {"query": text, "variables": dict(variables or {})}
        payload = json.dumps(body, separators=(",", ":"), default=str).encode()
        headers = {"Idempotency-Key": key} if key else {}
        cost = min(cost, MAX_QUERY_COST)
        for attempt in range(1, RESEND_ATTEMPTS + 1):
            self.pacer.acquire(cost)
            try:
                return self._send(payload, headers, cost)
            except BudgetExhausted as exc:
                if exc.vendor_code not in ("COMPLEXITY_BUDGET_EXHAUSTED", "ComplexityException"):
                    raise
                if attempt == RESEND_ATTEMPTS:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else 60.0
                log.warning("monday complexity budget spent; waiting %.0f s before sending again", wait)
                self.pacer.penalise(wait)
            except RetryLater as exc:
                if exc.vendor_code != "IDEMPOTENCY_CONFLICT" or attempt == RESEND_ATTEMPTS:
                    raise
                self.pacer.settle(cost, 0)
                self.sleep(min(exc.retry_after or 1.0, CONFLICT_WAIT_CAP))
        raise AssertionError("unreachable")

    def _send(self, payload: bytes, headers: dict[str, str], cost: int) -> Reply:
        url = self.settings.api_url
        try:
            response = self._http.post(url, content=payload, headers=headers)
        except httpx.TimeoutException as exc:
            raise RetryLater(f"monday did not answer in time: {exc!r}", url=url) from exc
        except httpx.TransportError as exc:
            raise RetryLater(f"cannot reach monday: {exc!r}", url=url) from exc
        with self._stats_lock:
            self.calls_made += 1
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            if response.status_code != 429:
                self.pacer.settle(cost, 0)  # refused before it was charged
            raise error_from_reply(response.status_code, body, response.headers, url=url, text=response.text)
        if not isinstance(body, dict):
            raise RetryLater(
                f"monday answered 200 with a body that is not JSON: {response.text[:200]}", url=url
            )
        data = body.get("data")
        errors = parse_errors(body, response.headers)
        if not isinstance(data, dict) or (errors and not any(e.path for e in errors)):
            # the whole request was refused (parse, validation, version, a budget error under 200)
            self.pacer.settle(cost, 0)
            raise error_from_reply(200, body, response.headers, url=url, text=response.text)
        replayed = response.headers.get("idempotency-replayed", "").lower() == "true"
        if replayed:
            with self._stats_lock:
                self.replays += 1
            self.pacer.settle(cost, 0)
        self._note_complexity(data.get("complexity"), cost)
        return Reply(data=data, errors=errors, replayed=replayed, url=url)

    def _note_complexity(self, complexity: Any, estimated: int) -> None:
        if not isinstance(complexity, Mapping):
            return
        charged = complexity.get("query")
        if isinstance(charged, int):
            self.pacer.settle(estimated, charged)
        after = complexity.get("after")
        reset = complexity.get("reset_in_x_seconds")  # nullable in practice, whatever the types say
        if isinstance(after, int):
            self.pacer.observe(after, float(reset) if isinstance(reset, int | float) else None)

    # -- small helpers -------------------------------------------------------------------------
    def me(self) -> dict[str, Any]:
        reply = self.query(f"query {{ me {{ id name }} {COMPLEXITY_FIELD} }}", cost=SMALL_QUERY_COST)
        me = reply.data.get("me")
        if not isinstance(me, dict):
            raise error_from_reply(200, {"errors": [{"message": "no user for this token"}]}, url=self.url)
        return me

    def close(self) -> None:
        self._http.close()


def raise_first(reply: Reply) -> None:
    """Raise the first per-field error of ``reply`` (for calls where any error fails the call)."""
    if reply.errors:
        error: CrmsyncError = make_error(None, reply.errors[0], url=reply.url)
        raise error
