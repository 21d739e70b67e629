"""What one Salesforce polling cycle asks for, and how it fits into Composite calls.

Pure functions and values, no I/O: :mod:`.poller` runs the plan. The SOQL of polling is written
here, inside the connector; the engine only names objects and fields (:class:`PollTarget`).

- Targets (flow, object, fields) that read the same object share one *feed*: one query whose
  SELECT list is the union of their fields, fanned out to each flow's changes.
- Each feed's query (fact sheet §3)::

      SELECT Id, <fields>, SystemModstamp, IsDeleted FROM <object>
      WHERE SystemModstamp > <watermark - overlap> ORDER BY SystemModstamp, Id LIMIT 2000

  sent to ``queryAll``, so a record deleted into the recycle bin comes back once more, with
  ``IsDeleted = true`` and a fresh stamp, in order with the other changes of that record. When
  2,000 rows came back the next query continues after the last ``(SystemModstamp, Id)`` seen
  (``SystemModstamp`` has whole seconds, so thousands of rows can share one stamp).
- A *lookback sweep* (when enabled) re-reads, every ``sweep_every``, the rows stamped in
  ``(watermark - lookback - sweep_every, watermark - overlap]``: rows whose transaction committed
  late, after rows stamped later were read. It is a query subrequest like the others, bounded
  above so it never reads what the fast query reads, and continues after a full page the same way.
- Deletions also come from ``/sobjects/<object>/deleted/?start&end``, which covers hard deletes
  too. Its windows have whole minutes, so a check is due once the current minute is at least one
  minute past the feed's deletion watermark: at most one check per object a minute.
- :func:`pack` puts subrequests into Composite calls: at most 25 subrequests a call, and at most
  5 of them query requests (``query``, ``queryAll`` or a ``nextRecordsUrl``) — a limit of
  Salesforce's Composite resource (fact sheet §5). Deletion checks ride in the free slots, so
  they cost no call of their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

from crmsync.connectors.polling import PollTarget
from crmsync.connectors.salesforce import polymorphic
from crmsync.connectors.salesforce.client import COMPOSITE_SIZE, sf_datetime
from crmsync.connectors.salesforce.polymorphic import (
    Describe,
    TypeOf,
    beyond_name_object,
    select_list,
)
from crmsync.connectors.salesforce.soql import format_soql
from crmsync.errors import ConfigError

#: query subrequests (query, queryAll, next pages) Salesforce takes in one Composite call
QUERIES_PER_COMPOSITE = 5
#: rows one polling query asks for (LIMIT); more are read by a continuation query
PAGE_LIMIT = 2000
#: how far back ``/deleted`` can look (Salesforce keeps deletions 15 days)
DELETED_RETENTION = dt.timedelta(days=15)
#: fields every feed reads besides the targets' own
SYSTEM_FIELDS = ("Id", "SystemModstamp", "IsDeleted")

_OBJECT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
_MINUTE = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Feed:
    """One object's query, shared by every target that reads that object."""

    object_name: str
    fields: tuple[str, ...]
    """the SELECT list: Id, the targets' fields (each once), SystemModstamp, IsDeleted"""
    targets: tuple[PollTarget, ...]
    typeofs: tuple[TypeOf, ...] = ()
    """polymorphic relationships read through TYPEOF (:func:`typeofs`): their fields leave ``fields``"""

    @property
    def select(self) -> str:
        """The SELECT list as SOQL: the plain fields, then each TYPEOF."""
        return select_list(self.fields, self.typeofs)

    @property
    def related(self) -> bool:
        """Some field goes through a relationship to more than a ``Name`` object field (it may
        need a TYPEOF: :func:`typeofs` tells from the describes)."""
        return beyond_name_object(self.fields)

    @property
    def shared(self) -> bool:
        """Several flows read this object (their delivery ids then name the flow)."""
        return len({t.flow for t in self.targets}) > 1

    @property
    def deleted_key(self) -> str:
        """The watermark key of this object's ``/deleted`` window."""
        return f"{self.object_name}/deleted"


def check_target(target: PollTarget) -> PollTarget:
    """``target`` if its object and field names are Salesforce names (they are written into SOQL)."""
    if not _OBJECT.fullmatch(target.object_name):
        raise ConfigError(f"{target.object_name!r} is not a valid Salesforce object name")
    bad = [f for f in target.fields if not _FIELD.fullmatch(f)]
    if bad:
        raise ConfigError(f"not valid Salesforce field names for {target.object_name}: {', '.join(bad)}")
    return target


def build_feeds(targets: Iterable[PollTarget]) -> list[Feed]:
    """Group targets by object (names are case-insensitive), in the order objects first appear;
    :class:`~crmsync.errors.ConfigError` for a name that is not Salesforce's."""
    groups: dict[str, list[PollTarget]] = {}
    for target in map(check_target, targets):
        groups.setdefault(target.object_name.lower(), []).append(target)
    feeds = []
    for group in groups.values():
        seen: set[str] = set()
        fields: list[str] = []
        for name in (SYSTEM_FIELDS[0], *(f for t in group for f in t.fields), *SYSTEM_FIELDS[1:]):
            if name.lower() not in seen:  # SOQL refuses a field selected twice
                seen.add(name.lower())
                fields.append(name)
        feeds.append(Feed(group[0].object_name, tuple(fields), tuple(group)))
    return feeds


def typeofs(feed: Feed, describe: Describe) -> tuple[TypeOf, ...]:
    """The TYPEOFs ``feed`` needs (:func:`.polymorphic.typeofs`: one per polymorphic relationship
    through which it reads more than a ``Name`` object field)."""
    return polymorphic.typeofs(feed.object_name, feed.fields, describe)


def poll_soql(
    feed: Feed,
    *,
    since: dt.datetime | None = None,
    after: tuple[dt.datetime, str] | None = None,
    limit: int = PAGE_LIMIT,
) -> str:
    """The feed's query: rows stamped after ``since`` (all rows when None), or — continuing a
    full page — rows after ``after`` = (SystemModstamp, Id) in (SystemModstamp, Id) order."""
    select = f"SELECT {feed.select} FROM {feed.object_name}"
    tail = f" ORDER BY SystemModstamp, Id LIMIT {int(limit)}"
    if after is not None:
        where = " WHERE (SystemModstamp = :stamp AND Id > :id) OR SystemModstamp > :stamp"
        return format_soql(select + where + tail, stamp=after[0], id=after[1])
    if since is not None:
        return format_soql(select + " WHERE SystemModstamp > :since" + tail, since=since)
    return select + tail


def sweep_soql(
    feed: Feed,
    *,
    low: dt.datetime,
    high: dt.datetime,
    after: tuple[dt.datetime, str] | None = None,
    limit: int = PAGE_LIMIT,
) -> str:
    """The feed's lookback sweep: rows stamped in ``(low, high]``, or — continuing a full page —
    rows after ``after`` = (SystemModstamp, Id) up to ``high``."""
    select = f"SELECT {feed.select} FROM {feed.object_name}"
    tail = f" ORDER BY SystemModstamp, Id LIMIT {int(limit)}"
    if after is not None:
        where = (
            " WHERE ((SystemModstamp = :stamp AND Id > :id) OR SystemModstamp > :stamp)"
            " AND SystemModstamp <= :high"
        )
        return format_soql(select + where + tail, stamp=after[0], id=after[1], high=high)
    where = " WHERE SystemModstamp > :low AND SystemModstamp <= :high"
    return format_soql(select + where + tail, low=low, high=high)


SubrequestKind = Literal["query", "more", "deleted", "sweep", "sweep_more"]


@dataclass(frozen=True)
class Subrequest:
    """One GET inside a Composite call, for the feed at index ``feed``."""

    kind: SubrequestKind
    """``query`` (a feed's query), ``more`` (a ``nextRecordsUrl``), ``deleted`` (a window), or
    ``sweep``/``sweep_more`` (the lookback sweep's query and its next pages)"""
    feed: int
    url: str
    """relative to the API version (``queryAll/?q=...``) or instance-relative (``/services/...``)"""

    @property
    def is_query(self) -> bool:
        return self.kind != "deleted"


def query_subrequest(feed: int, soql: str, kind: SubrequestKind = "query") -> Subrequest:
    return Subrequest(kind, feed, "queryAll/?q=" + quote(soql, safe=""))


def deleted_subrequest(feed: int, object_name: str, start: dt.datetime, end: dt.datetime) -> Subrequest:
    query = urlencode({"start": sf_datetime(start), "end": sf_datetime(end)})
    return Subrequest("deleted", feed, f"sobjects/{object_name}/deleted/?{query}")


def pack(
    subrequests: Sequence[Subrequest],
    *,
    size: int = COMPOSITE_SIZE,
    max_queries: int = QUERIES_PER_COMPOSITE,
) -> list[list[Subrequest]]:
    """Subrequests in as few Composite calls as the limits allow, order kept within each kind.

    Query requests fill calls ``max_queries`` at a time; every other subrequest goes to the first
    call with a free slot (a new call only when all are full).
    """
    if size < 1 or max_queries < 1:
        raise ValueError("a composite call needs room for at least one subrequest")
    per_call = min(size, max_queries)
    queries = [s for s in subrequests if s.is_query]
    calls = [list(queries[i : i + per_call]) for i in range(0, len(queries), per_call)]
    for sub in (s for s in subrequests if not s.is_query):
        free = next((call for call in calls if len(call) < size), None)
        if free is None:
            free = []
            calls.append(free)
        free.append(sub)
    return calls


def floor_minute(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(second=0, microsecond=0)


def deletion_window(mark: dt.datetime, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The ``/deleted`` window to ask for now, or None while it would be under a minute.

    A start older than Salesforce's retention is moved forward (the caller warns: deletions
    before it may be lost).
    """
    start = floor_minute(mark)
    earliest = floor_minute(now - DELETED_RETENTION) + 2 * _MINUTE
    start = max(start, earliest)
    if floor_minute(now) - start < _MINUTE:
        return None
    return start, now


def first_watermark(now: dt.datetime, overlap: dt.timedelta) -> str:
    """The watermark of a feed that starts now: its first query (``> watermark - overlap``) reads
    the rows stamped in the current second and after, none before (stamps have whole seconds)."""
    second = now.astimezone(dt.UTC).replace(microsecond=0)
    return format_stamp(second - dt.timedelta(milliseconds=1) + overlap)


def format_stamp(value: dt.datetime) -> str:
    """A datetime the way Salesforce writes one: ``2024-05-01T10:30:00.000+0000``."""
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def field_value(row: Mapping[str, Any], name: str) -> Any:
    """The value of ``name`` in a query row; ``Account.Name`` walks the parent (None if absent)."""
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        if part in value:
            value = value[part]
        else:  # Salesforce answers with the field's own spelling; names are case-insensitive
            lower = part.lower()
            value = next((v for k, v in value.items() if k.lower() == lower), None)
    return value


def values_digest(fields: Mapping[str, Any]) -> str:
    """A short, stable digest of field values (two edits within one stamp second differ by it)."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def upsert_delivery_id(record_id: str, stamp: str, fields: Mapping[str, Any], flow: str | None) -> str:
    """``sf:<Id>:<SystemModstamp>:<digest of the values>`` (``:<flow>`` when flows share the object).

    The stamp has whole seconds, so two edits in one second share it: the digest keeps the second
    edit from being dropped as a duplicate of the first, while a row read again unchanged (the
    overlap) is one.
    """
    base = f"sf:{record_id}:{stamp}:{values_digest(fields)}"
    return f"{base}:{flow}" if flow else base


def delete_delivery_id(record_id: str, flow: str | None) -> str:
    """``sf-del:<Id>`` (``:<flow>`` when flows share the object): the same from ``queryAll`` and
    ``/deleted``, so a deletion seen by both is one change."""
    return f"sf-del:{record_id}:{flow}" if flow else f"sf-del:{record_id}"
