"""Everything one emulated org holds, shared by the route modules: schema, records, sessions, limits."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crmsync.sandbox.salesforce.auth import AppConfig, Sessions
from crmsync.sandbox.salesforce.late import LateCommits
from crmsync.sandbox.salesforce.schema import ObjectDef, Schema, standard_objects
from crmsync.sandbox.salesforce.store import Store

DAY = 86_400.0


class ApiUsage:
    """Daily API requests over a rolling 24 hours (timestamps kept per call, oldest dropped)."""

    def __init__(self, limit: int, clock: Callable[[], dt.datetime]) -> None:
        self.limit = limit
        self.clock = clock
        self._calls: deque[float] = deque()

    def _trim(self) -> None:
        horizon = self.clock().timestamp() - DAY
        while self._calls and self._calls[0] <= horizon:
            self._calls.popleft()

    @property
    def used(self) -> int:
        self._trim()
        return len(self._calls)

    def take(self) -> bool:
        """Count one call; False (and nothing counted) when the daily limit is spent."""
        self._trim()
        if len(self._calls) >= self.limit:
            return False
        self._calls.append(self.clock().timestamp())
        return True

    def clear(self) -> None:
        self._calls.clear()

    def header(self) -> str:
        return f"api-usage={self.used}/{self.limit}"


@dataclass
class ReportDef:
    """A report over one object: rows are computed from live records when it runs or is exported.

    In the Reports API a column is named ``Object.path`` (``Opportunity.Account.Name``).
    """

    id: str
    name: str
    object: str
    #: (column label, field path like ``Account.Name``)
    columns: list[tuple[str, str]]
    #: sort by this field path
    order_by: str = "Id"
    developer_name: str = ""
    folder_name: str = "Public Reports"
    #: TABULAR, or SUMMARY grouped by ``grouping``
    format: str = "TABULAR"
    #: the field path a summary report groups by
    grouping: str | None = None
    #: ``RowCount`` and ``s!``/``a!``/``m!``/``mx!`` + column name (sum, average, min, max)
    aggregates: list[str] = field(default_factory=lambda: ["RowCount"])
    #: saved filters: ``{"column", "operator", "value"}``
    filters: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.developer_name:
            self.developer_name = "".join(c if c.isalnum() else "_" for c in self.name).strip("_")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "object": self.object,
            "columns": [list(c) for c in self.columns],
            "order_by": self.order_by,
            "developer_name": self.developer_name,
            "folder_name": self.folder_name,
            "format": self.format,
            "grouping": self.grouping,
            "aggregates": list(self.aggregates),
            "filters": [dict(f) for f in self.filters],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReportDef:
        extra = {
            k: data[k]
            for k in ("developer_name", "folder_name", "format", "grouping", "aggregates", "filters")
            if k in data
        }
        return cls(
            data["id"],
            data["name"],
            data["object"],
            [(str(c[0]), str(c[1])) for c in data["columns"]],
            data.get("order_by", "Id"),
            **extra,
        )


@dataclass
class Org:
    schema: Schema
    store: Store
    sessions: Sessions
    usage: ApiUsage
    app: AppConfig
    clock: Callable[[], dt.datetime]
    api_version: str
    page_size: int
    base_url: str = "http://127.0.0.1"
    reports: dict[str, ReportDef] = field(default_factory=dict)
    #: writes that become visible to queries late
    late: LateCommits = field(default_factory=LateCommits)
    #: custom objects that survive a reset (from the constructor), by name
    fixed_custom: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def versions(self) -> list[str]:
        major = int(float(self.api_version))
        return [f"{v}.0" for v in range(31, major + 1)]

    def object(self, name: str) -> ObjectDef | None:
        return self.schema.get(name)

    def reset_schema(self, custom: Iterable[ObjectDef]) -> None:
        self.schema.replace([*standard_objects(), *custom])
