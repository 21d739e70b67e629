"""``SalesforceConnector``: the engine's view of one Salesforce org (see :mod:`crmsync.connectors.base`).

- :meth:`~SalesforceConnector.write_batch` groups writes by kind (creates, upserts per external-id
  field, updates, deletes) and sends each group as sObject Collections, 200 records a call;
- :meth:`~SalesforceConnector.read_records` reads by id through Collections retrieve,
  :meth:`~SalesforceConnector.scan` a whole object (``Readable``);
- :meth:`~SalesforceConnector.read_changes` polls ``SystemModstamp`` (deleted rows included;
  ``PolledSource``);
- :meth:`~SalesforceConnector.query_view`, :meth:`~SalesforceConnector.find_by_field` and
  :meth:`~SalesforceConnector.matching` run SOQL with bound, escaped parameters, for the
  read-through API, match keys and the lock rules (``Queryable``): no SOQL outside this folder's
  modules (and the engine's poll plan, which is Salesforce's batched poller);
- :meth:`~SalesforceConnector.create_related`: all-or-none Composite (``RelatedCreator``);
- :meth:`~SalesforceConnector.over_guard`: the daily API budget (``Budgeted``); the calls and the
  requests in flight are counted by every process together once the store is attached (:mod:`.budget`);
- :meth:`~SalesforceConnector.export` (``export.py``): a whole object for a backfill, by Bulk API
  2.0 when it is large (``Exports``); :meth:`~SalesforceConnector.catalog` (``catalog.py``): the
  org's objects and fields for ``crmsync check --connect`` (``Catalogued``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crmsync.connectors.base import ApiUsage, ChangeBatch, Connector, Record, Write, WriteResult
from crmsync.connectors.capabilities import (
    Budgeted,
    Catalogued,
    Exports,
    PolledSource,
    Queryable,
    Readable,
    RelatedCreator,
    Writable,
)
from crmsync.connectors.polling import ChangeSink, PollsItself, PollTarget
from crmsync.connectors.salesforce.catalog import SalesforceCatalog
from crmsync.connectors.salesforce.client import COMPOSITE_SIZE, SalesforceClient, subrequest_error
from crmsync.connectors.salesforce.errors import ALREADY_DELETED, error_from_save_result
from crmsync.connectors.salesforce.export import SalesforceExports
from crmsync.connectors.salesforce.reports import SalesforceReports
from crmsync.connectors.salesforce.settings import SalesforceSettings
from crmsync.connectors.salesforce.soql import format_soql
from crmsync.connectors.stamps import parse_stamp
from crmsync.errors import ConfigError, CrmsyncError, FixTheData

if TYPE_CHECKING:
    from crmsync.connectors.salesforce.poller import SalesforcePoller
    from crmsync.store.db import Store

__all__ = ["SalesforceConnector", "parse_stamp"]

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: describe field types that cannot be read as plain columns (their parts are separate fields)
_COMPOUND_TYPES = frozenset({"address", "location"})
#: what the subrequests of an all-or-none Composite answer when ANOTHER subrequest failed
ROLLED_BACK = frozenset({"PROCESSING_HALTED", "ALL_OR_NONE_OPERATION_ROLLED_BACK"})
#: how far back each poll looks before the watermark: transactions commit after they stamp
DEFAULT_CHANGE_OVERLAP = dt.timedelta(seconds=2)
#: values per ``IN (...)`` list, to stay well inside SOQL's 4,000-character WHERE clause
IN_CHUNK = 100
#: records per sObject Collections call
COLLECTION_SIZE = 200


def _identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ConfigError(f"{name!r} is not a valid Salesforce {what} name")
    return name


def _plain(value: Any) -> Any:
    """A query row without the ``attributes`` entries (at every level)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "attributes"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class SalesforceConnector(
    SalesforceReports,
    SalesforceExports,
    Connector,
    Writable,
    Readable,
    PolledSource,
    PollsItself,
    Queryable,
    RelatedCreator,
    Budgeted,
    Catalogued,
    Exports,
):
    """One Salesforce org, for one configured connection."""

    kind = "salesforce"

    def __init__(
        self,
        name: str,
        *,
        settings: SalesforceSettings,
        client: SalesforceClient | None = None,
        change_overlap: dt.timedelta = DEFAULT_CHANGE_OVERLAP,
        lookback_seconds: float = 0.0,
        sweep_every_seconds: float = 60.0,
    ) -> None:
        super().__init__(name)
        self.settings = settings
        self.client = client if client is not None else SalesforceClient(settings)
        self.client.budget.connection = name  # the windows and slots are named after the connection
        self.change_overlap = change_overlap
        #: the poller's lookback sweep (0: none), from the connection's settings
        self.lookback_seconds = lookback_seconds
        self.sweep_every_seconds = sweep_every_seconds

    @classmethod
    def from_config(cls, name: str, settings: Any) -> SalesforceConnector:
        """Build from a ``salesforce`` connection's settings model (its attributes are read)."""
        return cls(
            name,
            settings=SalesforceSettings.from_object(settings),
            lookback_seconds=float(getattr(settings, "lookback_seconds", 0.0)),
            sweep_every_seconds=float(getattr(settings, "sweep_every_seconds", 60.0)),
        )

    def change_poller(
        self, targets: Sequence[PollTarget], sink: ChangeSink, store: Store
    ) -> SalesforcePoller:
        """The polling cycle of this org: one Composite call reads up to five objects, deletions ride
        along, and a lookback sweep catches rows that commit late (:mod:`.poller`)."""
        from crmsync.connectors.salesforce.poller import SalesforcePoller, sweep_settings

        sweep = sweep_settings(self.lookback_seconds, self.sweep_every_seconds)
        return SalesforcePoller(self, sink, store, targets, **sweep)

    def __repr__(self) -> str:
        s = self.settings
        return f"SalesforceConnector({self.name!r}, auth={s.auth!r}, login_url={s.login_url!r})"

    # -- health and budget ------------------------------------------------------------------------
    def check(self) -> None:
        """Log in and make one cheap call (``GET /limits``); Fatal when the credentials are refused."""
        self.client.login()
        self.client.limits()

    def api_usage(self) -> ApiUsage | None:
        return self.client.api_usage()

    def attach_store(self, store: Store) -> None:
        """Count the daily API calls and the requests in flight with every process using ``store``."""
        self.client.budget.attach(store)

    def over_guard(self) -> bool:
        """True when the org's daily API use reached ``daily_limit_guard``: non-urgent work waits."""
        return self.client.over_guard()

    @property
    def calls_made(self) -> int:
        return self.client.calls_made

    # -- writes --------------------------------------------------------------------------------
    def max_batch_size(self, object_name: str) -> int:
        return COLLECTION_SIZE

    def write_batch(self, object_name: str, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply ``writes`` with sObject Collections (allOrNone=false); results in input order.

        Groups run in this order: creates, upserts (one group per external-id field), updates,
        deletes. A record Salesforce refuses is a result with its error; deleting a record that is
        already gone succeeds. When a whole call fails before anything was written, the error is
        raised; when earlier calls of the batch already succeeded, their results are kept and each
        write not yet sent gets the error instead (so nothing written is written twice on retry).
        """
        _identifier(object_name, "object")
        results: list[WriteResult | None] = [None] * len(writes)
        creates: list[int] = []
        upserts: dict[str, list[int]] = {}
        updates: list[int] = []
        deletes: list[int] = []
        for index, w in enumerate(writes):
            problem = _invalid(w)
            if problem:
                results[index] = WriteResult(
                    w.key, False, error=FixTheData(problem, object_name=object_name, record=w.key)
                )
            elif w.operation == "create":
                creates.append(index)
            elif w.operation == "upsert":
                upserts.setdefault(str(w.external_id_field), []).append(index)
            elif w.operation == "update":
                updates.append(index)
            else:
                deletes.append(index)

        groups: list[tuple[str, str | None, list[int]]] = []
        if creates:
            groups.append(("create", None, creates))
        groups.extend(("upsert", ext_field, indexes) for ext_field, indexes in upserts.items())
        if updates:
            groups.append(("update", None, updates))
        if deletes:
            groups.append(("delete", None, deletes))

        sent_any = False
        for operation, ext_field, indexes in groups:
            try:
                replies = self._send_group(object_name, operation, ext_field, [writes[i] for i in indexes])
            except CrmsyncError as exc:
                if not sent_any:
                    raise
                for i in (i for i in range(len(writes)) if results[i] is None):
                    results[i] = WriteResult(writes[i].key, False, error=exc)
                break
            sent_any = True
            path = f"composite/sobjects/{object_name}/{ext_field}" if ext_field else "composite/sobjects"
            url = self.client.data_url(path)
            for i, reply in zip(indexes, replies, strict=True):
                results[i] = self._result(object_name, writes[i], reply, url)
        return [
            r if r is not None else WriteResult(w.key, False) for r, w in zip(results, writes, strict=True)
        ]

    def _send_group(
        self, object_name: str, operation: str, ext_field: str | None, group: list[Write]
    ) -> list[dict[str, Any]]:
        if operation == "create":
            return self.client.collections_create(object_name, [dict(w.fields) for w in group])
        if operation == "upsert" and ext_field is not None:
            records = [{**w.fields, ext_field: w.external_id} for w in group]
            return self.client.collections_upsert(object_name, ext_field, records)
        if operation == "update":
            records = [{**w.fields, "Id": w.target_id} for w in group]
            return self.client.collections_update(object_name, records)
        return self.client.collections_delete([str(w.target_id) for w in group], object_name=object_name)

    def _result(self, object_name: str, w: Write, reply: Mapping[str, Any], url: str) -> WriteResult:
        target = str(reply["id"]) if reply.get("id") else w.target_id
        if reply.get("success"):
            created = {"create": True, "update": False, "delete": False}.get(w.operation)
            if w.operation == "upsert":
                created = bool(reply.get("created"))
            return WriteResult(w.key, True, target_id=target, created=created)
        errors = list(reply.get("errors") or [])
        if w.operation == "delete" and errors and errors[0].get("statusCode") in ALREADY_DELETED:
            return WriteResult(w.key, True, target_id=w.target_id, created=False)
        record = w.target_id or (f"{w.external_id_field}={w.external_id}" if w.external_id else w.key)
        error = error_from_save_result(errors, url=url, object_name=object_name, record=record)
        return WriteResult(w.key, False, target_id=target, error=error)

    # -- reads ---------------------------------------------------------------------------------
    def describe(self, object_name: str) -> dict[str, Any]:
        """The object's describe (fetched once, then cached for the life of the connector)."""
        return self.client.describe(_identifier(object_name, "object"))

    def catalog(self) -> SalesforceCatalog:
        """The org's objects and fields, from its describes (``crmsync check --connect``)."""
        return SalesforceCatalog(self.client)

    def readable_fields(self, object_name: str) -> list[str]:
        """The object's fields that can be read as values (from its cached describe)."""
        describe = self.client.describe(_identifier(object_name, "object"))
        return [str(f["name"]) for f in describe.get("fields", []) if f.get("type") not in _COMPOUND_TYPES]

    def read_records(self, object_name: str, ids: Sequence[str]) -> Iterator[Record]:
        """The records with these ids (unknown ids are skipped), via Collections retrieve."""
        if not ids:
            return
        fields = self.readable_fields(object_name)
        for row in self.client.collections_retrieve(object_name, ids, fields):
            if row is not None:
                yield self._record(object_name, row)

    def scan(self, object_name: str, *, since: str | None = None) -> Iterator[Record]:
        """Every record of the object (``since``: those stamped at or after it), by ``SystemModstamp``."""
        fields = self.readable_fields(object_name)
        select = f"SELECT {', '.join(fields)} FROM {object_name}"
        if since:
            soql = format_soql(select + " WHERE SystemModstamp >= :since", since=parse_stamp(since))
        else:
            soql = select
        for row in self.client.query_iter(soql + " ORDER BY SystemModstamp, Id"):
            yield self._record(object_name, row)

    def read_changes(
        self, object_name: str, watermark: str | None, fields: Sequence[str] | None = None
    ) -> ChangeBatch:
        """Records whose ``SystemModstamp`` is after ``watermark`` (all records when it is None).

        Deleted rows are included (``queryAll``; ``deleted=True``). Each poll looks back
        ``change_overlap`` before the watermark, because a transaction can commit after a later one
        stamped; records seen again are harmless to the engine (nothing changed) and each record
        appears once per batch. The new watermark is the newest ``SystemModstamp`` seen. ``fields``:
        the fields to read (default: every readable one).
        """
        _identifier(object_name, "object")
        names = [_identifier(f, "field") for f in fields] if fields else self.readable_fields(object_name)
        for needed in ("Id", "SystemModstamp", "IsDeleted"):
            if needed not in names:
                names.append(needed)
        select = f"SELECT {', '.join(names)} FROM {object_name}"
        order = " ORDER BY SystemModstamp, Id"
        if watermark:
            since = (parse_stamp(watermark) - self.change_overlap).replace(microsecond=0)
            soql = format_soql(select + " WHERE SystemModstamp > :since" + order, since=since)
        else:
            soql = select + order
        by_id: dict[str, Record] = {}
        newest: tuple[dt.datetime, str] | None = None
        for row in self.client.query_iter(soql, include_deleted=True):
            record = self._record(object_name, row)
            by_id.pop(record.id, None)
            by_id[record.id] = record
            if record.modified:
                stamp = parse_stamp(record.modified)
                if newest is None or stamp > newest[0]:
                    newest = (stamp, record.modified)
        next_mark = newest[1] if newest is not None else watermark
        if watermark and newest is not None and parse_stamp(watermark) > newest[0]:
            next_mark = watermark  # never move backwards (only overlap rows were seen)
        return ChangeBatch(records=list(by_id.values()), watermark=next_mark)

    @staticmethod
    def _record(object_name: str, row: Mapping[str, Any]) -> Record:
        fields = _plain(dict(row))
        stamp = fields.get("SystemModstamp") or fields.get("LastModifiedDate")
        return Record(
            object_name=object_name,
            id=str(fields.get("Id")),
            fields=fields,
            modified=str(stamp) if stamp else None,
            deleted=bool(fields.get("IsDeleted")),
        )

    # -- SOQL for the read-through API and lock rules --------------------------------------------
    def create_related(
        self,
        object_name: str,
        fields: Mapping[str, Any],
        related: Sequence[tuple[str, Mapping[str, Any], Mapping[str, str]]],
        refs: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Create a record and its related records in ONE all-or-none Composite call.

        ``related`` lists ``(object, fields, refs)``: ``refs`` sets reference fields to the id of
        another object created in the same call (``{"AccountId": "Account"}``). Related records are
        created first, in order, then the record itself (it may refer to them too, e.g. a Lead's
        converted ids; ``refs`` are its own references to them). Returns ``{object: new id}``;
        nothing is created if anything is refused, and the error raised is the refused record's
        (e.g. FixTheData for REQUIRED_FIELD_MISSING), not the others' "rolled back" replies.
        """
        order = [*related, (object_name, fields, dict(refs or {}))]
        if len(order) > COMPOSITE_SIZE:
            raise ConfigError(f"at most {COMPOSITE_SIZE} records can be created together")
        requests = []
        for obj, values, refs in order:
            body = {**values, **{f: f"@{{{ref}.id}}" for f, ref in refs.items()}}
            requests.append({"method": "POST", "url": f"sobjects/{obj}", "referenceId": obj, "body": body})
        replies = self.client.composite(requests, all_or_none=True)
        failed = [
            error
            for (obj, _, _), reply in zip(order, replies, strict=True)
            if (error := subrequest_error(reply, object_name=obj)) is not None
        ]
        if failed:  # the others only say they were rolled back: the cause is the one that failed
            raise next((e for e in failed if e.vendor_code not in ROLLED_BACK), failed[0])
        return {obj: str(reply["body"]["id"]) for (obj, _, _), reply in zip(order, replies, strict=True)}

    def query_view(self, soql_template: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run a configured SOQL view, ``:name`` parameters bound and escaped; rows without ``attributes``."""
        soql = format_soql(soql_template, **params)
        return [_plain(row) for row in self.client.query_iter(soql)]

    def find_by_field(self, object_name: str, field_name: str, values: Sequence[str]) -> dict[str, list[str]]:
        """Value → ids of the records whose ``field_name`` holds it (``IN`` lists of :data:`IN_CHUNK`)."""
        obj, name = _identifier(object_name, "object"), _identifier(field_name, "field")
        found: dict[str, list[str]] = {}
        wanted = list(dict.fromkeys(str(v) for v in values))
        for start in range(0, len(wanted), IN_CHUNK):
            soql = format_soql(
                f"SELECT Id, {name} FROM {obj} WHERE {name} IN :values",
                values=wanted[start : start + IN_CHUNK],
            )
            for row in self.client.query_iter(soql):
                found.setdefault(str(row[name]), []).append(str(row["Id"]))
        return found

    def record_matches(self, object_name: str, record_id: str, condition_soql: str) -> bool:
        """Does the record satisfy ``condition_soql`` (a trusted WHERE fragment from the config)?"""
        head = format_soql(
            f"SELECT Id FROM {_identifier(object_name, 'object')} WHERE Id = :id", id=record_id
        )
        return bool(self.client.query(f"{head} AND ({condition_soql}) LIMIT 1"))

    def matching(self, object_name: str, ids: Sequence[str], condition: str) -> set[str]:
        """Those of ``ids`` whose record satisfies ``condition`` (a trusted WHERE fragment from the
        config, e.g. a lock rule's ``Status = 'Fulfilled'``); ids as Salesforce answers them."""
        obj = _identifier(object_name, "object")
        matched: set[str] = set()
        wanted = sorted(set(ids))
        for start in range(0, len(wanted), IN_CHUNK):
            head = format_soql(f"SELECT Id FROM {obj} WHERE Id IN :ids", ids=wanted[start : start + IN_CHUNK])
            matched.update(str(row["Id"]) for row in self.client.query_iter(f"{head} AND ({condition})"))
        return matched

    def close(self) -> None:
        self.client.close()


def _invalid(w: Write) -> str | None:
    if w.operation in ("update", "delete") and not w.target_id:
        return f"a {w.operation} needs the record's Salesforce id (target_id)"
    if w.operation == "upsert" and (not w.external_id_field or w.external_id in (None, "")):
        return "an upsert needs external_id_field and external_id"
    if w.operation == "upsert" and not _IDENTIFIER.fullmatch(str(w.external_id_field)):
        return f"{w.external_id_field!r} is not a valid Salesforce field name"
    if w.operation not in ("create", "update", "upsert", "delete"):
        return f"unknown operation {w.operation!r}"
    return None
