"""``MemorySystem``: the far side of the in-memory connector, a small vendor living in the process.

A system is named and process-wide (:meth:`MemorySystem.named`): two connections naming the same
``system`` talk to the same records, and a test reaches it by the same name to look at what landed
or to change something as a user of the vendor would. It holds:

- *objects* of records, each with an id, its fields, a ``modified`` stamp and a ``deleted`` flag
  (deleted records stay as tombstones, so change reading reports deletions);
- a *clock* whose stamps strictly increase across the whole system (ISO 8601, microseconds, UTC):
  two changes never share a stamp, so reading changes "after the watermark" misses none and repeats
  none;
- a *journal* of every write, oldest first, naming the connection that made it (None: a user);
- *subscriptions* (webhooks): every change of a subscribed object becomes a signed delivery in an
  outbox, sent to the subscription's URL by :meth:`MemorySystem.flush`;
- *failure injection* at run time: the next calls fail (:meth:`fail_next`) with a transient,
  budget or fatal error, the credentials it accepts change (:attr:`token`), and the number of calls
  each connection made is counted (:attr:`calls`).

Nothing here knows about crmsync's engine; :mod:`.connector` is the connector that calls it.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httpx

from crmsync.connectors.memory.signing import sign

Operation = Literal["create", "update", "delete"]
FailureKind = Literal["retry", "budget", "fatal"]

#: the credentials a new system accepts
DEFAULT_TOKEN = "memory"  # noqa: S105 - a fake system's well-known default


def format_stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class StoredRecord:
    """One record as the system holds it (copies are handed out)."""

    id: str
    fields: dict[str, Any]
    modified: str
    deleted: bool = False


@dataclass(frozen=True)
class JournalEntry:
    """One write: when, where, what, and which connection made it (None: a user of the system)."""

    at: str
    object_name: str
    id: str
    operation: Operation
    fields: Mapping[str, Any]
    by: str | None


@dataclass
class Subscription:
    """A webhook: deliveries of ``object_name``'s changes go to ``url``, signed with ``secret``."""

    id: str
    object_name: str
    url: str
    secret: str


@dataclass
class Delivery:
    """A signed delivery waiting in the outbox."""

    subscription: Subscription
    headers: dict[str, str]
    body: bytes


@dataclass
class _Failure:
    kind: FailureKind
    message: str
    retry_after: float | None


class MemorySystem:
    """One in-memory vendor. Thread-safe: every operation holds the system's lock."""

    _systems: ClassVar[dict[str, MemorySystem]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.name = name
        self.lock = threading.RLock()
        self.token = DEFAULT_TOKEN
        self.calls: Counter[str] = Counter()
        self.journal: list[JournalEntry] = []
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._last: dt.datetime | None = None
        self._objects: dict[str, dict[str, StoredRecord]] = {}
        self._ids = itertools.count(1)
        self._failures: deque[_Failure] = deque()
        self._subscriptions: dict[str, Subscription] = {}
        self._outbox: list[Delivery] = []
        #: idempotency key of a create → (id, when): a create sent again is answered with the same id
        self._replays: dict[str, tuple[str, dt.datetime]] = {}
        #: (connection, minute) → calls, for the per-minute budget
        self._minutes: Counter[tuple[str, int]] = Counter()

    # -- the process-wide registry -------------------------------------------------------------------
    @classmethod
    def named(cls, name: str) -> MemorySystem:
        """The system called ``name`` in this process (made on first use)."""
        with cls._registry_lock:
            found = cls._systems.get(name)
            if found is None:
                found = cls._systems[name] = cls(name)
            return found

    @classmethod
    def discard(cls, name: str) -> None:
        """Forget the system called ``name`` (the next :meth:`named` makes an empty one)."""
        with cls._registry_lock:
            cls._systems.pop(name, None)

    # -- the clock -----------------------------------------------------------------------------------
    def stamp(self) -> str:
        """A new ``modified`` stamp, later than every stamp this system gave before."""
        with self.lock:
            now = self._clock()
            if self._last is not None and now <= self._last:
                now = self._last + dt.timedelta(microseconds=1)
            self._last = now
            return format_stamp(now)

    # -- calls and injected failures -----------------------------------------------------------------
    def fail_next(
        self,
        count: int = 1,
        kind: FailureKind = "retry",
        *,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Make the next ``count`` calls (of any connection) fail: ``retry`` (the vendor is down),
        ``budget`` (a rate limit, with ``retry_after``) or ``fatal`` (credentials refused)."""
        text = (
            message
            or {
                "retry": "the memory system is unavailable (injected)",
                "budget": "the memory system's rate limit is reached (injected)",
                "fatal": "the memory system refused the credentials (injected)",
            }[kind]
        )
        with self.lock:
            self._failures.extend(_Failure(kind, text, retry_after) for _ in range(count))

    def take_failure(self) -> _Failure | None:
        with self.lock:
            return self._failures.popleft() if self._failures else None

    def count_call(self, connection: str) -> int:
        """Note one call of ``connection``; returns its calls in the current minute."""
        with self.lock:
            self.calls[connection] += 1
            minute = int(self._clock().timestamp() // 60)
            self._minutes[(connection, minute)] += 1
            return self._minutes[(connection, minute)]

    def seconds_to_next_minute(self) -> float:
        now = self._clock().timestamp()
        return 60.0 - now % 60

    # -- records -------------------------------------------------------------------------------------
    def _table(self, object_name: str) -> dict[str, StoredRecord]:
        return self._objects.setdefault(object_name, {})

    def _journal(
        self,
        object_name: str,
        record: StoredRecord,
        operation: Operation,
        fields: Mapping[str, Any],
        by: str | None,
    ) -> None:
        self.journal.append(
            JournalEntry(record.modified, object_name, record.id, operation, dict(fields), by)
        )
        for sub in self._subscriptions.values():
            if sub.object_name == object_name:
                self._outbox.append(self._delivery(sub, object_name, record, operation, fields))

    def insert(
        self,
        object_name: str,
        fields: Mapping[str, Any],
        *,
        record_id: str | None = None,
        by: str | None = None,
    ) -> str:
        """Create a record (as a user would, unless ``by`` names a connection); its new id."""
        with self.lock:
            table = self._table(object_name)
            rid = record_id or f"{object_name[:3].lower()}-{next(self._ids)}"
            if rid in table and not table[rid].deleted:
                raise KeyError(f"{object_name} {rid} exists already")
            record = StoredRecord(rid, copy.deepcopy(dict(fields)), self.stamp())
            table[rid] = record
            self._journal(object_name, record, "create", fields, by)
            return rid

    def update(
        self, object_name: str, record_id: str, fields: Mapping[str, Any], *, by: str | None = None
    ) -> None:
        """Change some fields of a live record (its stamp moves even when no value changes)."""
        with self.lock:
            record = self._live(object_name, record_id)
            record.fields.update(copy.deepcopy(dict(fields)))
            record.modified = self.stamp()
            self._journal(object_name, record, "update", fields, by)

    def delete(self, object_name: str, record_id: str, *, by: str | None = None) -> bool:
        """Delete a record (it stays as a tombstone); False when it was not there or gone already."""
        with self.lock:
            record = self._table(object_name).get(record_id)
            if record is None or record.deleted:
                return False
            record.deleted = True
            record.modified = self.stamp()
            self._journal(object_name, record, "delete", {}, by)
            return True

    def _live(self, object_name: str, record_id: str) -> StoredRecord:
        record = self._table(object_name).get(record_id)
        if record is None or record.deleted:
            raise KeyError(f"no {object_name} {record_id}")
        return record

    def get(self, object_name: str, record_id: str) -> StoredRecord | None:
        """A copy of the record (a deleted one too), or None."""
        with self.lock:
            record = self._table(object_name).get(record_id)
            return copy.deepcopy(record) if record is not None else None

    def records(self, object_name: str, *, include_deleted: bool = False) -> list[StoredRecord]:
        """Copies of an object's records, oldest change first."""
        with self.lock:
            rows = [r for r in self._table(object_name).values() if include_deleted or not r.deleted]
            return copy.deepcopy(sorted(rows, key=lambda r: r.modified))

    def find(self, object_name: str, field_name: str, value: Any) -> list[StoredRecord]:
        """Copies of the live records whose ``field_name`` holds ``value``."""
        with self.lock:
            rows = [
                r
                for r in self._table(object_name).values()
                if not r.deleted and r.fields.get(field_name) == value
            ]
            return copy.deepcopy(rows)

    def changed_since(self, object_name: str, watermark: str | None, limit: int) -> list[StoredRecord]:
        """Copies of the records (tombstones too) changed after ``watermark``, oldest first, at most
        ``limit``."""
        with self.lock:
            rows = [
                r for r in self._table(object_name).values() if watermark is None or r.modified > watermark
            ]
            return copy.deepcopy(sorted(rows, key=lambda r: r.modified)[:limit])

    # -- idempotent creates ----------------------------------------------------------------------------
    def replayed(self, key: str, window: float) -> str | None:
        """The id a create with this idempotency key made within ``window`` seconds, if any."""
        with self.lock:
            found = self._replays.get(key)
            if found is None:
                return None
            rid, when = found
            if (self._clock() - when).total_seconds() > window:
                del self._replays[key]
                return None
            return rid

    def remember_create(self, key: str, record_id: str) -> None:
        with self.lock:
            self._replays[key] = (record_id, self._clock())

    # -- webhooks ----------------------------------------------------------------------------------------
    def subscribe(self, object_name: str, url: str, secret: str) -> Subscription:
        """Send every later change of ``object_name`` to ``url`` (a subscription to the same object
        and URL is replaced)."""
        with self.lock:
            for sub in list(self._subscriptions.values()):
                if sub.object_name == object_name and sub.url == url:
                    del self._subscriptions[sub.id]
            sub = Subscription(uuid.uuid4().hex, object_name, url, secret)
            self._subscriptions[sub.id] = sub
            return sub

    def subscriptions(self, object_name: str | None = None) -> list[Subscription]:
        with self.lock:
            return [
                copy.copy(s)
                for s in self._subscriptions.values()
                if object_name is None or s.object_name == object_name
            ]

    def unsubscribe(self, subscription_id: str) -> bool:
        with self.lock:
            return self._subscriptions.pop(subscription_id, None) is not None

    def _delivery(
        self,
        sub: Subscription,
        object_name: str,
        record: StoredRecord,
        operation: Operation,
        fields: Mapping[str, Any],
    ) -> Delivery:
        body = json.dumps(
            {
                "delivery_id": uuid.uuid4().hex,
                "system": self.name,
                "object": object_name,
                "id": record.id,
                "operation": operation,
                "fields": dict(fields) if operation != "create" else dict(record.fields),
                "modified": record.modified,
            },
            sort_keys=True,
            default=str,
        ).encode()
        return Delivery(sub, {"content-type": "application/json", **sign(body, sub.secret)}, body)

    def outbox(self) -> list[Delivery]:
        """The deliveries not sent yet, oldest first."""
        with self.lock:
            return list(self._outbox)

    def take_outbox(self) -> list[Delivery]:
        with self.lock:
            taken, self._outbox = self._outbox, []
            return taken

    def flush(self, post: Callable[[str, Mapping[str, str], bytes], int] | None = None) -> list[int]:
        """Send the outbox's deliveries in order (with httpx unless ``post`` is given); returns the
        status of each answer. A delivery that is not answered 2xx is put back, to be sent again."""
        sender = post or _http_post
        statuses = []
        failed: list[Delivery] = []
        for delivery in self.take_outbox():
            try:
                status = sender(delivery.subscription.url, delivery.headers, delivery.body)
            except OSError:
                status = 0
            statuses.append(status)
            if not 200 <= status < 300:
                failed.append(delivery)
        if failed:
            with self.lock:
                self._outbox[:0] = failed
        return statuses


def _http_post(url: str, headers: Mapping[str, str], body: bytes) -> int:
    try:
        return httpx.post(url, headers=dict(headers), content=body, timeout=10.0).status_code
    except httpx.HTTPError:
        return 0
