"""The org's records: plain dicts in wire format, server-kept timestamps, a recycle bin and a journal.

Each record is one ``dict`` keyed by API field name holding exactly what the REST API returns
(ids in 18 characters, datetimes as ``2024-05-01T10:30:00.000+0000``, dates ``2024-06-30``), so
reads cost a dict copy and 100,000 records stay well within memory. Deleted records keep their
row with ``IsDeleted = true`` (the recycle bin; ``queryAll`` still sees them) and a line in the
deletion log that ``/sobjects/X/deleted`` reads.

Writes go through :meth:`Store.create`, :meth:`Store.update`, :meth:`Store.delete` and
:meth:`Store.upsert`; they validate against :mod:`.schema` and raise :class:`DmlError` with
Salesforce's error items. :meth:`Store.transaction` undoes everything written inside it when the
block raises (allOrNone in Collections and Composite). Every write adds a :class:`Change` to the
journal, with the client name a caller sent in ``Sforce-Call-Options: client=<name>``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from crmsync.sandbox.salesforce.ids import IdFactory, normalize
from crmsync.sandbox.salesforce.schema import (
    AUDIT_FIELDS,
    OPPORTUNITY_STAGES,
    TASK_CLOSED_STATUSES,
    FieldDef,
    ObjectDef,
    Schema,
)
from crmsync.sandbox.salesforce.values import ErrorItem, FieldProblem, coerce, format_datetime

#: fields a trusted caller (the Python API, seeds) may set although the API refuses them
SYSTEM_SETTABLE = frozenset({*AUDIT_FIELDS, "IsConverted", "ConvertedDate"})


class DmlError(Exception):
    """A refused write: ``status`` is what a single-record REST call answers."""

    def __init__(self, errors: list[ErrorItem], status: int = 400) -> None:
        super().__init__("; ".join(f"{e.code}: {e.message}" for e in errors))
        self.errors = errors
        self.status = status

    @classmethod
    def one(cls, code: str, message: str, fields: list[str] | None = None, status: int = 400) -> DmlError:
        return cls([ErrorItem(code, message, fields)], status)


class AmbiguousMatch(Exception):
    """An external id value matches several records (REST answers 300)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} records match")
        self.ids = ids


@dataclass(frozen=True, slots=True)
class Change:
    """One journal line: who wrote what, when."""

    at: str
    object: str
    id: str
    operation: str  # create | update | delete
    client: str | None
    fields: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "object": self.object,
            "id": self.id,
            "operation": self.operation,
            "client": self.client,
            "fields": list(self.fields),
        }


def not_found() -> DmlError:
    return DmlError.one("NOT_FOUND", "The requested resource does not exist", status=404)


def entity_deleted() -> DmlError:
    return DmlError.one("ENTITY_IS_DELETED", "entity is deleted", [], status=404)


class Store:
    """Records of every object, by object name then 18-character id."""

    def __init__(self, schema: Schema, clock: Callable[[], dt.datetime], user_id: str) -> None:
        self.schema = schema
        self.clock = clock
        self.user_id = user_id
        self.ids = IdFactory()
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}
        self.deleted_log: list[tuple[str, str, str]] = []  # (object, id, deletedDate)
        self.journal: list[Change] = []
        self.ext_index: dict[tuple[str, str], dict[str, set[str]]] = {}
        self.auto_numbers: dict[str, int] = {}
        self._undo: list[Callable[[], None]] | None = None
        #: called with (object, id, the record before) before every write (late commits hook here)
        self.on_write: Callable[[str, str, dict[str, Any] | None], None] | None = None

    # -- reading -------------------------------------------------------------------------------
    def table(self, obj: ObjectDef) -> dict[str, dict[str, Any]]:
        t = self.tables.get(obj.name)
        if t is None:
            t = self.tables[obj.name] = {}
        return t

    def object_of(self, record_id: str) -> ObjectDef | None:
        return self.schema.by_prefix(record_id[:3])

    def find(self, record_id: str) -> tuple[ObjectDef, dict[str, Any]] | None:
        """The object and record (deleted or not) of an 18-character id."""
        obj = self.object_of(record_id)
        if obj is None:
            return None
        rec = self.tables.get(obj.name, {}).get(record_id)
        return None if rec is None else (obj, rec)

    def live(self, obj: ObjectDef, record_id: str) -> dict[str, Any]:
        """The record, or NOT_FOUND / ENTITY_IS_DELETED."""
        rec = self.tables.get(obj.name, {}).get(record_id)
        if rec is None:
            raise not_found()
        if rec["IsDeleted"]:
            raise entity_deleted()
        return rec

    def match_external(self, obj: ObjectDef, f: FieldDef, value: Any) -> list[str]:
        """Ids of live records whose field ``f`` equals ``value`` (case-insensitive for text)."""
        if f.type == "id":
            rid = normalize(value)
            rec = self.tables.get(obj.name, {}).get(rid or "")
            return [rid] if rid and rec is not None and not rec["IsDeleted"] else []
        index = self.ext_index.get((obj.name, f.name))
        if index is not None:
            return sorted(index.get(_key(value), ()))
        want = _key(value)
        return [
            rid
            for rid, rec in self.tables.get(obj.name, {}).items()
            if not rec["IsDeleted"] and rec.get(f.name) is not None and _key(rec[f.name]) == want
        ]

    # -- transactions ----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Undo every write made inside the block if it raises (nested blocks join the outer one)."""
        if self._undo is not None:
            yield
            return
        self._undo = []
        try:
            yield
        except BaseException:
            for step in reversed(self._undo):
                step()
            raise
        finally:
            self._undo = None

    def _remember(self, step: Callable[[], None]) -> None:
        if self._undo is not None:
            self._undo.append(step)

    def _put(self, obj: ObjectDef, rid: str, new: dict[str, Any] | None) -> None:
        """Replace a record (None removes it), keeping the external-id index and the undo log."""
        table = self.table(obj)
        old = table.get(rid)
        if self.on_write is not None:
            self.on_write(obj.name, rid, old)
        self._unindex(obj, old)
        if new is None:
            table.pop(rid, None)
        else:
            table[rid] = new
            self._index(obj, new)

        def undo() -> None:
            self._unindex(obj, table.get(rid))
            if old is None:
                table.pop(rid, None)
            else:
                table[rid] = old
                self._index(obj, old)

        self._remember(undo)

    def _index(self, obj: ObjectDef, rec: dict[str, Any] | None) -> None:
        if rec is None or rec["IsDeleted"]:
            return
        for f in obj.external_id_fields():
            value = rec.get(f.name)
            if value is not None:
                self.ext_index.setdefault((obj.name, f.name), {}).setdefault(_key(value), set()).add(
                    rec["Id"]
                )

    def _unindex(self, obj: ObjectDef, rec: dict[str, Any] | None) -> None:
        if rec is None or rec["IsDeleted"]:
            return
        for f in obj.external_id_fields():
            value = rec.get(f.name)
            if value is None:
                continue
            ids = self.ext_index.get((obj.name, f.name), {}).get(_key(value))
            if ids is not None:
                ids.discard(rec["Id"])

    def _log(self, obj: ObjectDef, rid: str, op: str, client: str | None, fields: tuple[str, ...]) -> None:
        self.journal.append(Change(self.now(), obj.name, rid, op, client, fields))
        self._remember(_popper(self.journal))

    def now(self) -> str:
        return format_datetime(self.clock())

    # -- writing ---------------------------------------------------------------------------------
    def create(
        self,
        obj: ObjectDef,
        values: Mapping[str, Any],
        *,
        client: str | None = None,
        csv: bool = False,
        system: bool = False,
        record_id: str | None = None,
    ) -> str:
        """Insert a record; returns its id. ``system`` lets trusted callers set audit fields and the id."""
        if not obj.createable and not system:
            raise DmlError.one("INVALID_TYPE", f"sObject type '{obj.name}' is not supported.", [])
        clean = self._clean(obj, values, creating=True, csv=csv, system=system)
        now = self.now()
        if record_id is not None:
            rid = normalize(record_id)
            if rid is None or rid[:3] != obj.key_prefix:
                raise ValueError(f"{record_id!r} is not an id of {obj.name}")
            if rid in self.table(obj):
                raise ValueError(f"{rid} exists already")
        else:
            rid = self.ids.next(obj.key_prefix)
            while rid in self.table(obj):  # restored state: skip ids already taken
                rid = self.ids.next(obj.key_prefix)
        rec: dict[str, Any] = dict.fromkeys(obj.fields)
        for f in obj.fields.values():
            if f.default is not None:
                rec[f.name] = f.default
        rec.update(
            Id=rid,
            IsDeleted=False,
            CreatedDate=now,
            CreatedById=self.user_id,
            LastModifiedDate=now,
            LastModifiedById=self.user_id,
            SystemModstamp=now,
        )
        if "OwnerId" in rec:
            rec["OwnerId"] = self.user_id
        rec.update(clean)
        if system:
            for name in ("LastModifiedDate", "SystemModstamp"):
                if name not in clean and "CreatedDate" in clean:
                    rec[name] = clean["CreatedDate"]
        self._derive(obj, rec, set(clean), creating=True)
        self._check_required(obj, rec, creating=True)
        self._check_unique(obj, rec)
        self._put(obj, rid, rec)
        self._log(obj, rid, "create", client, tuple(clean))
        return rid

    def update(
        self,
        obj: ObjectDef,
        record_id: str,
        values: Mapping[str, Any],
        *,
        client: str | None = None,
        csv: bool = False,
        system: bool = False,
    ) -> None:
        old = self.live(obj, record_id)
        if obj.name == "Lead" and old.get("IsConverted") and not system:
            raise DmlError.one(
                "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [], status=400
            )
        clean = self._clean(obj, values, creating=False, csv=csv, system=system)
        rec = dict(old)
        rec.update(clean)
        now = self.now()
        rec["LastModifiedDate"] = clean.get("LastModifiedDate", now)
        rec["LastModifiedById"] = self.user_id
        rec["SystemModstamp"] = clean.get("SystemModstamp", now)
        self._derive(obj, rec, set(clean), creating=False)
        self._check_required(obj, rec, creating=False)
        self._check_unique(obj, rec)
        self._put(obj, record_id, rec)
        self._log(obj, record_id, "update", client, tuple(clean))

    def delete(
        self, obj: ObjectDef, record_id: str, *, client: str | None = None, hard: bool = False
    ) -> None:
        old = self.live(obj, record_id)
        now = self.now()
        if hard:
            self._put(obj, record_id, None)
        else:
            self._put(obj, record_id, {**old, "IsDeleted": True, "SystemModstamp": now})
        self.deleted_log.append((obj.name, record_id, now))
        self._remember(_popper(self.deleted_log))
        self._log(obj, record_id, "delete", client, ())

    def upsert(
        self,
        obj: ObjectDef,
        field_name: str,
        value: Any,
        values: Mapping[str, Any],
        *,
        client: str | None = None,
        csv: bool = False,
        update_only: bool = False,
    ) -> tuple[str, bool]:
        """Create or update by external id; returns ``(id, created)``."""
        f = self.ext_field(obj, field_name)
        body = dict(values)
        for key in list(body):
            if key.lower() == f.name.lower():
                del body[key]
        try:
            key = value if f.type == "id" else coerce(f, value, csv=isinstance(value, str))
        except FieldProblem as exc:
            raise DmlError([exc.item]) from None
        matches = self.match_external(obj, f, key)
        if len(matches) > 1:
            raise AmbiguousMatch(matches)
        if matches:
            self.update(obj, matches[0], body, client=client, csv=csv)
            return matches[0], False
        if update_only or f.type == "id":
            raise not_found()
        if key is not None:
            body[f.name] = key
        return self.create(obj, body, client=client, csv=csv), True

    def ext_field(self, obj: ObjectDef, field_name: str) -> FieldDef:
        f = obj.field(field_name)
        if f is None or not (f.external_id or f.type == "id"):
            raise DmlError.one(
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
                status=404,
            )
        return f

    # -- validation ----------------------------------------------------------------------------
    def _clean(
        self, obj: ObjectDef, values: Mapping[str, Any], *, creating: bool, csv: bool, system: bool
    ) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        unknown = [k for k in values if k != "attributes" and obj.field(k) is None]
        if unknown:
            raise DmlError.one(
                "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {obj.name}", []
            )
        if creating and not system and any(k.lower() == "id" for k in values):
            raise DmlError.one(
                "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"]
            )
        locked = []
        problems: list[ErrorItem] = []
        for key, raw in values.items():
            if key == "attributes":
                continue
            f = obj.field(key)
            assert f is not None
            if f.name == "Id" and not creating:
                continue  # Collections carry the id in the body
            allowed = f.createable if creating else f.updateable
            if not allowed and not (system and f.name in SYSTEM_SETTABLE):
                locked.append(f.name)
                continue
            if csv and raw == "" and not creating:
                continue  # an empty CSV cell leaves the field as it is; #N/A clears it
            try:
                value = coerce(f, raw, csv=csv)
                if f.type == "reference" and value is not None:
                    self._check_reference(f, value)
            except FieldProblem as exc:
                problems.append(exc.item)
                continue
            clean[f.name] = value
        if locked:
            verb = "create" if creating else "update"
            raise DmlError.one(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to {verb} fields: {', '.join(locked)}. Please check the security settings of this "
                "field and verify that it is read/write for your profile or permission set.",
                locked,
            )
        if problems:
            raise DmlError(problems[:1] if problems[0].code == "JSON_PARSER_ERROR" else problems)
        return clean

    def _check_reference(self, f: FieldDef, rid: str) -> None:
        target = self.object_of(rid)
        if target is None or target.name not in f.reference_to:
            raise FieldProblem(
                "FIELD_INTEGRITY_EXCEPTION", f"{f.label}: id value of incorrect type: {rid}", [f.name]
            )
        rec = self.tables.get(target.name, {}).get(rid)
        if rec is None or rec["IsDeleted"]:
            raise FieldProblem("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])

    def _check_required(self, obj: ObjectDef, rec: dict[str, Any], *, creating: bool) -> None:
        missing = [f.name for f in obj.fields.values() if f.required and rec.get(f.name) in (None, "")]
        if missing:
            raise DmlError.one(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )

    def _check_unique(self, obj: ObjectDef, rec: dict[str, Any]) -> None:
        for f in obj.fields.values():
            if not f.unique or rec.get(f.name) is None:
                continue
            others = [i for i in self.match_external(obj, f, rec[f.name]) if i != rec["Id"]]
            if others:
                raise DmlError.one(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {f.name} duplicates value on record with id: {others[0]}",
                    [],
                )

    def _derive(self, obj: ObjectDef, rec: dict[str, Any], changed: set[str], *, creating: bool) -> None:
        """Fields Salesforce computes: names, stage flags, closed tasks, contract end dates, numbers."""
        name = obj.name
        if name in ("Contact", "Lead", "User"):
            rec["Name"] = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p) or None
        elif name == "Opportunity":
            stage = OPPORTUNITY_STAGES.get(rec.get("StageName") or "")
            if stage is not None:
                closed, won, probability, category = stage
                rec["IsClosed"], rec["IsWon"] = closed, won
                rec["ForecastCategoryName"] = category
                rec["ForecastCategory"] = {"Closed": "Closed", "Omitted": "Omitted"}.get(category, "Pipeline")
                if "StageName" in changed and "Probability" not in changed:
                    rec["Probability"] = float(probability)
        elif name == "Task":
            rec["IsClosed"] = rec.get("Status") in TASK_CLOSED_STATUSES
            what = rec.get("WhatId")
            account = None
            if what:
                found = self.find(what)
                if found is not None:
                    account = what if found[0].name == "Account" else found[1].get("AccountId")
            rec["AccountId"] = account
        elif name == "Contract":
            if creating:
                n = self.auto_numbers.get("Contract", 99) + 1
                self.auto_numbers["Contract"] = n
                rec["ContractNumber"] = f"{n:08d}"
            start, term = rec.get("StartDate"), rec.get("ContractTerm")
            rec["EndDate"] = _end_date(start, term) if start and term else None


def _end_date(start: str, months: int) -> str:
    day = dt.date.fromisoformat(start)
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    # the day before the same day-of-month ``months`` later (clamped to the month's length)
    for d in (day.day, 30, 29, 28):
        try:
            return (dt.date(year, month, d) - dt.timedelta(days=1 if d == day.day else 0)).isoformat()
        except ValueError:
            continue
    raise ValueError(start)


def _popper(items: list[Any]) -> Callable[[], None]:
    """An undo step that drops the last item of ``items``."""

    def pop() -> None:
        items.pop()

    return pop


def _key(value: Any) -> str:
    return value.lower() if isinstance(value, str) else str(value)
