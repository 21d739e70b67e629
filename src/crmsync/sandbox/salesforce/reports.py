"""The Reports and Dashboards REST API (``/analytics/reports``) and the ``Report`` object.

Routes under ``/services/data/vXX.X``::

    GET        /analytics/reports                       name, id, url, describeUrl, instancesUrl
    GET        /analytics/reports/{id}/describe         reportMetadata, …ExtendedMetadata, …TypeMetadata
    GET, POST  /analytics/reports/{id}[?includeDetails]  a synchronous run (POST: {"reportMetadata": …})
    POST       /analytics/reports/{id}/instances        an asynchronous run: {"id": "0LG…", "status": "New"}
    GET        /analytics/reports/{id}/instances        the report's instances
    GET        /analytics/reports/{id}/instances/{iid}  the instance's result (done when first read)

A run answers ``factMap`` keyed ``T!T`` (tabular), or ``0!T``, ``1!T`` … per group and ``T!T`` for
the grand total (summary, one grouping down). At most :data:`MAX_DETAIL_ROWS` detail rows come
back; beyond them ``allData`` is false (aggregates still count every row). ``reportFilters`` from
the report and from a POST body narrow the rows (``equals``, ``notEqual``, ``lessThan``,
``greaterThan``, ``lessOrEqual``, ``greaterOrEqual``, ``contains``, ``notContain``, ``startsWith``;
``equals``/``notEqual`` take comma-separated alternatives). A report is also a ``Report`` record
(``SELECT Id, Name, DeveloperName, FolderName, Format FROM Report``). Excel output is not emulated:
``Accept: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet`` answers 406.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from crmsync.sandbox.salesforce.api import ApiError, Call, Reply, Router, not_found
from crmsync.sandbox.salesforce.ids import normalize
from crmsync.sandbox.salesforce.org import Org, ReportDef
from crmsync.sandbox.salesforce.schema import NUMBER_TYPES, ObjectDef
from crmsync.sandbox.salesforce.values import format_datetime

MAX_DETAIL_ROWS = 2000
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
OPERATORS = frozenset(
    {
        "equals",
        "notEqual",
        "lessThan",
        "greaterThan",
        "lessOrEqual",
        "greaterOrEqual",
        "contains",
        "notContain",
        "startsWith",
    }
)
_AGGREGATES = {"s": "Sum", "a": "Average", "m": "Smallest", "mx": "Largest"}


def install(org: Org, report: ReportDef) -> None:
    """Add ``report`` to the org: its definition, and its ``Report`` record for SOQL."""
    org.reports[report.id] = report
    obj = org.object("Report")
    assert obj is not None
    table = org.store.table(obj)
    table.pop(report.id, None)
    rid = org.store.create(obj, {}, system=True, record_id=report.id)
    # the fields are read-only through the API: set them on the stored record
    table[rid].update(
        {
            "Name": report.name,
            "DeveloperName": report.developer_name,
            "FolderName": report.folder_name,
            "Format": report.format.capitalize(),
        }
    )


# -- columns and values ------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str  # Opportunity.Account.Name
    label: str
    path: str  # Account.Name
    type: str  # the field's describe type


def _resolve(org: Org, report: ReportDef, path: str) -> str | None:
    """The describe type at ``path`` from the report's object, None when there is no such field."""
    obj: ObjectDef | None = org.object(report.object)
    *parents, name = path.split(".")
    for rel in parents:
        f = obj.relationships.get(rel.lower()) if obj is not None else None
        obj = org.object(f.reference_to[0]) if f is not None and f.reference_to else None
    f = obj.field(name) if obj is not None else None
    return f.type if f is not None else None


def _value(org: Org, report: ReportDef, rec: dict[str, Any], path: str) -> Any:
    *parents, name = path.split(".")
    obj = org.object(report.object)
    for rel in parents:
        f = obj.relationships.get(rel.lower()) if obj is not None else None
        target = rec.get(f.name) if f is not None else None
        found = org.store.find(target) if target else None
        if found is None or found[1]["IsDeleted"]:
            return None
        obj, rec = found
    return rec.get(name)


def _data_type(field_type: str) -> str:
    return {"reference": "id", "combobox": "string", "long": "int"}.get(field_type, field_type)


def _label(value: Any, field_type: str) -> str:
    if value is None or value == "":
        return "-"
    if field_type == "currency":
        return f"${value:,.2f}" if value >= 0 else f"-${-value:,.2f}"
    if field_type == "percent":
        return f"{value:g}%"
    if field_type in NUMBER_TYPES:
        return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
    if field_type == "date":
        d = dt.date.fromisoformat(str(value))
        return f"{d.month}/{d.day}/{d.year}"
    if field_type == "boolean":
        return "true" if value else "false"
    return str(value)


def _cell(value: Any, field_type: str) -> dict[str, Any]:
    if field_type == "currency":
        return {"label": _label(value, field_type), "value": {"amount": value, "currency": None}}
    return {"label": _label(value, field_type), "value": value if value != "" else None}


# -- filters -----------------------------------------------------------------------------------


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message)


def _filter(columns: dict[str, Column], spec: Any) -> Callable[[Callable[[str], Any]], bool]:
    if not isinstance(spec, dict) or not isinstance(spec.get("column"), str):
        raise _bad_request("A report filter needs a column, an operator and a value.")
    column = columns.get(spec["column"])
    if column is None:
        raise _bad_request(f"The column {spec['column']} specified for the filter is invalid.")
    operator = spec.get("operator")
    if operator not in OPERATORS:
        raise _bad_request(f"The filter operator {operator} is invalid for the column {column.name}.")
    raw = "" if spec.get("value") is None else str(spec["value"])

    def key(v: Any) -> Any:
        if v is None or v == "":
            return None
        if column.type in NUMBER_TYPES:
            try:
                return float(v)
            except (TypeError, ValueError):
                raise _bad_request(f"The value {v} is invalid for the column {column.name}.") from None
        if column.type == "boolean":
            return str(v).lower() in ("true", "1")
        if column.type in ("id", "reference"):
            return (normalize(str(v)) or str(v)).lower()
        return str(v).lower()

    alternatives = [key(part.strip()) for part in raw.split(",")] if raw else [None]
    wanted = alternatives[0]
    text = raw.lower()

    def check(get: Callable[[str], Any]) -> bool:
        have = key(get(column.path))
        if operator == "equals":
            return have in alternatives
        if operator == "notEqual":
            return have not in alternatives
        if operator in ("contains", "notContain", "startsWith"):
            s = "" if have is None else str(have)
            hit = s.startswith(text) if operator == "startsWith" else text in s
            return hit if operator != "notContain" else not hit
        if have is None or wanted is None:
            return False
        if operator == "lessThan":
            return bool(have < wanted)
        if operator == "greaterThan":
            return bool(have > wanted)
        if operator == "lessOrEqual":
            return bool(have <= wanted)
        return bool(have >= wanted)

    return check


# -- a run -------------------------------------------------------------------------------------


class Run:
    """One run of a report, with the filters of the report and of the request."""

    def __init__(self, org: Org, report: ReportDef, version: str, extra_filters: Iterable[Any] = ()) -> None:
        self.org = org
        self.report = report
        self.version = version
        self.prefix = report.object
        obj = org.object(report.object)
        if obj is None:
            raise not_found()
        self.obj = obj
        self.detail = [self.column(path, label) for label, path in report.columns]
        self.filters = [*report.filters, *extra_filters]
        self.grouping = self.column(report.grouping) if report.grouping else None

    def column(self, path: str, label: str | None = None) -> Column:
        field_type = _resolve(self.org, self.report, path)
        if field_type is None:
            raise _bad_request(f"The column {self.prefix}.{path} is invalid.")
        if label is None:
            label = next((lab for lab, p in self.report.columns if p == path), path.split(".")[-1])
        return Column(f"{self.prefix}.{path}", label, path, field_type)

    def filter_columns(self) -> dict[str, Column]:
        """Every column a filter may name: the object's fields and the paths the report shows."""
        out = {f"{self.prefix}.{f.name}": self.column(f.name, f.label) for f in self.obj.fields.values()}
        out.update({c.name: c for c in self.detail})
        if self.grouping is not None:
            out[self.grouping.name] = self.grouping
        return out

    def metadata(self, include_details: bool) -> dict[str, Any]:
        r = self.report
        return {
            "aggregates": list(r.aggregates),
            "chart": None,
            "currency": None,
            "description": None,
            "detailColumns": [c.name for c in self.detail],
            "developerName": r.developer_name,
            "groupingsAcross": [],
            "groupingsDown": (
                [{"dateGranularity": "None", "name": self.grouping.name, "sortOrder": "Asc"}]
                if self.grouping is not None
                else []
            ),
            "hasDetailRows": include_details,
            "hasRecordCount": True,
            "id": r.id,
            "name": r.name,
            "reportBooleanFilter": None,
            "reportFilters": [dict(f) for f in self.filters if isinstance(f, dict)],
            "reportFormat": r.format,
            "reportType": {"label": f"{self.obj.label_plural or self.obj.name}", "type": self.obj.name},
            "scope": "organization",
            "showGrandTotal": True,
            "showSubtotals": True,
            "sortBy": [],
            "standardDateFilter": None,
        }

    def _aggregate_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        for name in self.report.aggregates:
            if name == "RowCount":
                info[name] = {"dataType": "int", "label": "Record Count"}
                continue
            kind = name.partition("!")[0]
            col = self._aggregate_column(name)
            info[name] = {"dataType": _data_type(col.type), "label": f"{_AGGREGATES[kind]} of {col.label}"}
        for entry in info.values():
            entry.update({"acrossGroupingContext": None, "downGroupingContext": None})
        return info

    def _aggregate_column(self, name: str) -> Column:
        kind, _, column = name.partition("!")
        if kind not in _AGGREGATES or not column.startswith(self.prefix + "."):
            raise _bad_request(f"The aggregate {name} is invalid.")
        return self.column(column[len(self.prefix) + 1 :])

    def extended_metadata(self) -> dict[str, Any]:
        grouping_info: dict[str, Any] = {}
        if self.grouping is not None:
            grouping_info[self.grouping.name] = {
                "dataType": _data_type(self.grouping.type),
                "groupingLevel": 0,
                "label": self.grouping.label,
            }
        return {
            "aggregateColumnInfo": self._aggregate_info(),
            "detailColumnInfo": {
                c.name: {"dataType": _data_type(c.type), "label": c.label} for c in self.detail
            },
            "groupingColumnInfo": grouping_info,
        }

    def describe(self) -> dict[str, Any]:
        columns = self.filter_columns()
        return {
            "reportExtendedMetadata": self.extended_metadata(),
            "reportMetadata": self.metadata(False),
            "reportTypeMetadata": {
                "categories": [
                    {
                        "columns": {
                            c.name: {"dataType": _data_type(c.type), "filterable": True, "label": c.label}
                            for c in columns.values()
                        },
                        "label": self.obj.label or self.obj.name,
                    }
                ],
                "dataTypeFilterOperatorMap": {},
            },
        }

    def _aggregates(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for name in self.report.aggregates:
            if name == "RowCount":
                out.append({"label": f"{len(rows):,}", "value": len(rows)})
                continue
            col = self._aggregate_column(name)
            values = [v for v in (_value(self.org, self.report, r, col.path) for r in rows) if v is not None]
            kind = name.partition("!")[0]
            result: Any = None
            if values:
                result = (
                    sum(values)
                    if kind == "s"
                    else sum(values) / len(values)
                    if kind == "a"
                    else min(values)
                    if kind == "m"
                    else max(values)
                )
            out.append({"label": _label(result, col.type), "value": result})
        return out

    def result(self, include_details: bool) -> dict[str, Any]:
        columns = self.filter_columns()
        checks = [_filter(columns, f) for f in self.filters]
        for name in self.report.aggregates:
            if name != "RowCount":
                self._aggregate_column(name)
        records = []
        for rec in self.org.store.table(self.obj).values():
            if rec["IsDeleted"]:
                continue

            def get(path: str, rec: dict[str, Any] = rec) -> Any:
                return _value(self.org, self.report, rec, path)

            if all(check(get) for check in checks):
                records.append(rec)
        records.sort(
            key=lambda r: (str(_value(self.org, self.report, r, self.report.order_by) or ""), r["Id"])
        )
        budget = MAX_DETAIL_ROWS

        def rows(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
            nonlocal budget
            if not include_details:
                return []
            shown = group[: max(budget, 0)]
            budget -= len(shown)
            return [
                {"dataCells": [_cell(_value(self.org, self.report, r, c.path), c.type) for c in self.detail]}
                for r in shown
            ]

        fact_map: dict[str, Any] = {}
        groupings: list[dict[str, Any]] = []
        if self.grouping is None:
            fact_map["T!T"] = {"aggregates": self._aggregates(records), "rows": rows(records)}
        else:
            grouping = self.grouping
            groups: dict[Any, list[dict[str, Any]]] = {}
            for rec in records:
                groups.setdefault(_value(self.org, self.report, rec, grouping.path), []).append(rec)
            ordered = sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0] or "").lower()))
            for i, (value, members) in enumerate(ordered):
                groupings.append(
                    {"groupings": [], "key": str(i), "label": _label(value, grouping.type), "value": value}
                )
                fact_map[f"{i}!T"] = {"aggregates": self._aggregates(members), "rows": rows(members)}
            fact_map["T!T"] = {"aggregates": self._aggregates(records), "rows": []}
        return {
            "allData": not include_details or len(records) <= MAX_DETAIL_ROWS,
            "factMap": fact_map,
            "groupingsAcross": {"groupings": []},
            "groupingsDown": {"groupings": groupings},
            "hasDetailRows": include_details,
            "reportExtendedMetadata": self.extended_metadata(),
            "reportMetadata": self.metadata(include_details),
        }


# -- instances and routes --------------------------------------------------------------------------


@dataclass
class Instance:
    id: str
    report_id: str
    request_date: str
    include_details: bool
    filters: list[Any]
    result: dict[str, Any] | None = None
    completion_date: str | None = None

    def attributes(self, org: Org, version: str) -> dict[str, Any]:
        return {
            "completionDate": self.completion_date,
            "hasDetailRows": self.include_details,
            "id": self.id,
            "ownerId": org.app.user_id,
            "requestDate": self.request_date,
            "status": "Success" if self.result is not None else "New",
            "url": f"/services/data/v{version}/analytics/reports/{self.report_id}/instances/{self.id}",
        }


class Reports:
    """The asynchronous instances of the org's reports (cleared with the org)."""

    def __init__(self, org: Org) -> None:
        self.org = org
        self.instances: dict[str, Instance] = {}

    def clear(self) -> None:
        self.instances.clear()


def _report(org: Org, report_id: str) -> ReportDef:
    report = org.reports.get(normalize(report_id) or "")
    if report is None:
        raise not_found()
    return report


def _request_filters(call: Call) -> list[Any]:
    if call.method != "POST" or not call.body.strip():
        return []
    body = call.json_object()
    meta = body.get("reportMetadata") or {}
    if not isinstance(meta, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "reportMetadata must be an object")
    filters = meta.get("reportFilters") or []
    if not isinstance(filters, list):
        raise ApiError(400, "JSON_PARSER_ERROR", "reportFilters must be a list")
    return filters


def _include_details(call: Call, default: bool) -> bool:
    raw = call.params.get("includeDetails")
    return default if raw is None else str(raw).lower() == "true"


def register(router: Router, org: Org, reports: Reports) -> None:
    def base(call: Call, report_id: str) -> str:
        return f"/services/data/v{call.version}/analytics/reports/{report_id}"

    def listing(call: Call) -> Reply:
        return Reply(
            body=[
                {
                    "describeUrl": base(call, r.id) + "/describe",
                    "id": r.id,
                    "instancesUrl": base(call, r.id) + "/instances",
                    "name": r.name,
                    "url": base(call, r.id),
                }
                for r in org.reports.values()
            ]
        )

    def describe(call: Call, report_id: str) -> Reply:
        return Reply(body=Run(org, _report(org, report_id), call.version).describe())

    def run(call: Call, report_id: str) -> Reply:
        report = _report(org, report_id)
        if XLSX in call.headers.get("accept", ""):
            raise ApiError(406, "NOT_ACCEPTABLE", "Excel report output is not emulated by the sandbox")
        execution = Run(org, report, call.version, _request_filters(call))
        body = execution.result(_include_details(call, False))
        body["attributes"] = {
            "describeUrl": base(call, report.id) + "/describe",
            "instancesUrl": base(call, report.id) + "/instances",
            "reportId": report.id,
            "reportName": report.name,
            "type": "Report",
        }
        return Reply(body=body)

    def start(call: Call, report_id: str) -> Reply:
        report = _report(org, report_id)
        filters = _request_filters(call)
        Run(org, report, call.version, filters).result(False)  # refuse bad filters now, as Salesforce does
        instance = Instance(
            org.store.ids.next("0LG"),
            report.id,
            format_datetime(org.clock()),
            _include_details(call, True),
            filters,
        )
        reports.instances[instance.id] = instance
        return Reply(body=instance.attributes(org, call.version))

    def instances(call: Call, report_id: str) -> Reply:
        report = _report(org, report_id)
        return Reply(
            body=[
                i.attributes(org, call.version)
                for i in reports.instances.values()
                if i.report_id == report.id
            ]
        )

    def instance(call: Call, report_id: str, instance_id: str) -> Reply:
        report = _report(org, report_id)
        found = reports.instances.get(normalize(instance_id) or "")
        if found is None or found.report_id != report.id:
            raise not_found()
        if found.result is None:  # the run completes when first read
            found.result = Run(org, report, call.version, found.filters).result(found.include_details)
            found.completion_date = format_datetime(org.clock())
        return Reply(
            body={**json.loads(json.dumps(found.result)), "attributes": found.attributes(org, call.version)}
        )

    router.add("GET", "/analytics/reports", listing)
    router.add("GET", "/analytics/reports/{report_id}/describe", describe)
    router.add("POST", "/analytics/reports/{report_id}/instances", start)
    router.add("GET", "/analytics/reports/{report_id}/instances", instances)
    router.add("GET", "/analytics/reports/{report_id}/instances/{instance_id}", instance)
    router.add("GET POST", "/analytics/reports/{report_id}", run)
