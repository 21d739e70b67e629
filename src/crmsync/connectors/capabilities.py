"""What a connector can do: typed capabilities the engine asks for by protocol, never by type name.

A connector is a :class:`~crmsync.connectors.base.Connector` (``check``, ``api_usage``, ``close``)
plus the capabilities it declares by subclassing the protocols below. The engine, the web app and
the command line never ask "is this a Salesforce connection?"; they ask "can this connection
write?" with :func:`require` (or :func:`offers`), and :func:`capabilities_of` answers the same
question for a connector *class*, without connecting (``crmsync check``)::

                            ┌──────────────────────── connectors/<kind>/ ───────────────────────┐
    engine / web / cli      │  settings.py  one pydantic model: the YAML keys of the connection │
    ──────────────────      │  connector.py class XConnector(Connector, Writable, Readable, …)  │
    require(conn, Writable, │  registry entry  kind → (settings model, connector class)          │
            where=line) ────┼─► the connector, typed as Writable                                 │
        │                   └────────────────────────────────────────────────────────────────────┘
        └─ missing: ConfigError "connection 'crm' (type app) cannot write (Writable), needed by …"

    capability        the engine uses it to …                      methods
    ───────────────   ─────────────────────────────────────────   ──────────────────────────────────
    Writable          apply a batch of changes (per-record         write_batch, max_batch_size
                      results, idempotent retries)
    Readable          read records by id; list an object           read_records, scan
                      (reconcile; preview and sync of a source
                      that does not export)
    PolledSource      learn of changes by polling a watermark      read_changes
    WebhookSource     learn of changes by deliveries: verify,      authenticate, handshake, parse,
                      answer the handshake, parse into events;     receiver_url, protection,
                      keep the vendor's subscriptions              ensure_subscriptions,
                                                                   list_subscriptions
    IngestSource      learn of changes through the ingest API      (a marker: records are pushed)
    Queryable         read-through views, lookups by a match       query_view, find_by_field,
                      field, the lock rule's condition             matching
    RelatedCreator    create a record and its related records,     create_related
                      all or none
    Budgeted          share an API budget between processes        attach_store, over_guard
                      and hold back non-urgent work
    PacedBudget       tell a long run while it waits for the       budget_name, on_wait
                      budget (the connector paces its calls)
    ChoiceFields      the labels a status, dropdown or picklist    choice_fields → Choices.refused
                      accepts (a dry run names refused values)
    NamedObjects      turn an object's name (a board's) into       object_id
                      its id
    ActivityLog       tell when records last changed, leaving      last_changed
                      out changes to some fields (jobs)
    CatchUp           read back the events a webhook source        events_since
                      sent while nobody listened (jobs)
    ReportingTables   keep typed tables in a reporting database    declare, prepare, write_snapshot
    Reports           read saved reports, export a query of any    describe_report, run_report,
                      size (jobs)                                  export_query
    Describes         an object's fields and their types           describe
    Catalogued        what objects and fields exist, for checks    catalog
                      of the names a configuration gives
    Exports           an object read whole, chosen fields in key   count_records, export
                      order, at any size (backfills; preview
                      and sync read a source through it)
    PreparesSchema    shape a target's storage (tables) from the   prepare_schema
                      flows that write to it
    KeepsHistory      hand a target every event, even one that     keeps_history
                      changes no field it holds (with its meta)

A *change source* is any of :class:`PolledSource`, :class:`WebhookSource` or
:class:`IngestSource`: a side of a flow whose changes travel needs one (:data:`CHANGE_SOURCES`).
Vendor query languages stay inside the connector: the engine hands over object and field names
and values, never a SOQL or GraphQL text (a configured view's query is the user's text, passed
through).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from crmsync.connectors.base import ChangeBatch, Connector, EventMeta, Record, Write, WriteResult
from crmsync.errors import ConfigError

if TYPE_CHECKING:
    from crmsync.connectors.sql.changes import SnapshotRow
    from crmsync.connectors.sql.tables import ObjectSpec
    from crmsync.store.db import Store


# ---------------------------------------------------------------- writing and reading


@runtime_checkable
class Writable(Protocol):
    """A target: batched writes with one result per record, in order (see ``Connector`` docs)."""

    def write_batch(self, object_name: str, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply ``writes`` with as few calls as the vendor allows; a refused record is a result
        with its error, a failure of the whole call raises."""
        ...

    def max_batch_size(self, object_name: str) -> int:
        """The most writes one :meth:`write_batch` call should carry."""
        ...


@runtime_checkable
class Readable(Protocol):
    """Records read by id, or a whole object (optionally only what changed since a stamp)."""

    def read_records(self, object_name: str, ids: Sequence[str]) -> Iterator[Record]:
        """The records with these ids (unknown ids are skipped)."""
        ...

    def scan(self, object_name: str, *, since: str | None = None) -> Iterator[Record]:
        """Every record of the object (``since``: modified at or after that stamp), page by page."""
        ...


# ---------------------------------------------------------------- change sources


@runtime_checkable
class PolledSource(Protocol):
    """Changes learnt by asking: records modified after a watermark."""

    def read_changes(
        self, object_name: str, watermark: str | None, fields: Sequence[str] | None = None
    ) -> ChangeBatch:
        """Records changed after ``watermark`` (all when None), each once, with the next watermark.
        ``fields``: the fields the caller needs (None: every readable field)."""
        ...


class WebhookRefused(Exception):
    """A delivery that fails authentication: answered 401, counted, nothing stored."""


class MalformedDelivery(ValueError):
    """A delivery whose body cannot be read as the vendor's event: answered 400."""


@dataclass(frozen=True)
class Delivery:
    """One HTTP delivery to ``/webhooks/{connection}[/{secret}]``, as the web app received it."""

    headers: Mapping[str, str]
    body: bytes
    #: the URL it was sent to, as requested (no query string)
    url: str
    #: the secret path segment of an unsigned delivery, if any
    path_secret: str | None = None


@dataclass(frozen=True)
class Receiver:
    """What crmsync keeps per receiving connection (in the store): its URL secret, and the callback
    URL registered with the vendor (a signed delivery may name it as its audience)."""

    url_secret: str
    callback_url: str | None = None


@dataclass(frozen=True)
class SingleUse:
    """A signed delivery's token, to be bound to the first body it came with (the vendor's
    signature does not cover the body): digests only, and when the token expires."""

    token_digest: str
    body_digest: str
    expires: dt.datetime


@dataclass(frozen=True)
class SourceEvent:
    """One change a delivery reports, in the engine's terms."""

    object_id: str
    record_id: str
    #: the vendor's id of the event (de-duplicates redeliveries)
    delivery_id: str
    operation: Literal["upsert", "delete"]
    fields: Mapping[str, Any] = field(default_factory=dict)
    #: when the change happened at its origin (orders deliveries of one field)
    at: dt.datetime | None = None
    #: the record was created by this change
    created: bool = False
    #: the record is gone for good (what is remembered of it may be forgotten)
    gone: bool = False
    #: who made the change (the vendor's member or user id), when the vendor says
    who: str | None = None
    #: the vendor's type of the event (``updateCard``, ``commentCard``, ...)
    action: str | None = None
    #: what the event says that is no field of the record (a comment's text)
    details: Mapping[str, Any] = field(default_factory=dict)
    #: the values the fields the event changed held before it, when the event says ({} for a
    #: creation); None: it does not say
    previous: Mapping[str, Any] | None = None
    #: the values the event set, when they are not ``fields`` (which may hold more: a record read
    #: with the event); with ``previous`` and no ``changed``, ``fields`` are what it set
    changed: Mapping[str, Any] | None = None
    #: what ``details`` held before the event (an edited comment's text, a member removed)
    previous_details: Mapping[str, Any] = field(default_factory=dict)

    def meta(self) -> EventMeta:
        """The event's metadata, as it travels with its change to the target's write."""
        changed = self.changed
        if changed is None and self.previous is not None:
            changed = dict(self.fields)
        return EventMeta(
            at=self.at,
            who=self.who,
            action=self.action,
            delivery_id=self.delivery_id,
            details=self.details,
            changed=changed,
            previous=self.previous,
            previous_details=self.previous_details,
        )


@dataclass(frozen=True)
class Protection:
    """How a connection's deliveries are authenticated, in words, and what in its settings does not fit."""

    kind: Literal["signed", "secret_url"]
    description: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subscription:
    """One vendor webhook subscription."""

    id: str
    object_id: str
    event: str
    config: Mapping[str, Any] | None = None


@dataclass
class SubscriptionReport:
    created: list[Subscription] = field(default_factory=list)
    existing: list[Subscription] = field(default_factory=list)


@runtime_checkable
class WebhookSource(Protocol):
    """Changes pushed by the vendor to ``/webhooks/{connection}``."""

    def protection(self) -> Protection:
        """How this connection's deliveries are authenticated (from its settings)."""
        ...

    def authenticate(self, delivery: Delivery, receiver: Receiver) -> SingleUse | None:
        """Check a delivery before its body is parsed; raise :class:`WebhookRefused`. A signed
        delivery returns its token to bind to the body (None: nothing to bind)."""
        ...

    def handshake(self, body: bytes) -> Mapping[str, Any] | None:
        """The reply to the vendor's URL check, when ``body`` is one (else None)."""
        ...

    def parse(self, body: bytes) -> list[SourceEvent]:
        """The changes a delivery reports (none for events crmsync does not sync); raise
        :class:`MalformedDelivery`."""
        ...

    def receiver_url(self, base_url: str, secret: str | None) -> str:
        """Where the vendor should deliver (with ``secret``: the unsigned deliveries' URL)."""
        ...

    def ensure_subscriptions(self, object_id: str, url: str, *, attempt: str) -> SubscriptionReport:
        """Create the object's missing subscriptions (never a duplicate); list those present."""
        ...

    def list_subscriptions(self, object_id: str, *, signed_only: bool = False) -> list[Subscription]: ...


@runtime_checkable
class IngestSource(Protocol):
    """Records pushed by an application through the ingest API (``/api/v1/flows/{flow}/records``):
    they are named by a field the application sends, and only the fields the flow lets it own."""

    def accepts_ingest(self) -> bool: ...


#: a side of a flow whose changes travel needs one of these
CHANGE_SOURCES: tuple[type, ...] = (PolledSource, WebhookSource, IngestSource)


# ---------------------------------------------------------------- queries, related records, budgets


@runtime_checkable
class Queryable(Protocol):
    """Read-through queries in the vendor's own language, kept inside the connector."""

    def query_view(self, query: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run a configured view (the user's query, ``:name`` parameters bound and escaped)."""
        ...

    def find_by_field(self, object_name: str, field_name: str, values: Sequence[str]) -> dict[str, list[str]]:
        """Value → the ids of the records whose ``field_name`` holds it (values not found are absent)."""
        ...

    def matching(self, object_name: str, ids: Sequence[str], condition: str) -> set[str]:
        """Those of ``ids`` whose record satisfies ``condition`` (a lock rule's, from the config)."""
        ...


@runtime_checkable
class RelatedCreator(Protocol):
    """A record and its related records created in one all-or-none call."""

    def create_related(
        self,
        object_name: str,
        fields: Mapping[str, Any],
        related: Sequence[tuple[str, Mapping[str, Any], Mapping[str, str]]],
        refs: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Create the ``related`` records (object, fields, refs to others made in the call), then the
        record; ``{object: new id}``; nothing is made if anything is refused."""
        ...


@runtime_checkable
class Budgeted(Protocol):
    """An API budget shared by every process using one store, and a guard for non-urgent work."""

    def attach_store(self, store: Store) -> None:
        """Keep the budget in ``store`` (every process then spends from one budget)."""
        ...

    def over_guard(self) -> bool:
        """Past the share of the budget kept for urgent work."""
        ...


@runtime_checkable
class PacedBudget(Protocol):
    """A connector that waits for its API budget before a call (monday's complexity per minute):
    whoever drives a long run (``crmsync migrate``) can tell the user while it waits."""

    def budget_name(self) -> str:
        """What a wait is for, in words: ``"monday's complexity budget"``."""
        ...

    def on_wait(self, report: Callable[[float | None], None] | None) -> None:
        """While set, each wait for the budget is told to ``report``: the seconds left, about once a
        second, then None when it ends (:func:`countdown`). None: waits are no longer told."""
        ...


def countdown(seconds: float, sleep: Callable[[float], None], report: Callable[[float | None], None]) -> None:
    """Sleep ``seconds`` in steps of at most one, telling ``report`` the seconds left, then None."""
    left = seconds
    try:
        while left > 0:
            report(left)
            step = min(1.0, left)
            sleep(step)
            left -= step
    finally:
        report(None)


@dataclass(frozen=True)
class Choices:
    """A field whose values must be among its labels (a status, a dropdown, a picklist)."""

    field: str
    title: str
    labels: tuple[str, ...]
    #: a value may hold several labels (a list, or text separated by commas)
    multiple: bool = False

    def refused(self, value: Any) -> list[str]:
        """The parts of ``value`` that are not labels (none for an empty value)."""
        if value in (None, "", []):
            return []
        parts = value if isinstance(value, list) else str(value).split(",") if self.multiple else [value]
        return [str(part).strip() for part in parts if str(part).strip() not in self.labels]


@runtime_checkable
class ChoiceFields(Protocol):
    """The system refuses a value that is not one of a field's labels, and can list them: a dry run
    names each value the target would refuse before anything is written."""

    def choice_fields(self, object_name: str) -> Mapping[str, Choices]:
        """The object's fields with a fixed list of labels, by field name (one cheap call)."""
        ...


@runtime_checkable
class NamedObjects(Protocol):
    """Objects a configuration may name instead of numbering (a monday board's name)."""

    def object_id(self, name: str) -> str:
        """The id of the object called ``name`` (an id is returned as it is)."""
        ...


@runtime_checkable
class Describes(Protocol):
    """An object's fields and their types can be read (a Salesforce describe, a board's columns)."""

    def describe(self, object_name: str) -> Mapping[str, Any]:
        """``{"fields": [{"name", "type", "length"?}, ...]}`` (types in the vendor's words)."""
        ...


class Catalog(Protocol):
    """What one connected system holds, for ``crmsync check --connect`` (answers may be cached)."""

    def object_names(self) -> Sequence[str]:
        """Every object name, for suggestions (may be empty when the vendor lists none cheaply)."""
        ...

    def field_names(self, object_name: str) -> Sequence[str] | None:
        """The fields of ``object_name``; None when there is no such object."""
        ...

    def parent_of(self, object_name: str, relationship: str) -> str | None:
        """The object a relationship of ``object_name`` leads to (``Account.Name``), if any."""
        ...

    def describe_missing(self, object_name: str) -> str:
        """What to say about an object that does not exist."""
        ...


@runtime_checkable
class PolymorphicCatalog(Protocol):
    """A catalog whose relationships may lead to several objects (Salesforce's ``Task.What``: an
    Account, an Opportunity…): a field through one is known when any of them has it."""

    def parents_of(self, object_name: str, relationship: str) -> Sequence[str]:
        """Every object a relationship of ``object_name`` may lead to (none: no such relationship)."""
        ...


@runtime_checkable
class Catalogued(Protocol):
    """The system can say which objects and fields exist (a Salesforce org's describes, a board's
    columns): the names a configuration gives are checked against it."""

    def catalog(self) -> Catalog:
        """A catalog of the connected system (asks the vendor lazily, remembers the answers)."""
        ...


@runtime_checkable
class Exports(Protocol):
    """An object read whole with chosen fields, in key order, at any size: the connector picks how
    (Salesforce: a query, or a Bulk API 2.0 job for a large object). The query text stays inside."""

    def count_records(self, object_name: str) -> int:
        """How many records the object holds."""
        ...

    def export(
        self, object_name: str, fields: Sequence[str], *, order_by: str, count: int | None = None
    ) -> Iterator[Record]:
        """Every record with its ``fields`` (a parent's field as ``Parent.Field``) and when it last
        changed (``modified``), ordered by ``order_by``;
        ``count``: what :meth:`count_records` said, if the caller asked (saves a call). A name that is
        not a field name raises :class:`~crmsync.errors.ConfigError`."""
        ...


@dataclass(frozen=True)
class TargetShape:
    """What one flow writes into one object of a target: the target fields it maps (each from a
    source field), and the source's describe of what it reads, when the source offers one."""

    flow: str
    object_name: str
    #: target field → the source field it comes from
    fields: Mapping[str, str]
    source: str
    describe: Mapping[str, Any] | None = None


@runtime_checkable
class PreparesSchema(Protocol):
    """A target whose storage is shaped by the flows writing to it (a reporting database's tables)."""

    def prepare_schema(self, shapes: Sequence[TargetShape], *, apply: bool = True) -> list[str]:
        """Declare what the flows write and, with ``apply``, create or migrate the storage for it;
        what was (or would be) changed, in words. A change the target refuses to make (one that could
        lose data) raises :class:`~crmsync.errors.ConfigError` listing each."""
        ...


@runtime_checkable
class KeepsHistory(Protocol):
    """A target that records every event of a record (its history), even one that changes none of
    the fields it holds (a comment): the engine hands it such events as writes with their ``meta``,
    and, when the event's source said what it set and replaced, those values mapped into the
    target's names (``Write.changed`` / ``Write.previous``) to record as the event's before and
    after, whatever the target holds when the write comes."""

    def keeps_history(self) -> bool: ...


# ---------------------------------------------------------------- what scheduled jobs use


@runtime_checkable
class ActivityLog(Protocol):
    """When records last changed, from the vendor's own history of them."""

    def last_changed(
        self, object_name: str, ids: Sequence[str], *, ignoring: Sequence[str] = ()
    ) -> dict[str, dt.datetime]:
        """Record id → when it last changed (aware, UTC), leaving out changes made only to the
        fields named in ``ignoring``; unknown ids are absent."""
        ...


@runtime_checkable
class CatchUp(Protocol):
    """A webhook source whose events can be read back after a gap (crmsync down, a webhook lost)."""

    def events_since(self, object_id: str, cursor: str | None) -> tuple[list[SourceEvent], str | None]:
        """The object's events after ``cursor``, oldest first, as ``parse`` gives them (same
        delivery ids), and the cursor to read from next time; with no cursor: no events, and the
        cursor of the newest event."""
        ...


@runtime_checkable
class ReportingTables(Protocol):
    """Typed current-state tables (and the workload snapshot) in a reporting database."""

    def declare(self, objects: Iterable[ObjectSpec]) -> None: ...

    def prepare(self) -> Any: ...

    def write_snapshot(self, day: dt.date, rows: Sequence[SnapshotRow], *, board: str = "") -> int: ...


@dataclass(frozen=True)
class ReportRun:
    """A saved report's detail rows (each keyed by column name and by label) and whether they are
    all of them (``all_data`` false: the vendor cut them at ``row_limit``)."""

    columns: tuple[str, ...]
    labels: tuple[str, ...]
    rows: list[dict[str, Any]]
    all_data: bool
    row_limit: int | None = None
    total_rows: int | None = None


@runtime_checkable
class Reports(Protocol):
    """A vendor's saved reports (through its reports API) and exports of any size."""

    def describe_report(self, report_id: str) -> Mapping[str, Any]: ...

    def run_report(self, report_id: str, filters: Sequence[Mapping[str, Any]] = ()) -> ReportRun: ...

    def export_query(self, query: str) -> Iterator[dict[str, Any]]: ...


#: every capability, by the name the messages use
CAPABILITIES: dict[str, type] = {
    "Writable": Writable,
    "Readable": Readable,
    "PolledSource": PolledSource,
    "WebhookSource": WebhookSource,
    "IngestSource": IngestSource,
    "Queryable": Queryable,
    "RelatedCreator": RelatedCreator,
    "Budgeted": Budgeted,
    "PacedBudget": PacedBudget,
    "ChoiceFields": ChoiceFields,
    "NamedObjects": NamedObjects,
    "ActivityLog": ActivityLog,
    "CatchUp": CatchUp,
    "ReportingTables": ReportingTables,
    "Reports": Reports,
    "Describes": Describes,
    "Catalogued": Catalogued,
    "Exports": Exports,
    "PreparesSchema": PreparesSchema,
    "KeepsHistory": KeepsHistory,
}

#: what each capability lets a connection do, for messages
_WHAT = {
    "Writable": "cannot be written to",
    "Readable": "cannot be read",
    "PolledSource": "cannot be polled for changes",
    "WebhookSource": "does not receive webhooks",
    "IngestSource": "does not submit records through the ingest API",
    "Queryable": "cannot answer queries",
    "RelatedCreator": "cannot create related records together",
    "Budgeted": "has no shared API budget",
    "PacedBudget": "does not pace itself to a budget",
    "ChoiceFields": "cannot list the labels of its choice fields",
    "NamedObjects": "cannot look objects up by name",
    "ActivityLog": "does not tell when records last changed",
    "CatchUp": "cannot read back missed webhook events",
    "ReportingTables": "keeps no reporting tables",
    "Reports": "has no reports",
    "Describes": "cannot describe its objects",
    "Catalogued": "cannot list its objects and fields",
    "Exports": "cannot export an object's records",
    "PreparesSchema": "has no schema to prepare",
    "KeepsHistory": "keeps no history",
}

C = TypeVar("C")


def capabilities_of(cls: type[Connector]) -> frozenset[str]:
    """The capabilities a connector class declares (no instance, no connection needed)."""
    return frozenset(name for name, proto in CAPABILITIES.items() if issubclass(cls, proto))


def offers(connector: Connector | type[Connector], capability: type[C]) -> bool:
    """Does the connector (or connector class) have ``capability``?"""
    cls = connector if isinstance(connector, type) else type(connector)
    return issubclass(cls, capability)


def is_change_source(cls: type[Connector]) -> bool:
    """Can a side on this connector be a flow's trigger (polled, webhooks or ingest)?"""
    return any(issubclass(cls, proto) for proto in CHANGE_SOURCES)


def missing(kind: str, connection: str, capability: type, where: str | None = None) -> ConfigError:
    """The error for a connection that lacks ``capability``: names the connection, its type, the
    capability and what needed it."""
    name = capability.__name__
    what = _WHAT.get(name, f"lacks {name}")
    message = f"connection {connection!r} (type {kind}) {what} ({name})"
    return ConfigError(message + (f", needed by {where}" if where else ""))


def require(connector: Connector, capability: type[C], where: str | None = None) -> C:
    """``connector`` typed as ``capability``; :class:`~crmsync.errors.ConfigError` naming the
    connection, its type and the missing capability (and ``where``: the flow or line) otherwise."""
    if isinstance(connector, capability):
        return connector
    raise missing(connector.kind, connector.name, capability, where)
