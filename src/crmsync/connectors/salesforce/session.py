"""The HTTP session with one Salesforce org: requests, one re-login, budget tracking.

Blocking calls (``httpx.Client``), safe to share between worker threads. Every request

- has a timeout and verifies TLS (against ``ca_file`` when one is configured);
- carries ``Sforce-Call-Options: client=<client_name>``, so the engine can recognise its own writes
  when they come back as changes;
- reads ``Sforce-Limit-Info`` (``api-usage=N/M``) into :meth:`SalesforceSession.api_usage`;
- takes a call of the org's daily budget and a request slot first (:mod:`.budget`, shared by
  every process through the store once the connector has one);
- on 401 ``INVALID_SESSION_ID`` logs in again once (one thread does it for all) and retries once;
- turns every failure into the error tree of :mod:`crmsync.errors` (see :mod:`.errors`), with the
  wait a ``Retry-After`` header asks for; network errors and timeouts are
  :class:`~crmsync.errors.RetryLater`.

:class:`SalesforceSession` knows requests, not resources: the REST resources are methods of the
classes built on it (:mod:`.queries`, :mod:`.composite`, :class:`.client.SalesforceClient`).
httpx is imported in this module only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from crmsync.connectors.base import ApiUsage
from crmsync.connectors.salesforce.auth import Token, parse_token_reply, token_form, token_url
from crmsync.connectors.salesforce.budget import SalesforceBudget
from crmsync.connectors.salesforce.errors import error_from_reply
from crmsync.connectors.salesforce.settings import SalesforceSettings
from crmsync.errors import ConfigError, RetryLater

log = logging.getLogger(__name__)

_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    url: str


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise TypeError("naive datetimes are ambiguous; give a timezone")
        utc = value.astimezone(dt.UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} to Salesforce")


def dumps(body: Any) -> bytes:
    return json.dumps(body, default=_json_default, separators=(",", ":")).encode()


class SalesforceSession:
    """One org, one session (renewed when it expires), many threads: the requests under every resource."""

    def __init__(self, settings: SalesforceSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        verify: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(settings.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the CA file {settings.ca_file}: {exc}") from exc
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.timeout_seconds),
            verify=verify,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json", "Sforce-Call-Options": f"client={settings.client_name}"},
        )
        self._login_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._token: Token | None = None
        self._refresh_token = settings.refresh_token
        self._usage: ApiUsage | None = None
        #: the daily windows and request slots, shared through the store once the connector has one
        self.budget = SalesforceBudget("salesforce", settings)
        self._describes: dict[str, dict[str, Any]] = {}
        self.calls_made = 0
        self.logins = 0

    # -- session -----------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return f"/services/data/v{self.settings.api_version}"

    @property
    def refresh_token(self) -> str | None:
        """The current refresh token (Salesforce may have rotated the configured one)."""
        return self._refresh_token

    def login(self) -> Token:
        """Log in now with the configured flow (raises Fatal when refused)."""
        with self._login_lock:
            return self._login_locked()

    def _login_locked(self) -> Token:
        url = token_url(self.settings)
        form = token_form(self.settings, refresh_token=self._refresh_token)
        try:
            response = self._http.post(url, data=form)
        except httpx.TransportError as exc:
            raise RetryLater(f"cannot reach the Salesforce login host: {exc!r}", url=url) from exc
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        token = parse_token_reply(
            self.settings, response.status_code, response.text, body, url=url, headers=response.headers
        )
        if token.refresh_token:
            self._refresh_token = token.refresh_token
        self._token = token
        self.logins += 1
        log.info("logged in to Salesforce (%s flow) at %s", self.settings.auth, token.instance_url)
        return token

    def _session(self) -> Token:
        token = self._token
        if token is not None:
            return token
        with self._login_lock:
            return self._token or self._login_locked()

    def _relogin(self, stale: Token) -> Token:
        with self._login_lock:
            if self._token is not stale and self._token is not None:
                return self._token  # another thread already logged in again
            return self._login_locked()

    @property
    def instance_url(self) -> str:
        return self._session().instance_url

    # -- budget -------------------------------------------------------------------------------
    def api_usage(self) -> ApiUsage | None:
        """The org's daily API use as last reported in ``Sforce-Limit-Info``."""
        return self._usage

    def over_guard(self) -> bool:
        """True when the daily use reached ``daily_limit_guard`` (pause work that can wait)."""
        usage = self._usage
        return usage is not None and usage.limit > 0 and usage.fraction >= self.settings.daily_limit_guard

    def _note_response(self, response: httpx.Response) -> ApiUsage | None:
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        usage = ApiUsage(used=int(match.group(1)), limit=int(match.group(2))) if match else None
        with self._stats_lock:
            self.calls_made += 1
            if usage is not None:
                self._usage = usage
        return usage

    # -- requests -----------------------------------------------------------------------------
    def data_url(self, path: str) -> str:
        """The absolute URL of ``path`` (relative to the API version) on the current instance."""
        token = self._token
        return self._url(path, token.instance_url if token else self.settings.instance_url or "")

    def _url(self, path: str, instance_url: str) -> str:
        if path.startswith(("https://", "http://")):
            return path
        if path.startswith("/"):
            return instance_url + path
        return f"{instance_url}{self.api_base}/{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        object_name: str | None = None,
        record: str | None = None,
    ) -> Reply:
        """Send one request; a non-2xx reply raises the error the table gives it.

        ``path`` is absolute, instance-relative (``/services/...``) or relative to the API version
        (``sobjects/Account``).
        """
        content = dumps(body) if body is not None else None
        response = self._exchange(method, path, params, content, object_name, record)
        url = str(response.request.url)
        parsed: Any = None
        if response.content:
            try:
                parsed = response.json()
            except ValueError as exc:
                raise RetryLater(
                    f"Salesforce sent a reply that is not JSON (HTTP {response.status_code})",
                    url=url,
                    object_name=object_name,
                    record=record,
                    status=response.status_code,
                ) from exc
        return Reply(response.status_code, parsed, url)

    def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        content: bytes | None,
        object_name: str | None,
        record: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request (logging in again once on an expired session); a non-2xx reply raises."""
        token = self._session()
        response = self._send(method, path, token, params, content, object_name, record, headers)
        if response.status_code == 401 and _is_invalid_session(response):
            log.info("Salesforce session expired; logging in again")
            token = self._relogin(token)
            response = self._send(method, path, token, params, content, object_name, record, headers)
        if response.status_code >= 300:
            raise error_from_reply(
                response.status_code,
                response.text,
                url=str(response.request.url),
                object_name=object_name,
                record=record,
                headers=response.headers,
            )
        return response

    def _send(
        self,
        method: str,
        path: str,
        token: Token,
        params: Mapping[str, str] | None,
        content: bytes | None,
        object_name: str | None,
        record: str | None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        url = self._url(path, token.instance_url)
        headers = {"Authorization": f"Bearer {token.access_token}", **(extra_headers or {})}
        if content is not None:
            headers["Content-Type"] = "application/json"
        held = self.budget.before(url)
        usage: ApiUsage | None = None
        spent = False
        try:
            response = self._http.request(method, url, params=params, content=content, headers=headers)
            usage = self._note_response(response)
            spent = response.status_code == 403 and "totalrequests" in response.text.lower()
        except httpx.TimeoutException as exc:
            raise RetryLater(
                f"Salesforce did not answer within {self.settings.timeout_seconds:g} s",
                url=url,
                object_name=object_name,
                record=record,
            ) from exc
        except httpx.TransportError as exc:
            raise RetryLater(
                f"cannot reach Salesforce: {exc!r}", url=url, object_name=object_name, record=record
            ) from exc
        finally:
            self.budget.after(held, usage, spent=spent)
        log.debug("%s %s -> %s", method, response.request.url.path, response.status_code)
        return response

    def close(self) -> None:
        self._http.close()
        self.budget.close()


def _is_invalid_session(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    first = body[0] if isinstance(body, list) and body else body
    return isinstance(first, dict) and first.get("errorCode") == "INVALID_SESSION_ID"
