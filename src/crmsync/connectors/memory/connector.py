"""``MemoryConnector``: a connection to an in-memory system, with every capability and injected faults.

It is the reference connector: the smallest complete implementation of the seam
(:mod:`crmsync.connectors.capabilities`), the one the contract suite (:mod:`..contract`) is first
run against, and a fake for tests and demos (like dlt's dummy destination and procrastinate's
``InMemoryConnector``). Each method is one *call* to the system (counted per connection), and every
call can fail the way a vendor's does:

=====================================  =============================================================
what                                   how
=====================================  =============================================================
the next calls fail                    ``MemorySystem.fail_next(n, "retry" | "budget" | "fatal")``
any call fails now and then            ``fail_prob`` (with ``seed`` for a repeatable run): RetryLater
refused credentials                    ``token`` is not the system's (``system.token``): Fatal
a rate limit                           ``calls_per_minute``: BudgetExhausted until the minute ends
a daily budget                         ``daily_calls`` and ``daily_limit_guard`` (``over_guard``)
refused records                        ``refuse`` rules on a field's value: a FixTheData result
=====================================  =============================================================

Writes are idempotent when sent again: upserts match the external-id field, updates set values,
deleting a deleted record succeeds, and a create sent again with the same key and fields within
``replay_seconds`` is answered with the id it made the first time (an idempotency key, as monday's).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Self

from crmsync.connectors.base import ApiUsage, ChangeBatch, Connector, Record, Write, WriteResult
from crmsync.connectors.capabilities import (
    Budgeted,
    Delivery,
    MalformedDelivery,
    PolledSource,
    Protection,
    Queryable,
    Readable,
    Receiver,
    RelatedCreator,
    SingleUse,
    SourceEvent,
    Subscription,
    SubscriptionReport,
    WebhookRefused,
    WebhookSource,
    Writable,
)
from crmsync.connectors.memory import query
from crmsync.connectors.memory.settings import MemoryConnection
from crmsync.connectors.memory.signing import DeliveryRefused, verify
from crmsync.connectors.memory.system import MemorySystem, StoredRecord, parse_stamp
from crmsync.connectors.settings import secret
from crmsync.errors import BudgetExhausted, ConfigError, Fatal, FixTheData, RetryLater

#: most writes in one call
MAX_BATCH = 500
#: the event name of the system's one kind of subscription
EVENT = "change"


class MemoryConnector(
    Connector, Writable, Readable, PolledSource, WebhookSource, Queryable, RelatedCreator, Budgeted
):
    """One connection to the in-memory system named by its settings."""

    kind = "memory"

    def __init__(self, name: str, settings: MemoryConnection, *, system: MemorySystem | None = None) -> None:
        super().__init__(name)
        self.settings = settings
        self.system = system if system is not None else MemorySystem.named(settings.system)
        self._random = random.Random(settings.seed)

    @classmethod
    def from_config(cls, name: str, settings: Any) -> Self:
        if not isinstance(settings, MemoryConnection):
            raise ConfigError(f"connection {name!r} has no memory settings")
        return cls(name, settings)

    def __repr__(self) -> str:
        return f"MemoryConnector({self.name!r}, system={self.settings.system!r})"

    @property
    def url(self) -> str:
        return f"memory://{self.settings.system}"

    # -- one call ----------------------------------------------------------------------------------
    def _call(self, what: str, object_name: str | None = None) -> None:
        """Count one call and fail it the way the settings and the system say."""
        in_minute = self.system.count_call(self.name)
        where: dict[str, Any] = {"url": f"{self.url}/{what}", "object_name": object_name}
        failure = self.system.take_failure()
        if failure is not None:
            if failure.kind == "fatal":
                raise Fatal(failure.message, vendor_code="INJECTED", status=401, **where)
            if failure.kind == "budget":
                raise BudgetExhausted(
                    failure.message,
                    retry_after=failure.retry_after,
                    vendor_code="INJECTED",
                    status=429,
                    **where,
                )
            raise RetryLater(
                failure.message, retry_after=failure.retry_after, vendor_code="INJECTED", status=503, **where
            )
        if not hmac.compare_digest(
            self.settings.token.get_secret_value().encode(), self.system.token.encode()
        ):
            raise Fatal(
                f"the memory system {self.settings.system!r} refused the credentials: check `token`",
                vendor_code="INVALID_TOKEN",
                status=401,
                **where,
            )
        if self.settings.fail_prob and self._random.random() < self.settings.fail_prob:
            raise RetryLater("the memory system failed this call (fail_prob)", status=503, **where)
        limit = self.settings.calls_per_minute
        if limit is not None and in_minute > limit:
            raise BudgetExhausted(
                f"more than {limit} calls this minute (calls_per_minute)",
                retry_after=self.system.seconds_to_next_minute(),
                status=429,
                **where,
            )

    # -- health and budget -------------------------------------------------------------------------
    def check(self) -> None:
        """One call: Fatal when the credentials are refused."""
        self._call("check")

    def api_usage(self) -> ApiUsage | None:
        if self.settings.daily_calls is None:
            return None
        return ApiUsage(used=self.system.calls[self.name], limit=self.settings.daily_calls)

    def attach_store(self, store: Any) -> None:
        """Nothing to keep in the store: the system is process-wide, and so is its count of calls."""

    def over_guard(self) -> bool:
        usage = self.api_usage()
        return usage is not None and usage.fraction >= self.settings.daily_limit_guard

    # -- writes ------------------------------------------------------------------------------------
    def max_batch_size(self, object_name: str) -> int:
        return MAX_BATCH

    def write_batch(self, object_name: str, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply ``writes`` in one call; one result per write, in order."""
        if len(writes) > MAX_BATCH:
            raise ConfigError(f"at most {MAX_BATCH} writes go in one call, not {len(writes)}")
        self._call("write", object_name)
        with self.system.lock:
            return [self._write(object_name, w) for w in writes]

    def _refusal(self, object_name: str, fields: Mapping[str, Any], record: str) -> FixTheData | None:
        for rule in self.settings.refuse:
            if rule.refuses(dict(fields)):
                return FixTheData(
                    f"{rule.message} ({rule.field})",
                    vendor_code="REFUSED",
                    status=400,
                    url=f"{self.url}/write",
                    object_name=object_name,
                    record=record,
                )
        return None

    def _write(self, object_name: str, w: Write) -> WriteResult:
        problem = _invalid(w)
        if problem:
            return WriteResult(w.key, False, error=FixTheData(problem, object_name=object_name, record=w.key))
        refused = self._refusal(object_name, w.fields, w.target_id or w.key)
        if refused is not None and w.operation != "delete":
            return WriteResult(w.key, False, target_id=w.target_id, error=refused)
        by = self.name
        system = self.system
        if w.operation == "create":
            key = _idempotency_key(object_name, w)
            replayed = system.replayed(key, self.settings.replay_seconds)
            if replayed is not None:
                return WriteResult(w.key, True, target_id=replayed, created=True)
            rid = system.insert(object_name, w.fields, by=by)
            system.remember_create(key, rid)
            return WriteResult(w.key, True, target_id=rid, created=True)
        if w.operation == "upsert":
            assert w.external_id_field is not None
            found = system.find(object_name, w.external_id_field, w.external_id)
            if len(found) > 1:
                return WriteResult(
                    w.key,
                    False,
                    error=FixTheData(
                        f"{len(found)} records hold {w.external_id_field} = {w.external_id!r}",
                        vendor_code="DUPLICATE_EXTERNAL_ID",
                        object_name=object_name,
                        record=w.key,
                    ),
                )
            if found:
                system.update(object_name, found[0].id, w.fields, by=by)
                return WriteResult(w.key, True, target_id=found[0].id, created=False)
            rid = system.insert(object_name, {**w.fields, w.external_id_field: w.external_id}, by=by)
            return WriteResult(w.key, True, target_id=rid, created=True)
        assert w.target_id is not None
        if w.operation == "delete":
            system.delete(object_name, w.target_id, by=by)  # already gone: done all the same
            return WriteResult(w.key, True, target_id=w.target_id, created=False)
        try:
            system.update(object_name, w.target_id, w.fields, by=by)
        except KeyError:
            error = FixTheData(
                f"no {object_name} {w.target_id} (deleted?)",
                vendor_code="NOT_FOUND",
                status=404,
                object_name=object_name,
                record=w.target_id,
            )
            return WriteResult(w.key, False, target_id=w.target_id, error=error)
        return WriteResult(w.key, True, target_id=w.target_id, created=False)

    def create_related(
        self,
        object_name: str,
        fields: Mapping[str, Any],
        related: Sequence[tuple[str, Mapping[str, Any], Mapping[str, str]]],
        refs: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Create ``related`` in order, then the record, in one call: all of them or none."""
        order = [*related, (object_name, fields, dict(refs or {}))]
        self._call("create_related", object_name)
        with self.system.lock:
            for obj, values, _ in order:  # every record is checked before anything is made
                refused = self._refusal(obj, values, obj)
                if refused is not None:
                    raise refused
            ids: dict[str, str] = {}
            for obj, values, obj_refs in order:
                unknown = sorted(set(obj_refs.values()) - set(ids))
                if unknown:
                    raise ConfigError(f"{obj} refers to {', '.join(unknown)}, not created before it")
                ids[obj] = self.system.insert(
                    obj, {**values, **{f: ids[ref] for f, ref in obj_refs.items()}}, by=self.name
                )
            return ids

    # -- reads -------------------------------------------------------------------------------------
    def read_records(self, object_name: str, ids: Sequence[str]) -> Iterator[Record]:
        """The records with these ids (unknown ids skipped; deleted ones are ``deleted``)."""
        self._call("read", object_name)
        for rid in ids:
            found = self.system.get(object_name, rid)
            if found is not None:
                yield _record(object_name, found)

    def scan(self, object_name: str, *, since: str | None = None) -> Iterator[Record]:
        """Every live record (``since``: modified at or after it), oldest change first."""
        self._call("scan", object_name)
        for found in self.system.records(object_name):
            if since is None or parse_stamp(found.modified) >= parse_stamp(since):
                yield _record(object_name, found)

    def read_changes(
        self, object_name: str, watermark: str | None, fields: Sequence[str] | None = None
    ) -> ChangeBatch:
        """Records (deleted ones too) changed after ``watermark``, oldest first, at most
        ``page_size``; the next watermark is the last one's stamp. The system's stamps never repeat,
        so reading from the returned watermark misses nothing and repeats nothing."""
        self._call("changes", object_name)
        rows = self.system.changed_since(object_name, watermark, self.settings.page_size)
        records = [_record(object_name, r, fields) for r in rows]
        return ChangeBatch(records=records, watermark=rows[-1].modified if rows else watermark)

    # -- queries -----------------------------------------------------------------------------------
    def query_view(self, query_text: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A view in the system's small SQL (:mod:`.query`); rows with ``Id``."""
        parsed = query.view(query_text, params)
        self._call("query", parsed.object_name)
        rows = []
        for found in self.system.records(parsed.object_name):
            row = {"Id": found.id, **found.fields}
            if parsed.condition(row):
                rows.append(row if parsed.fields is None else {f: row.get(f) for f in parsed.fields})
        return rows[: parsed.limit] if parsed.limit is not None else rows

    def find_by_field(self, object_name: str, field_name: str, values: Sequence[str]) -> dict[str, list[str]]:
        self._call("query", object_name)
        wanted = {str(v) for v in values}
        found: dict[str, list[str]] = {}
        for record in self.system.records(object_name):
            value = record.fields.get(field_name)
            if value is not None and str(value) in wanted:
                found.setdefault(str(value), []).append(record.id)
        return found

    def matching(self, object_name: str, ids: Sequence[str], condition: str) -> set[str]:
        test = query.condition(condition)
        self._call("query", object_name)
        out = set()
        for rid in ids:
            found = self.system.get(object_name, rid)
            if found is not None and not found.deleted and test({"Id": found.id, **found.fields}):
                out.add(rid)
        return out

    # -- webhooks ----------------------------------------------------------------------------------
    def _secret(self) -> str | None:
        return secret(self.settings.webhook_secret)

    def protection(self) -> Protection:
        if self._secret():
            return Protection("signed", "deliveries are signed with webhook_secret (HMAC-SHA256 of the body)")
        return Protection("secret_url", "deliveries come to a callback URL carrying the connection's secret")

    def authenticate(self, delivery: Delivery, receiver: Receiver) -> SingleUse | None:
        if delivery.path_secret is not None:
            if not hmac.compare_digest(delivery.path_secret.encode(), receiver.url_secret.encode()):
                raise WebhookRefused("the callback URL's secret is not this connection's")
            return None
        secret = self._secret()
        if not secret:
            raise WebhookRefused("no webhook_secret is set: deliveries must come to the URL with a secret")
        try:
            verify(delivery.headers, delivery.body, secret)
        except DeliveryRefused as exc:
            raise WebhookRefused(str(exc)) from exc
        return None  # the signature covers the body: nothing to bind

    def handshake(self, body: bytes) -> Mapping[str, Any] | None:
        return None  # the system checks no URL before delivering

    def parse(self, body: bytes) -> list[SourceEvent]:
        try:
            data = json.loads(body)
            operation = data["operation"]
            if operation not in ("create", "update", "delete"):
                raise ValueError(f"unknown operation {operation!r}")
            fields = data.get("fields") or {}
            if not isinstance(fields, dict):
                raise ValueError("fields is not an object")
            return [
                SourceEvent(
                    object_id=str(data["object"]),
                    record_id=str(data["id"]),
                    delivery_id=str(data["delivery_id"]),
                    operation="delete" if operation == "delete" else "upsert",
                    fields=fields,
                    at=parse_stamp(str(data["modified"])),
                    created=operation == "create",
                    gone=operation == "delete",
                )
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedDelivery(f"not a memory system delivery: {exc}") from exc

    def receiver_url(self, base_url: str, secret: str | None) -> str:
        url = f"{base_url.rstrip('/')}/webhooks/{self.name}"
        return f"{url}/{secret}" if secret else url

    def ensure_subscriptions(self, object_id: str, url: str, *, attempt: str) -> SubscriptionReport:
        self._call("subscriptions", object_id)
        report = SubscriptionReport()
        for sub in self.system.subscriptions(object_id):
            if sub.url == url:
                report.existing.append(_subscription(sub.id, object_id, url))
                return report
        made = self.system.subscribe(object_id, url, self._secret() or "")
        report.created.append(_subscription(made.id, object_id, url))
        return report

    def list_subscriptions(self, object_id: str, *, signed_only: bool = False) -> list[Subscription]:
        self._call("subscriptions", object_id)
        return [
            _subscription(s.id, object_id, s.url)
            for s in self.system.subscriptions(object_id)
            if s.secret or not signed_only
        ]


def _subscription(sid: str, object_id: str, url: str) -> Subscription:
    return Subscription(id=sid, object_id=object_id, event=EVENT, config={"url": url})


def _record(object_name: str, found: StoredRecord, fields: Sequence[str] | None = None) -> Record:
    values = found.fields if fields is None else {f: found.fields.get(f) for f in fields}
    return Record(object_name, found.id, dict(values), modified=found.modified, deleted=found.deleted)


def _idempotency_key(object_name: str, w: Write) -> str:
    text = json.dumps([object_name, w.key, dict(w.fields)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _invalid(w: Write) -> str | None:
    if w.operation not in ("create", "update", "upsert", "delete"):
        return f"unknown operation {w.operation!r}"
    if w.operation in ("update", "delete") and not w.target_id:
        return f"a {w.operation} needs the record's id (target_id)"
    if w.operation == "upsert" and (not w.external_id_field or w.external_id in (None, "")):
        return "an upsert needs external_id_field and external_id"
    return None
