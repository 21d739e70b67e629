"""sObject REST resources: describe, CRUD, upsert by external id, ``/updated``, ``/deleted``, ``/limits``.

Statuses as Salesforce answers them: create 201 with ``{"id","success","errors"}``; PATCH and
DELETE 204 with no body; upsert 201/200 with ``created`` (API ≥ 46.0), 300 with the matching
record URLs when an external id value is on several records; unknown object or record 404
``NOT_FOUND``; a deleted record 404 ``ENTITY_IS_DELETED``; an id of another object's type 400
``MALFORMED_ID``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from crmsync.sandbox.salesforce.api import ApiError, Call, Reply, Router, not_found
from crmsync.sandbox.salesforce.ids import normalize
from crmsync.sandbox.salesforce.org import Org
from crmsync.sandbox.salesforce.schema import ObjectDef
from crmsync.sandbox.salesforce.store import AmbiguousMatch, DmlError
from crmsync.sandbox.salesforce.values import format_datetime, parse_datetime

UPDATED_DAYS = 30
DELETED_DAYS = 15


def record_url(version: str, object_name: str, record_id: str) -> str:
    return f"/services/data/v{version}/sobjects/{object_name}/{record_id}"


def shape(
    version: str, obj: ObjectDef, rec: dict[str, Any], fields: list[str] | None = None
) -> dict[str, Any]:
    """A record as the REST API returns it: ``attributes`` first, then the fields."""
    out: dict[str, Any] = {"attributes": {"type": obj.name, "url": record_url(version, obj.name, rec["Id"])}}
    if fields is None:
        out.update(rec)
    else:
        for name in fields:
            out[name] = rec.get(name)
        out.setdefault("Id", rec["Id"])
    return out


def field_list(obj: ObjectDef, raw: str | list[str] | None) -> list[str] | None:
    """Canonical names of ``?fields=A,B`` (None: all fields); INVALID_FIELD for unknown names."""
    if raw is None or raw == "":
        return None
    names = raw.split(",") if isinstance(raw, str) else list(raw)
    out = []
    for name in names:
        f = obj.field(name.strip())
        if f is None:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"No such column '{name.strip()}' on entity '{obj.name}'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name. Please reference "
                "your WSDL or the describe call for the appropriate names.",
            )
        out.append(f.name)
    return out


def require_object(org: Org, name: str) -> ObjectDef:
    obj = org.object(name)
    if obj is None:
        raise not_found()
    return obj


def resolve_id(obj: ObjectDef, raw: str, *, writing: bool) -> str:
    """The 18-character id of a path segment, or Salesforce's error for a bad one."""
    rid = normalize(raw)
    if rid is None:
        raise ApiError(
            404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {raw}"
        )
    if rid[:3] != obj.key_prefix:
        if writing:
            raise ApiError(400, "MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {raw}", ["Id"])
        raise not_found()
    return rid


def _floor_minute(value: dt.datetime) -> dt.datetime:
    return value.replace(second=0, microsecond=0)


def register(router: Router, org: Org) -> None:
    store = org.store

    def resources(call: Call) -> Reply:
        base = f"/services/data/v{call.version}"
        names = (
            "sobjects",
            "query",
            "queryAll",
            "composite",
            "jobs",
            "limits",
            "analytics",
            "tooling",
            "search",
        )
        return Reply(body={n: f"{base}/{n}" for n in names})

    def limits(call: Call) -> Reply:
        used = org.usage.used
        daily = org.usage.limit

        def pair(maximum: int, remaining: int | None = None) -> dict[str, int]:
            return {"Max": maximum, "Remaining": maximum if remaining is None else remaining}

        return Reply(
            body={
                "ConcurrentAsyncGetReportInstances": pair(200),
                "ConcurrentSyncReportRuns": pair(20),
                "DailyApiRequests": pair(daily, max(daily - used, 0)),
                "DailyAsyncApexExecutions": pair(250000),
                "DailyBulkApiBatches": pair(15000),
                "DailyBulkV2QueryFileStorageMB": pair(976562),
                "DailyBulkV2QueryJobs": pair(10000),
                "DataStorageMB": pair(5, 5),
                "FileStorageMB": pair(20),
                "HourlyAsyncReportRuns": pair(1200),
                "HourlySyncReportRuns": pair(500),
                "SingleEmail": pair(15),
            }
        )

    def sobjects(call: Call) -> Reply:
        return Reply(
            body={
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [o.summary(call.version) for o in org.schema.objects.values()],
            }
        )

    def sobject(call: Call, object: str) -> Reply:
        obj = require_object(org, object)
        if call.method == "POST":
            return create(call, obj)
        live = [r for r in store.table(obj).values() if not r["IsDeleted"]]
        live.sort(key=lambda r: r["LastModifiedDate"], reverse=True)
        recent = [
            {
                "attributes": {"type": obj.name, "url": record_url(call.version, obj.name, r["Id"])},
                "Id": r["Id"],
                **({"Name": r["Name"]} if "Name" in r else {}),
            }
            for r in live[:10]
        ]
        return Reply(body={"objectDescribe": obj.summary(call.version), "recentItems": recent})

    def create(call: Call, obj: ObjectDef) -> Reply:
        rid = store.create(obj, call.json_object(), client=call.client)
        return Reply(201, {"id": rid, "success": True, "errors": []})

    def describe(call: Call, object: str) -> Reply:
        return Reply(body=org.schema.describe(require_object(org, object), call.version))

    def window(call: Call, max_days: int) -> tuple[dt.datetime, dt.datetime]:
        raw_start, raw_end = call.params.get("start"), call.params.get("end")
        if not raw_start or not raw_end:
            missing = "start" if not raw_start else "end"
            raise ApiError(400, "MISSING_ARGUMENT", f"{missing} parameter is required")
        start, end = parse_datetime(raw_start), parse_datetime(raw_end)
        if start is None or end is None:
            bad = raw_start if start is None else raw_end
            raise ApiError(400, "INVALID_REPLICATION_DATE", f"Invalid date: {bad}")
        now = org.clock()
        start, end = _floor_minute(start), _floor_minute(end)
        if end - start < dt.timedelta(minutes=1):
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        if start < now - dt.timedelta(days=max_days):
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", f"startDate cannot be more than {max_days} days ago"
            )
        return start, min(end, _floor_minute(now))

    def updated(call: Call, object: str) -> Reply:
        obj = require_object(org, object)
        start, latest = window(call, UPDATED_DAYS)
        lo, hi = format_datetime(start), format_datetime(latest)
        ids = [
            rid
            for rid, rec in store.table(obj).items()
            if not rec["IsDeleted"] and lo <= rec["SystemModstamp"] < hi
        ]
        return Reply(body={"ids": ids, "latestDateCovered": hi})

    def deleted(call: Call, object: str) -> Reply:
        obj = require_object(org, object)
        start, latest = window(call, DELETED_DAYS)
        lo, hi = format_datetime(start), format_datetime(latest)
        found = [
            {"id": rid, "deletedDate": when}
            for name, rid, when in store.deleted_log
            if name == obj.name and lo <= when < hi
        ]
        earliest = format_datetime(_floor_minute(org.clock() - dt.timedelta(days=DELETED_DAYS)))
        return Reply(
            body={"deletedRecords": found, "earliestDateAvailable": earliest, "latestDateCovered": hi}
        )

    def record(call: Call, object: str, id: str) -> Reply:
        obj = require_object(org, object)
        rid = resolve_id(obj, id, writing=call.method != "GET")
        if call.method == "GET":
            rec = store.live(obj, rid)
            return Reply(body=shape(call.version, obj, rec, field_list(obj, call.params.get("fields"))))
        if call.method == "PATCH":
            store.update(obj, rid, call.json_object(), client=call.client)
        else:
            store.delete(obj, rid, client=call.client)
        return Reply(204)

    def by_external_id(call: Call, object: str, field: str, rest: str) -> Reply:
        obj = require_object(org, object)
        f = store.ext_field(obj, field)
        if call.method == "PATCH":
            body = call.json_object()
            try:
                rid, created = store.upsert(
                    obj, f.name, rest, body, client=call.client, update_only=call.flag("updateOnly")
                )
            except AmbiguousMatch as exc:
                return Reply(300, [record_url(call.version, obj.name, i) for i in exc.ids])
            if float(call.version) < 46.0:
                return Reply(201, {"id": rid, "success": True, "errors": []}) if created else Reply(204)
            return Reply(
                201 if created else 200, {"id": rid, "success": True, "errors": [], "created": created}
            )
        matches = store.match_external(obj, f, rest)
        if len(matches) > 1:
            return Reply(300, [record_url(call.version, obj.name, i) for i in matches])
        if not matches:
            raise not_found()
        if call.method == "DELETE":
            store.delete(obj, matches[0], client=call.client)
            return Reply(204)
        rec = store.live(obj, matches[0])
        return Reply(body=shape(call.version, obj, rec, field_list(obj, call.params.get("fields"))))

    router.add("GET", "", resources)
    router.add("GET", "/limits", limits)
    router.add("GET", "/sobjects", sobjects)
    router.add("GET POST", "/sobjects/{object}", sobject)
    router.add("GET", "/sobjects/{object}/describe", describe)
    router.add("GET", "/sobjects/{object}/updated", updated)
    router.add("GET", "/sobjects/{object}/deleted", deleted)
    router.add("GET PATCH DELETE", "/sobjects/{object}/{id}", record)
    router.add("GET PATCH DELETE", "/sobjects/{object}/{field}/{rest}", by_external_id)


__all__ = ["DmlError", "record_url", "register", "require_object", "resolve_id", "shape"]
