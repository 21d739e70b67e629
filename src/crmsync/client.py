"""The Python client an application (a Django service, a script) uses to hand records to crmsync.

::

    from crmsync.client import Client

    with Client("http://127.0.0.1:8080", token=os.environ["CRMSYNC_TOKEN"]) as crm:
        crm.upsert("usage", "ad-17", {"contract_id": contract_id, "product": "small", "quantity": 1})
        crm.delete("usage", "ad-18")
        contracts = crm.view("contracts", account_id=account_id)

Refusals raise the error tree of :mod:`crmsync.errors`: :class:`~crmsync.errors.LockedRecord` for a
locked record (409), :class:`~crmsync.errors.FixTheData` for any other refusal of the records (4xx),
:class:`~crmsync.errors.Fatal` for a bad token (401), :class:`~crmsync.errors.RetryLater` when crmsync
cannot be reached or answers 5xx — the records were not taken then; send them again (with the same
``delivery_id`` they are never applied twice).

Every record is sent with a ``delivery_id`` (a random one when the caller gives none), and a
request crmsync refuses for now — 503 or 429, e.g. its backpressure past ``web.ingest_backlog`` —
is sent again after the ``Retry-After`` it names (at most ``retries`` times) with the same
delivery ids, so a record is queued once however often it is sent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, TypedDict

import httpx

from crmsync.errors import CrmsyncError, Fatal, FixTheData, LockedRecord, RetryLater


class RecordIn(TypedDict, total=False):
    key: str
    operation: Literal["upsert", "delete"]
    fields: Mapping[str, Any]
    delivery_id: str


class Client:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = 5,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        #: how often a request answered 503/429 is sent again, and the longest wait before each
        self.retries = retries
        self.max_wait = max_wait
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": "crmsync-client"},
            timeout=timeout,
            transport=transport,
        )

    def submit(self, flow: str, records: Iterable[RecordIn]) -> dict[str, int]:
        """Queue ``records`` on ``flow`` in one request; returns ``{"accepted", "duplicates"}``.

        A record without a ``delivery_id`` is given one, so that sending the request again (after a
        503 or 429) never queues it twice."""
        body = {"records": [{**r, "delivery_id": r.get("delivery_id") or uuid.uuid4().hex} for r in records]}
        result: dict[str, int] = self._call("POST", f"/api/v1/flows/{flow}/records", json=body)
        return result

    def upsert(
        self, flow: str, key: str, fields: Mapping[str, Any], *, delivery_id: str | None = None
    ) -> None:
        record: RecordIn = {"key": key, "operation": "upsert", "fields": fields}
        if delivery_id is not None:
            record["delivery_id"] = delivery_id
        self.submit(flow, [record])

    def delete(self, flow: str, key: str, *, delivery_id: str | None = None) -> None:
        record: RecordIn = {"key": key, "operation": "delete"}
        if delivery_id is not None:
            record["delivery_id"] = delivery_id
        self.submit(flow, [record])

    def view(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of a read-through view, read live from the system that owns them."""
        query = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
        result = self._call("GET", f"/api/v1/views/{name}", params=query)
        records: list[dict[str, Any]] = result["records"]
        return records

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise RetryLater(f"crmsync cannot be reached: {exc}", url=path) from exc
            if response.status_code < 300:
                return response.json()
            if response.status_code not in (429, 503) or attempt == self.retries:
                raise _error(response)
            self._sleep(min(self.max_wait, _retry_after(response.headers.get("retry-after"), attempt)))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _retry_after(header: str | None, attempt: int) -> float:
    """Seconds to wait before sending again: the reply's ``Retry-After`` (seconds), else 1, 2, 4 …"""
    if header is not None and header.strip().isdigit():
        return float(header.strip())
    return float(2**attempt)


def _error(response: httpx.Response) -> CrmsyncError:
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    message = error.get("message") or response.text or response.reason_phrase
    kw: dict[str, Any] = {
        "status": response.status_code,
        "vendor_code": error.get("code"),
        "url": str(response.request.url),
        "details": error.get("details"),
    }
    if response.status_code == 409:
        return LockedRecord(message, **kw)
    if response.status_code in (401, 403):
        return Fatal(message, **kw)
    if response.status_code == 429 or response.status_code >= 500:
        return RetryLater(message, **kw)
    return FixTheData(message, **kw)
