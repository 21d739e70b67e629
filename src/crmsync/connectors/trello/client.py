"""The HTTP client for one Trello key and token: REST over httpx, paced by the rate governor.

Blocking calls (``httpx.Client``), safe to share between worker threads. Every request

- carries the key and token in the ``Authorization: OAuth oauth_consumer_key=".."`` header
  (never in the URL, so they stay out of proxies' and servers' logs);
- first takes a slot of the token's and the key's budgets (:mod:`.governor`), and merges the
  ``x-rate-limit-*`` headers of the reply back in;
- turns every failure into the error tree of :mod:`crmsync.errors` (see :mod:`.errors`): a reply
  lost after the request went out (read timeout, connection dropped) is :class:`AnswerLost`,
  so that a caller creating something knows the create may have landed.

A 429 blocks the budget it names until the next window, then the same request is sent again,
up to ``resend_attempts`` times. ``/batch`` reads up to 10 GET routes in one request (one unit of
the budget). httpx is imported in this module only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from crmsync.connectors.base import ApiUsage
from crmsync.connectors.trello.errors import make_error, read_body
from crmsync.connectors.trello.governor import Budget, BudgetKind, RateGovernor, budget_name
from crmsync.connectors.trello.settings import TrelloConnection
from crmsync.errors import BudgetExhausted, CrmsyncError, RetryLater

log = logging.getLogger(__name__)

#: routes per ``/batch`` request (Trello's cap)
BATCH_SIZE = 10
#: the budgets each 429 code names
BLOCKED_BY: dict[str, tuple[BudgetKind, ...]] = {
    "API_TOKEN_LIMIT_EXCEEDED": ("token",),
    "API_KEY_LIMIT_EXCEEDED": ("key", "token"),
    "RATE_LIMIT_EXCEEDED": ("member",),
}


class AnswerLost(RetryLater):
    """The request went out but no answer came back: it may have been applied."""


def budgets_for(settings: TrelloConnection) -> dict[BudgetKind, Budget]:
    """The three budgets of a connection's token and key (shared with every user of them)."""
    key = settings.key
    token = settings.token.get_secret_value()
    margin = settings.rate_margin_seconds
    return {
        "token": Budget(
            budget_name("token", key, token), "token", settings.token_limit, settings.window_seconds + margin
        ),
        "key": Budget(budget_name("key", key), "key", settings.key_limit, settings.window_seconds + margin),
        "member": Budget(
            budget_name("member", key, token),
            "member",
            settings.member_limit,
            settings.member_window_seconds + margin,
        ),
    }


def auth_header(key: str, token: str) -> str:
    return f'OAuth oauth_consumer_key="{key}", oauth_token="{token}"'


class TrelloClient:
    """One key and token; many threads."""

    def __init__(
        self,
        settings: TrelloConnection,
        *,
        governor: RateGovernor | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.base_url = settings.api_url.rstrip("/")
        self.governor = (
            governor
            if governor is not None
            else RateGovernor(budgets_for(settings), sleep=sleep, slack=settings.rate_margin_seconds)
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(settings.timeout_seconds),
            transport=transport,
            follow_redirects=False,
            headers={
                "Authorization": auth_header(settings.key, settings.token.get_secret_value()),
                "Accept": "application/json",
            },
        )
        self._stats = threading.Lock()
        self.calls_made = 0

    def api_usage(self) -> ApiUsage:
        return self.governor.usage()

    # -- requests ----------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request (``path`` under ``/1``); the parsed JSON of a 200, else raise."""
        attempts = self.settings.resend_attempts
        for attempt in range(1, attempts + 1):
            taken = self.governor.acquire(path)
            try:
                try:
                    return self._send(method, path, params, body)
                finally:
                    self.governor.answered(path, taken)
            except BudgetExhausted as exc:
                kinds = BLOCKED_BY.get(exc.vendor_code or "", ("token", "key"))
                wait = self.governor.block(kinds)
                if attempt == attempts:
                    raise
                log.warning(
                    "Trello refused %s %s for its rate limit (%s); waiting %.1f s for the next window",
                    method,
                    path,
                    exc.vendor_code,
                    wait,
                )
        raise AssertionError("unreachable")

    def _send(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Mapping[str, Any] | None
    ) -> Any:
        url = self.base_url + path
        try:
            response = self._http.request(
                method, path, params=_params(params), json=dict(body) if body is not None else None
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryLater(f"cannot reach Trello: {exc!r}", url=url) from exc
        except httpx.TimeoutException as exc:
            raise AnswerLost(f"Trello did not answer in time: {exc!r}", url=url) from exc
        except httpx.TransportError as exc:
            raise AnswerLost(f"the connection to Trello broke: {exc!r}", url=url) from exc
        with self._stats:
            self.calls_made += 1
        self.governor.observe(response.headers)
        if response.status_code != 200:
            vendor = read_body(response.status_code, response.content)
            raise make_error(vendor, url=url, headers=response.headers)
        try:
            return response.json()
        except ValueError as exc:
            raise RetryLater(
                f"Trello answered 200 with a body that is not JSON: {response.text[:200]}", url=url
            ) from exc

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        return self.request("POST", path, params=params, body=body)

    def put(self, path: str, body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        return self.request("PUT", path, params=params, body=body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params)

    # -- reads -------------------------------------------------------------------------------------
    def batch(self, routes: Sequence[str]) -> list[Any]:
        """GET each route (under ``/1``, with its own query) through ``/batch``, 10 per request.

        One entry per route, in order: the parsed body, or the :class:`CrmsyncError` of that route.
        """
        out: list[Any] = []
        for start in range(0, len(routes), BATCH_SIZE):
            part = routes[start : start + BATCH_SIZE]
            urls = ",".join(quote(route, safe="/") for route in part)
            answers = self.request("GET", "/batch", params={"urls": urls})
            if not isinstance(answers, list) or len(answers) != len(part):
                raise RetryLater(
                    f"Trello's /batch did not answer one entry for each of its {len(part)} routes",
                    url=self.base_url + "/batch",
                )
            for route, entry in zip(part, answers, strict=True):
                out.append(_entry(self.base_url + route, entry))
        return out

    def board(self, board_id: str, **expansions: Any) -> dict[str, Any]:
        """``GET /boards/{id}`` with expansions (``cards="all"``, ``customFields="true"``, ...)."""
        found = self.get(f"/boards/{board_id}", **expansions)
        assert isinstance(found, dict)
        return found

    def close(self) -> None:
        self._http.close()


def _params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, list | tuple):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = str(value)
    return out


def _entry(url: str, entry: Any) -> Any:
    if isinstance(entry, Mapping) and "200" in entry:
        return entry["200"]
    status = entry.get("statusCode") if isinstance(entry, Mapping) else None
    error: CrmsyncError = make_error(
        read_body(int(status) if isinstance(status, int) else 400, entry), url=url
    )
    return error
