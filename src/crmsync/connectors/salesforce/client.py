"""The HTTP client for one Salesforce org: requests, one re-login, budget tracking, REST resources.

Blocking calls (``httpx.Client``), safe to share between worker threads. Every request

- has a timeout and verifies TLS (against ``ca_file`` when one is configured);
- carries ``Sforce-Call-Options: client=<client_name>``, so the engine can recognise its own writes
  when they come back as changes;
- reads ``Sforce-Limit-Info`` (``api-usage=N/M``) into :meth:`SalesforceClient.api_usage`;
- takes a call of the org's daily budget and a request slot first (:mod:`.budget`, shared by
  every process through the store once the connector has one);
- on 401 ``INVALID_SESSION_ID`` logs in again once (one thread does it for all) and retries once;
- turns every failure into the error tree of :mod:`crmsync.errors` (see :mod:`.errors`), with the
  wait a ``Retry-After`` header asks for; network errors and timeouts are
  :class:`~crmsync.errors.RetryLater`.

httpx is imported in this module only.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from crmsync.connectors.base import ApiUsage
from crmsync.connectors.salesforce.auth import Token, parse_token_reply, token_form, token_url
from crmsync.connectors.salesforce.budget import SalesforceBudget
from crmsync.connectors.salesforce.errors import ALREADY_DELETED, error_from_reply, error_from_save_result
from crmsync.connectors.salesforce.settings import SalesforceSettings
from crmsync.errors import ConfigError, CrmsyncError, Fatal, FixTheData, RetryLater

log = logging.getLogger(__name__)

#: sObject Collections: records per create/update/upsert/delete call
COLLECTION_SIZE = 200
#: sObject Collections retrieve (POST form): ids per call
RETRIEVE_SIZE = 2000
#: Composite: subrequests per call
COMPOSITE_SIZE = 25
#: Bulk API 2.0 query results: rows per page (``maxRecords``)
BULK_PAGE_SIZE = 50_000
#: Bulk API 2.0 query jobs: first pause between polls, longest pause, longest wait in all (seconds)
BULK_FIRST_POLL = 0.5
BULK_MAX_POLL = 10.0
BULK_MAX_WAIT = 30 * 60.0

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


def sf_datetime(value: dt.datetime) -> str:
    """ISO-8601 in UTC, whole seconds, as the ``updated``/``deleted`` resources take it."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; give a timezone")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def plan_chunks(keys: Sequence[str | None], size: int) -> list[list[int]]:
    """Indexes of ``keys`` in calls of at most ``size``, no key twice in one call, order kept per key.

    A repeated key goes to a later call than its previous occurrence (Salesforce refuses the same
    id or external id twice in one collections call); ``None`` keys never clash.
    """
    chunks: list[list[int]] = []
    members: list[set[str]] = []
    last_chunk: dict[str, int] = {}
    start = 0  # chunks before this one are full
    for index, key in enumerate(keys):
        lowest = last_chunk[key] + 1 if key is not None and key in last_chunk else start
        target = lowest
        while target < len(chunks) and (
            len(chunks[target]) >= size or (key is not None and key in members[target])
        ):
            target += 1
        if target == len(chunks):
            chunks.append([])
            members.append(set())
        chunks[target].append(index)
        if key is not None:
            members[target].add(key)
            last_chunk[key] = target
        while start < len(chunks) and len(chunks[start]) >= size:
            start += 1
    return chunks


class SalesforceClient:
    """One org, one session (renewed when it expires), many threads."""

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

    # -- queries ------------------------------------------------------------------------------
    def query_iter(self, soql: str, *, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """The records of a SOQL query, page after page (``/queryAll`` with deleted rows)."""
        reply = self.request("GET", "queryAll" if include_deleted else "query", params={"q": soql})
        while True:
            page = reply.body if isinstance(reply.body, dict) else {}
            yield from page.get("records") or []
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            reply = self.request("GET", str(next_url))

    def query(self, soql: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        return list(self.query_iter(soql, include_deleted=include_deleted))

    def count(self, soql: str) -> int:
        """The number of records a ``SELECT COUNT() FROM ...`` query counts (its ``totalSize``)."""
        reply = self.request("GET", "query", params={"q": soql})
        return int((reply.body or {}).get("totalSize") or 0)

    def bulk_query(
        self,
        soql: str,
        *,
        include_deleted: bool = False,
        page_size: int = BULK_PAGE_SIZE,
        max_wait: float = BULK_MAX_WAIT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[dict[str, str | None]]:
        """The records of a SOQL query read through a Bulk API 2.0 query job (for large reads).

        Creates the job, polls it until ``JobComplete`` (waiting longer between polls, at most
        ``max_wait`` seconds in all), then reads the CSV results ``page_size`` rows a page, following
        the ``Sforce-Locator`` header until it is ``null``. Rows are flat: a parent's field is keyed
        ``Parent.Field``; every value is text, and an empty cell (Salesforce's null) is ``None``.
        A job that fails or is aborted raises :class:`~crmsync.errors.Fatal` with Salesforce's message.
        """
        body = {
            "operation": "queryAll" if include_deleted else "query",
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        job = self.request("POST", "jobs/query", body=body).body or {}
        job_id = str(job.get("id") or "")
        if not job_id:
            raise RetryLater("Salesforce created a query job without an id", url=self.data_url("jobs/query"))
        url = self.data_url(f"jobs/query/{job_id}")
        waited, delay = 0.0, BULK_FIRST_POLL
        while True:  # the first poll at once: small jobs are often complete by then
            info = self.request("GET", f"jobs/query/{job_id}").body or {}
            state = str(info.get("state") or "")
            if state == "JobComplete":
                break
            if state in ("Failed", "Aborted"):
                reason = info.get("errorMessage") or "no reason given"
                raise Fatal(
                    f"Bulk API query job {job_id} {state.lower()}: {reason}", url=url, vendor_code=state
                )
            if waited >= max_wait:
                raise RetryLater(f"Bulk API query job {job_id} still {state} after {max_wait:g} s", url=url)
            sleep(delay)
            waited += delay
            delay = min(delay * 2, BULK_MAX_POLL)
        locator: str | None = None
        while True:
            params = {"maxRecords": str(page_size)}
            if locator:
                params["locator"] = locator
            response = self._exchange(
                "GET", f"jobs/query/{job_id}/results", params, None, None, None, {"Accept": "text/csv"}
            )
            for row in csv.DictReader(io.StringIO(response.text)):
                yield {k: (v if v != "" else None) for k, v in row.items()}
            locator = response.headers.get("Sforce-Locator")
            if not locator or locator == "null":
                return

    # -- single records -----------------------------------------------------------------------
    def get(self, object_name: str, record_id: str, fields: Sequence[str] | None = None) -> dict[str, Any]:
        params = {"fields": ",".join(fields)} if fields else None
        reply = self.request(
            "GET",
            f"sobjects/{object_name}/{quote(record_id, safe='')}",
            params=params,
            object_name=object_name,
            record=record_id,
        )
        return dict(reply.body)

    def create(self, object_name: str, fields: Mapping[str, Any]) -> str:
        reply = self.request("POST", f"sobjects/{object_name}", body=dict(fields), object_name=object_name)
        return str(reply.body["id"])

    def update(self, object_name: str, record_id: str, fields: Mapping[str, Any]) -> None:
        self.request(
            "PATCH",
            f"sobjects/{object_name}/{quote(record_id, safe='')}",
            body=dict(fields),
            object_name=object_name,
            record=record_id,
        )

    def upsert(
        self, object_name: str, ext_field: str, value: str | int, fields: Mapping[str, Any]
    ) -> tuple[str, bool]:
        """Create or update the record whose ``ext_field`` is ``value``: ``(id, created)``.

        The value is percent-encoded as one path segment (spaces as ``%20``, never ``+``; ``#``,
        ``?``, ``%`` and ``+`` encoded). A value holding ``/`` goes through sObject Collections
        instead, where it travels in the body: servers split paths on a decoded ``%2F``.
        """
        text = str(value)
        record = f"{ext_field}={text}"
        if "/" in text or text in (".", ".."):
            result = self.collections_upsert(object_name, ext_field, [{**fields, ext_field: value}])[0]
            if not result.get("success"):
                raise _save_error(result, object_name=object_name, record=record)
            return str(result["id"]), bool(result.get("created"))
        path = f"sobjects/{object_name}/{ext_field}/{quote(text, safe='')}"
        body = {k: v for k, v in fields.items() if k != ext_field}
        reply = self.request("PATCH", path, body=body, object_name=object_name, record=record)
        if isinstance(reply.body, dict) and reply.body.get("id"):
            created = reply.body.get("created")
            return str(reply.body["id"]), bool(created if created is not None else reply.status == 201)
        # API versions before 46.0 answer an update with 204 and no body: read the id back
        found = self.request("GET", path, params={"fields": "Id"}, object_name=object_name, record=record)
        return str(found.body["Id"]), False

    def delete(self, object_name: str, record_id: str) -> bool:
        """Delete a record; True if it was deleted now, False if it was already gone (idempotent)."""
        try:
            self.request(
                "DELETE",
                f"sobjects/{object_name}/{quote(record_id, safe='')}",
                object_name=object_name,
                record=record_id,
            )
        except FixTheData as exc:
            if exc.vendor_code in ALREADY_DELETED:
                return False
            raise
        return True

    # -- metadata and limits --------------------------------------------------------------------
    def describe(self, object_name: str) -> dict[str, Any]:
        """The object's describe (cached for the life of the client)."""
        cached = self._describes.get(object_name)
        if cached is None:
            reply = self.request("GET", f"sobjects/{object_name}/describe", object_name=object_name)
            cached = dict(reply.body)
            self._describes[object_name] = cached
        return cached

    def limits(self) -> dict[str, Any]:
        return dict(self.request("GET", "limits").body)

    # -- composite and collections ----------------------------------------------------------
    def composite(self, requests: Sequence[Mapping[str, Any]], *, all_or_none: bool) -> list[dict[str, Any]]:
        """One Composite call (≤25 subrequests; ``url`` may be relative to the API version).

        Returns ``compositeResponse`` in order; a refused subrequest is a reply in the list (see
        :func:`subrequest_error`), not an exception.
        """
        if len(requests) > COMPOSITE_SIZE:
            raise ValueError(f"a composite call takes at most {COMPOSITE_SIZE} subrequests")
        subrequests = []
        for sub in requests:
            sub = dict(sub)
            url = str(sub["url"])
            if not url.startswith("/"):
                sub["url"] = f"{self.api_base}/{url}"
            subrequests.append(sub)
        reply = self.request(
            "POST", "composite", body={"allOrNone": all_or_none, "compositeRequest": subrequests}
        )
        return list(reply.body["compositeResponse"])

    def _collection_call(
        self, method: str, path: str, object_name: str, count: int, **kw: Any
    ) -> list[dict[str, Any]]:
        reply = self.request(method, path, object_name=object_name, **kw)
        if not isinstance(reply.body, list) or len(reply.body) != count:
            raise RetryLater(
                f"sObject Collections answered {type(reply.body).__name__} for {count} records",
                url=reply.url,
                object_name=object_name,
            )
        return [dict(r) if isinstance(r, dict) else {"success": False, "errors": []} for r in reply.body]

    def _collections(
        self,
        method: str,
        path: str,
        object_name: str,
        records: Sequence[Mapping[str, Any]],
        keys: Sequence[str | None],
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = [{} for _ in records]
        for chunk in plan_chunks(keys, COLLECTION_SIZE):
            body = {
                "allOrNone": False,
                "records": [{"attributes": {"type": object_name}, **records[i]} for i in chunk],
            }
            for index, result in zip(
                chunk, self._collection_call(method, path, object_name, len(chunk), body=body), strict=True
            ):
                results[index] = result
        return results

    def collections_create(
        self, object_name: str, records: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Create records, 200 a call; SaveResults in input order."""
        return self._collections("POST", "composite/sobjects", object_name, records, [None] * len(records))

    def collections_update(
        self, object_name: str, records: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Update records (each holds its ``Id``), 200 a call; SaveResults in input order."""
        keys = [str(r["Id"]) for r in records]
        return self._collections("PATCH", "composite/sobjects", object_name, records, keys)

    def collections_upsert(
        self, object_name: str, ext_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Upsert records by ``ext_field`` (each holds it), 200 a call, never one value twice a call."""
        keys = [str(r[ext_field]) for r in records]
        path = f"composite/sobjects/{object_name}/{ext_field}"
        return self._collections("PATCH", path, object_name, records, keys)

    def collections_delete(self, ids: Sequence[str], *, object_name: str = "") -> list[dict[str, Any]]:
        """Delete records by id, 200 a call; SaveResults in input order."""
        results: list[dict[str, Any]] = [{} for _ in ids]
        for chunk in plan_chunks(list(ids), COLLECTION_SIZE):
            params = {"ids": ",".join(ids[i] for i in chunk), "allOrNone": "false"}
            replies = self._collection_call(
                "DELETE", "composite/sobjects", object_name, len(chunk), params=params
            )
            for index, result in zip(chunk, replies, strict=True):
                results[index] = result
        return results

    def collections_retrieve(
        self, object_name: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[dict[str, Any] | None]:
        """Records by id (``None`` for an unknown id), 2,000 ids a call, in input order."""
        out: list[dict[str, Any] | None] = []
        for start in range(0, len(ids), RETRIEVE_SIZE):
            chunk = list(ids[start : start + RETRIEVE_SIZE])
            reply = self.request(
                "POST",
                f"composite/sobjects/{object_name}",
                body={"ids": chunk, "fields": list(fields)},
                object_name=object_name,
            )
            rows = reply.body if isinstance(reply.body, list) else []
            if len(rows) != len(chunk):
                raise RetryLater(
                    f"sObject Collections returned {len(rows)} records for {len(chunk)} ids",
                    url=reply.url,
                    object_name=object_name,
                )
            out.extend(dict(r) if isinstance(r, dict) else None for r in rows)
        return out

    # -- change detection -----------------------------------------------------------------------
    def updated(self, object_name: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        """``{"ids": [...], "latestDateCovered": ...}``: records changed in the window (≤30 days back)."""
        reply = self.request(
            "GET",
            f"sobjects/{object_name}/updated/",
            params={"start": sf_datetime(start), "end": sf_datetime(end)},
            object_name=object_name,
        )
        return dict(reply.body)

    def deleted(self, object_name: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        """``{"deletedRecords": [{"id", "deletedDate"}], "earliestDateAvailable", "latestDateCovered"}``."""
        reply = self.request(
            "GET",
            f"sobjects/{object_name}/deleted/",
            params={"start": sf_datetime(start), "end": sf_datetime(end)},
            object_name=object_name,
        )
        return dict(reply.body)

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


def _save_error(result: Mapping[str, Any], *, object_name: str, record: str | None) -> CrmsyncError:
    return error_from_save_result(
        list(result.get("errors") or []), url=None, object_name=object_name, record=record
    )


def subrequest_error(
    sub: Mapping[str, Any], *, object_name: str | None = None, record: str | None = None
) -> CrmsyncError | None:
    """The error of one Composite subresponse, or None when it succeeded."""
    status = int(sub.get("httpStatusCode") or 0)
    if 200 <= status < 300:
        return None
    return error_from_reply(
        status,
        json.dumps(sub.get("body")),
        url=str(sub.get("referenceId") or ""),
        object_name=object_name,
        record=record,
    )
