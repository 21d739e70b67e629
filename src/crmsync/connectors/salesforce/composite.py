"""Calls of many records or requests at once: Composite and sObject Collections.

Salesforce caps each call (:data:`COMPOSITE_SIZE` subrequests, :data:`COLLECTION_SIZE` records,
:data:`RETRIEVE_SIZE` ids) and refuses one id or external id twice in a collections call, so
longer inputs are cut into calls by :func:`plan_chunks` and the results put back in input order.
A record or subrequest that Salesforce refuses is a result in the list, not an exception:
:func:`subrequest_error` and :func:`save_error` turn one into the error tree of
:mod:`crmsync.errors` when the caller wants to raise it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from crmsync.connectors.salesforce.errors import error_from_reply, error_from_save_result
from crmsync.connectors.salesforce.session import SalesforceSession
from crmsync.errors import CrmsyncError, RetryLater

#: sObject Collections: records per create/update/upsert/delete call
COLLECTION_SIZE = 200
#: sObject Collections retrieve (POST form): ids per call
RETRIEVE_SIZE = 2000
#: Composite: subrequests per call
COMPOSITE_SIZE = 25


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


class CompositeCalls(SalesforceSession):
    """The Composite and sObject Collections resources of :class:`~.client.SalesforceClient`."""

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


def save_error(result: Mapping[str, Any], *, object_name: str, record: str | None) -> CrmsyncError:
    """The error of one refused SaveResult (a collections result whose ``success`` is false)."""
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
