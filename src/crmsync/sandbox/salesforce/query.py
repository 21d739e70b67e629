"""``/query`` and ``/queryAll``: SOQL through :mod:`.soql`, paged with query locators.

A query runs once; its shaped records are kept under a locator (``01g…``) and served a page at a
time through ``nextRecordsUrl`` (``/services/data/vXX.X/query/01g…-2000``). The page size is the
emulator's ``page_size`` unless ``Sforce-Query-Options: batchSize=N`` asks for another (200 to
2000). Locators live two days; the oldest are dropped beyond :data:`MAX_LOCATORS`.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from crmsync.sandbox.salesforce import soql
from crmsync.sandbox.salesforce.api import ApiError, Call, Reply, Router
from crmsync.sandbox.salesforce.ids import normalize
from crmsync.sandbox.salesforce.org import Org

MAX_LOCATORS = 200
LOCATOR_SECONDS = 2 * 86_400
_BATCH_RE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)


class StoreSource:
    """The record store as a :class:`soql.QuerySource` (with the optional describe extras)."""

    def __init__(self, org: Org, api_version: str) -> None:
        self.org = org
        self.api_version = api_version

    def object_exists(self, object_name: str) -> bool:
        return self.org.object(object_name) is not None

    def field_type(self, object_name: str, field: str) -> str | None:
        obj = self.org.object(object_name)
        f = obj.field(field) if obj is not None else None
        return f.type if f is not None else None

    def relationship(self, object_name: str, relationship_name: str) -> tuple[str, str] | None:
        obj = self.org.object(object_name)
        f = obj.relationships.get(relationship_name.lower()) if obj is not None else None
        if f is None or not f.reference_to:
            return None
        return f.name, f.reference_to[0]

    def rows(self, object_name: str, include_deleted: bool) -> Iterable[Mapping[str, Any]]:
        obj = self.org.object(object_name)
        if obj is None:
            return ()
        rows: Iterable[dict[str, Any]] = self.org.store.table(obj).values()
        late = self.org.late
        if late.pending:  # writes that have not committed yet show as they were before
            now = self.org.clock().timestamp()
            seen = (late.view(r["Id"], r, now) for r in list(rows))
            rows = [r for r in seen if r is not None]
        return rows if include_deleted else (r for r in rows if not r["IsDeleted"])

    def get(self, object_name: str, record_id: str) -> Mapping[str, Any] | None:
        # by the id's key prefix: a polymorphic reference (Task.WhatId) may point at any of its targets
        rid = normalize(record_id)
        found = self.org.store.find(rid) if rid else None
        row = found[1] if found is not None else None
        if row is not None and self.org.late.pending:
            row = self.org.late.view(row["Id"], row, self.org.clock().timestamp())
        if row is None or row["IsDeleted"]:
            return None
        return row

    def object_of(self, record_id: str) -> str | None:
        obj = self.org.store.object_of(normalize(record_id) or record_id)
        return obj.name if obj is not None else None

    def polymorphic_targets(self, object_name: str, field: str) -> tuple[str, ...]:
        obj = self.org.object(object_name)
        f = obj.field(field) if obj is not None else None
        return f.reference_to if f is not None and f.polymorphic else ()

    def field_names(self, object_name: str) -> Iterable[str]:
        obj = self.org.object(object_name)
        return list(obj.fields) if obj is not None else []

    def object_names(self) -> Iterable[str]:
        return list(self.org.schema.objects)


@dataclass
class Cursor:
    records: list[dict[str, Any]]
    total: int
    batch: int
    created: float


def soql_error(exc: soql.SoqlError) -> ApiError:
    return ApiError(400, exc.error_code, exc.message)


def run(org: Org, text: str, version: str, *, include_deleted: bool) -> soql.QueryResult:
    """Parse and execute ``text``; SoqlError becomes Salesforce's 400 reply."""
    try:
        parsed = soql.parse(text)
        return soql.execute(
            parsed, StoreSource(org, version), now=org.clock(), include_deleted=include_deleted
        )
    except soql.SoqlError as exc:
        raise soql_error(exc) from None


class Locators:
    def __init__(self, org: Org) -> None:
        self.org = org
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()

    def clear(self) -> None:
        self._cursors.clear()

    def open(self, cursor: Cursor) -> str:
        locator = self.org.store.ids.next("01g")
        self._cursors[locator] = cursor
        while len(self._cursors) > MAX_LOCATORS:
            self._cursors.popitem(last=False)
        return locator

    def get(self, locator: str) -> Cursor:
        cursor = self._cursors.get(locator)
        if cursor is None or time.monotonic() - cursor.created > LOCATOR_SECONDS:
            self._cursors.pop(locator, None)
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return cursor

    def __iter__(self) -> Iterator[str]:
        return iter(self._cursors)


def batch_size(call: Call, default: int) -> int:
    m = _BATCH_RE.search(call.headers.get("sforce-query-options", ""))
    if m is None:
        return default
    return max(200, min(2000, int(m.group(1))))


def register(router: Router, org: Org, locators: Locators) -> None:
    def page(call: Call, cursor: Cursor, locator: str | None, offset: int) -> Reply:
        end = min(offset + cursor.batch, len(cursor.records))
        body: dict[str, Any] = {"totalSize": cursor.total, "done": end >= len(cursor.records)}
        if not body["done"]:
            if locator is None:
                locator = locators.open(cursor)
            body["nextRecordsUrl"] = f"/services/data/v{call.version}/query/{locator}-{end}"
        body["records"] = cursor.records[offset:end]
        return Reply(body=body)

    def query(call: Call, include_deleted: bool) -> Reply:
        text = call.params.get("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        result = run(org, text, call.version, include_deleted=include_deleted)
        cursor = Cursor(result.records, result.total_size, batch_size(call, org.page_size), time.monotonic())
        return page(call, cursor, None, 0)

    def more(call: Call, locator: str) -> Reply:
        name, _, offset_text = locator.rpartition("-")
        if not name or not offset_text.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        cursor = locators.get(name)
        offset = int(offset_text)
        if offset > len(cursor.records):
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        cursor.batch = batch_size(call, cursor.batch)
        return page(call, cursor, name, offset)

    router.add("GET", "/query", lambda call: query(call, False))
    router.add("GET", "/queryAll", lambda call: query(call, True))
    router.add("GET", "/query/{locator}", more)
    router.add("GET", "/queryAll/{locator}", more)
