"""Whole objects read for a backfill (``crmsync migrate``, and ``crmsync preview`` / ``crmsync sync`` of
a flow that reads Salesforce): the records' chosen fields in key order, through a SOQL query (REST,
page after page) or, from :data:`BULK_THRESHOLD` records on, a Bulk API 2.0 query job (Salesforce's
own advice for large reads). Records come out alike either way: flat fields (a parent's field as
``Parent.Field``, no ``attributes``), stamped with their ``SystemModstamp``.

Fields read through a polymorphic relationship beyond its ``Name`` object (a Task's
``What.Amount``, ``What.Account.Name``) are read with a ``TYPEOF`` built from the describes, by the
same builder as the poller's query (:mod:`.polymorphic`), so a backfill carries the values the live
path carries. Bulk API 2.0 refuses ``TYPEOF``: such a read stays on REST, whatever its size."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crmsync.connectors.base import Record
from crmsync.connectors.salesforce.polymorphic import TypeOf, beyond_name_object, select_list, typeofs
from crmsync.errors import ConfigError

if TYPE_CHECKING:
    from crmsync.connectors.salesforce.client import SalesforceClient

log = logging.getLogger(__name__)

#: from this many records on, read through a Bulk API 2.0 query
BULK_THRESHOLD = 2_000
#: when a record last changed (read with every export)
STAMP_FIELD = "SystemModstamp"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def field_path(name: str) -> str:
    """``name`` if it is a field or a parent's field (``Owner.Name``); ConfigError otherwise."""
    if not all(_NAME.fullmatch(part) for part in name.split(".")):
        raise ConfigError(
            f"{name!r} is not a Salesforce field name", problems=[f"{name!r} is not a Salesforce field name"]
        )
    return name


def checked_object(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a Salesforce object name",
            problems=[f"{name!r} is not a Salesforce object name"],
        )
    return name


def flat(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A REST query row as the Bulk API gives it: ``attributes`` dropped, parents as ``Parent.Field``."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name == "attributes":
            continue
        if isinstance(value, Mapping):
            out.update(flat(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def with_every_field(row: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """``row`` with each of ``fields`` present: None where the row has none (names compared without
    case). A relationship path the record's type lacks (``What.Amount`` of a Task on an Account), or
    that an empty lookup cuts short, reads as empty, as the polling path reads it."""
    out = dict(row)
    present = {name.lower() for name in out}
    out.update({name: None for name in fields if name.lower() not in present})
    return out


def export_soql(obj: str, fields: Sequence[str], order_by: str, through: Sequence[TypeOf] = ()) -> str:
    """The query of an export: each field once (case ignored), in the order given; the fields of a
    polymorphic relationship in ``through`` are read by its TYPEOF instead."""
    names: list[str] = []
    for name in fields:
        if field_path(name).lower() not in {n.lower() for n in names}:
            names.append(name)
    return f"SELECT {select_list(names, through)} FROM {checked_object(obj)} ORDER BY {field_path(order_by)}"


class SalesforceExports:
    """The export half of :class:`~crmsync.connectors.salesforce.connector.SalesforceConnector`
    (:class:`~crmsync.connectors.capabilities.Exports`)."""

    client: SalesforceClient

    def count_records(self, object_name: str) -> int:
        """One ``SELECT COUNT()`` call."""
        return int(self.client.count(f"SELECT COUNT() FROM {checked_object(object_name)}"))

    def export(
        self, object_name: str, fields: Sequence[str], *, order_by: str, count: int | None = None
    ) -> Iterator[Record]:
        """Every record's ``fields`` ordered by ``order_by``; ``count``: the records the caller has
        counted already (else counted here), which picks a Bulk API 2.0 job from
        :data:`BULK_THRESHOLD` on."""
        wanted = [*fields, STAMP_FIELD]
        through = self._typeofs(object_name, wanted)
        soql = export_soql(object_name, wanted, order_by, through)
        total = self.count_records(object_name) if count is None else count
        if total >= BULK_THRESHOLD and through:
            log.info("reading %d %s records by REST: Bulk API 2.0 refuses TYPEOF", total, object_name)
        if total >= BULK_THRESHOLD and not through:
            log.info("reading %d %s records through a Bulk API 2.0 query", total, object_name)
            rows: Iterator[Mapping[str, Any]] = self.client.bulk_query(soql)
        else:
            rows = (flat(row) for row in self.client.query_iter(soql))
        for row in rows:
            stamp = row.get(STAMP_FIELD)
            yield Record(
                object_name,
                str(row.get("Id") or ""),
                with_every_field(row, wanted),
                modified=str(stamp) if stamp else None,
            )

    def _typeofs(self, object_name: str, fields: Sequence[str]) -> tuple[TypeOf, ...]:
        """The TYPEOFs the export of ``fields`` needs (describes are read only when some field goes
        through a relationship beyond a ``Name`` object field)."""
        if not beyond_name_object(fields):
            return ()
        return typeofs(checked_object(object_name), fields, self.client.describe)
