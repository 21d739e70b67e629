"""SOQL queries: the REST ``query`` resource page after page, and Bulk API 2.0 query jobs.

The REST resource suits reads of a few thousand records (2,000 a page, each page one API call);
:meth:`SoqlQueries.bulk_query` suits large ones (one job, a few polls, 50,000 CSV rows a page).
Both go through the requests of :class:`~.session.SalesforceSession`, so they count against the
budget and log in again like every other call.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

from crmsync.connectors.salesforce.session import SalesforceSession
from crmsync.errors import Fatal, RetryLater

#: Bulk API 2.0 query results: rows per page (``maxRecords``)
BULK_PAGE_SIZE = 50_000
#: Bulk API 2.0 query jobs: first pause between polls, longest pause, longest wait in all (seconds)
BULK_FIRST_POLL = 0.5
BULK_MAX_POLL = 10.0
BULK_MAX_WAIT = 30 * 60.0


class SoqlQueries(SalesforceSession):
    """The query resources of :class:`~.client.SalesforceClient`."""

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
