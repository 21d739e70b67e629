"""The client for one Salesforce org: the REST resources of one record, metadata and changes.

:class:`SalesforceClient` is the one object the connector holds. It is built in layers, a module
each:

- :mod:`.session`: :class:`~.session.SalesforceSession`, the requests — login and one re-login,
  budget tracking, timeouts and TLS, failures mapped to :mod:`crmsync.errors` (the only module
  importing httpx);
- :mod:`.queries`: SOQL through the ``query`` resource and Bulk API 2.0 query jobs;
- :mod:`.composite`: Composite and sObject Collections calls, cut to Salesforce's sizes;
- this module: one record at a time (get, create, update, upsert, delete), describes and limits,
  the ``updated``/``deleted`` change resources.

Callers import the client and its sizes and helpers from here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from crmsync.connectors.salesforce.composite import (
    COLLECTION_SIZE,
    COMPOSITE_SIZE,
    RETRIEVE_SIZE,
    CompositeCalls,
    plan_chunks,
    save_error,
    subrequest_error,
)
from crmsync.connectors.salesforce.errors import ALREADY_DELETED
from crmsync.connectors.salesforce.queries import (
    BULK_FIRST_POLL,
    BULK_MAX_POLL,
    BULK_MAX_WAIT,
    BULK_PAGE_SIZE,
    SoqlQueries,
)
from crmsync.connectors.salesforce.session import Reply, SalesforceSession, dumps
from crmsync.errors import FixTheData

__all__ = [
    "BULK_FIRST_POLL",
    "BULK_MAX_POLL",
    "BULK_MAX_WAIT",
    "BULK_PAGE_SIZE",
    "COLLECTION_SIZE",
    "COMPOSITE_SIZE",
    "RETRIEVE_SIZE",
    "Reply",
    "SalesforceClient",
    "SalesforceSession",
    "dumps",
    "plan_chunks",
    "sf_datetime",
    "subrequest_error",
]


def sf_datetime(value: dt.datetime) -> str:
    """ISO-8601 in UTC, whole seconds, as the ``updated``/``deleted`` resources take it."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; give a timezone")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


class SalesforceClient(CompositeCalls, SoqlQueries):
    """One org, one session (renewed when it expires), many threads."""

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
                raise save_error(result, object_name=object_name, record=record)
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
