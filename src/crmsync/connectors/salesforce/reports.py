"""Salesforce reports for the report import: the Reports and Dashboards REST API, and exports of
any size through Bulk API 2.0.

- :meth:`~SalesforceReports.describe_report`: ``GET analytics/reports/{id}/describe``;
- :meth:`~SalesforceReports.run_report`: a synchronous run with its detail rows
  (``POST analytics/reports/{id}?includeDetails=true``, the report's own filters plus those
  given). Salesforce returns **at most 2,000 detail rows** this way; beyond them the answer says
  ``allData: false`` and the :class:`~crmsync.connectors.capabilities.ReportRun` says so, for the
  caller to tell the user to read the data with a query instead. Tabular reports answer one block of rows
  (``factMap["T!T"]``), summary reports one per group (``"0!T"``, ``"1!T"``, …), read in order;
- :meth:`~SalesforceReports.export_query`: the rows of a SOQL query through a Bulk API 2.0 query
  job (CSV pages, any size): the way to read what a report shows when it has more rows.

The web UI's export link (``/{report id}?export=1&xf=csv``) is not used: it is undocumented and
has broken for users before.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crmsync.connectors.capabilities import ReportRun

if TYPE_CHECKING:
    from crmsync.connectors.salesforce.client import SalesforceClient

#: detail rows a synchronous run returns at most
MAX_DETAIL_ROWS = 2000


class SalesforceReports:
    """The reports half of :class:`~crmsync.connectors.salesforce.connector.SalesforceConnector`."""

    client: SalesforceClient

    def describe_report(self, report_id: str) -> Mapping[str, Any]:
        """The report's ``reportMetadata``, ``reportExtendedMetadata`` and ``reportTypeMetadata``."""
        body = self.client.request(
            "GET", f"analytics/reports/{report_id}/describe", object_name="Report"
        ).body
        return body if isinstance(body, dict) else {}

    def run_report(self, report_id: str, filters: Sequence[Mapping[str, Any]] = ()) -> ReportRun:
        """Run the report now, with its detail rows (at most :data:`MAX_DETAIL_ROWS`)."""
        path = f"analytics/reports/{report_id}"
        params = {"includeDetails": "true"}
        if filters:
            metadata = dict(self.describe_report(report_id).get("reportMetadata") or {})
            metadata["reportFilters"] = [*(metadata.get("reportFilters") or []), *map(dict, filters)]
            reply = self.client.request(
                "POST", path + "?includeDetails=true", body={"reportMetadata": metadata}, object_name="Report"
            )
        else:
            reply = self.client.request("GET", path, params=params, object_name="Report")
        return report_rows(reply.body if isinstance(reply.body, dict) else {})

    def export_query(self, query: str) -> Iterator[dict[str, Any]]:
        """The rows of a SOQL query, streamed from a Bulk API 2.0 query job (text values)."""
        yield from self.client.bulk_query(query)


def report_rows(answer: Mapping[str, Any]) -> ReportRun:
    """The detail rows of a synchronous run's answer, keyed by column name, by the name without
    the object (``Opportunity.StageName`` → ``StageName``) and by label."""
    metadata = answer.get("reportMetadata") or {}
    columns = tuple(str(c) for c in metadata.get("detailColumns") or [])
    info = (answer.get("reportExtendedMetadata") or {}).get("detailColumnInfo") or {}
    labels = tuple(str((info.get(c) or {}).get("label") or c) for c in columns)
    fact_map = answer.get("factMap") or {}
    keys = [k for k in fact_map if k != "T!T"] or ["T!T"]
    keys.sort(key=_group_order)
    rows: list[dict[str, Any]] = []
    for key in keys:
        for row in (fact_map.get(key) or {}).get("rows") or []:
            values = [cell_value(c) for c in row.get("dataCells") or []]
            entry: dict[str, Any] = {}
            for column, label, value in zip(columns, labels, values, strict=False):
                entry[column] = value
                entry.setdefault(column.split(".", 1)[-1], value)
                entry.setdefault(label, value)
            rows.append(entry)
    total = None
    grand = (fact_map.get("T!T") or {}).get("aggregates") or []
    names = list(metadata.get("aggregates") or [])
    if "RowCount" in names and names.index("RowCount") < len(grand):
        counted = (grand[names.index("RowCount")] or {}).get("value")
        total = int(counted) if isinstance(counted, int) else None
    return ReportRun(
        columns=columns,
        labels=labels,
        rows=rows,
        all_data=bool(answer.get("allData", True)),
        row_limit=MAX_DETAIL_ROWS,
        total_rows=total,
    )


def cell_value(cell: Mapping[str, Any]) -> Any:
    """A data cell's value (a currency's amount; ``None`` for an empty cell)."""
    value = cell.get("value")
    if isinstance(value, Mapping) and "amount" in value:
        return value.get("amount")
    return value


def _group_order(key: str) -> tuple[int, str]:
    head = key.split("!", 1)[0]
    return (int(head), key) if head.isdigit() else (-1, key)
