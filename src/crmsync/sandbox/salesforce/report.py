"""The report CSV export servlet: ``GET /{00O…}?isdtp=p1&export=1&enc=UTF-8&xf=csv``.

Not an API call (no ``Sforce-Limit-Info``, not counted): the browser's export link, authenticated
by the ``sid`` cookie (a Bearer header works too). Rows are computed from the live records when
exported; ids show in their 15-character form, dates as ``M/D/YYYY`` (an en_US user), and the
file ends with the footer lines real exports have.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from crmsync.sandbox.salesforce.org import Org, ReportDef
from crmsync.sandbox.salesforce.schema import ObjectDef

FOOTER = (
    "Confidential Information - Do Not Distribute",
    "Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved.",
)


def _value(org: Org, obj: ObjectDef, rec: dict[str, Any], path: str) -> Any:
    *parents, name = path.split(".")
    for rel in parents:
        f = obj.relationships.get(rel.lower())
        target_id = rec.get(f.name) if f is not None else None
        found = org.store.find(target_id) if target_id else None
        if found is None:
            return None
        obj, rec = found
    return rec.get(name)


def _cell(value: Any, type_hint: str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.2f}"
    if type_hint == "id" or type_hint == "reference":
        return str(value)[:15]
    if type_hint == "date":
        d = dt.date.fromisoformat(value)
        return f"{d.month}/{d.day}/{d.year}"
    return str(value)


def _type_of(org: Org, report: ReportDef, path: str) -> str | None:
    obj = org.object(report.object)
    *parents, name = path.split(".")
    for rel in parents:
        f = obj.relationships.get(rel.lower()) if obj is not None else None
        obj = org.object(f.reference_to[0]) if f is not None else None
    f = obj.field(name) if obj is not None else None
    return f.type if f is not None else None


def export_csv(org: Org, report: ReportDef) -> str:
    obj = org.object(report.object)
    if obj is None:
        raise ValueError(f"report {report.id} reads unknown object {report.object}")
    records = [r for r in org.store.table(obj).values() if not r["IsDeleted"]]
    records.sort(key=lambda r: (str(_value(org, obj, r, report.order_by) or ""), r["Id"]))
    types = [_type_of(org, report, path) for _, path in report.columns]
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow([label for label, _ in report.columns])
    for rec in records:
        writer.writerow(
            [
                _cell(_value(org, obj, rec, path), t)
                for (_, path), t in zip(report.columns, types, strict=True)
            ]
        )
    writer.writerow([])
    writer.writerow([f"Grand Totals ({len(records)} records)"])
    for line in FOOTER:
        writer.writerow([line])
    return buf.getvalue()
