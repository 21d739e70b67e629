"""``POST /api/v1/flows/{flow}/records``: an application hands over records.

The body is one record, ``{"records": [...]}`` or a JSON array of records::

    {"key": "ad-17", "operation": "upsert", "fields": {"contract_id": "800...", "quantity": 3},
     "delivery_id": "optional sender id for de-duplication"}

The answer is 202 once every record is durably queued, and nothing is stored unless all of them
are acceptable: a bad record, a field the application does not own, a value its transform refuses
or the target field cannot hold (too long, too many digits — see :mod:`crmsync.engine.limits`),
or a record whose parent is locked refuses the whole request with a 4xx naming the problem. While
the target cannot be asked about locks (it is down or slow), records are accepted and the worker
asks before writing.

No check runs on the event loop, and every check is bounded in time for any input. With
``web.group_commit`` (the default) the records of concurrent requests are committed together
(:mod:`crmsync.web.commit`), each request still answered only after its own records committed: the
event loop reads the body and knows the token (:class:`~crmsync.web.auth.TokenCache`; an unknown
one is verified in a thread), the group committer's thread parses and checks each request just
before the group's transaction (a body over :data:`INLINE_CHECK_BYTES` in a thread of its own),
and a lock rule whose answer is not cached asks the target from the event loop, bounded in time,
before the records join a group. With ``web.group_commit: false`` each request is authenticated,
checked and queued in a worker thread and a transaction of its own (:meth:`Ingestor.handle`).
Past ``web.ingest_backlog`` requests in progress the API answers 503 with ``Retry-After``
(backpressure) rather than letting latency grow.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import anyio
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)
from starlette.requests import ClientDisconnect, Request

from crmsync.engine.flows import FlowRuntime
from crmsync.engine.limits import DescribedLimits, generic_problem
from crmsync.engine.queue import EnqueueResult, NewChange
from crmsync.engine.runtime import Runtime
from crmsync.errors import CrmsyncError, FixTheData
from crmsync.web.auth import TokenCache, authenticate
from crmsync.web.commit import GroupCommitter
from crmsync.web.errors import ApiError

log = logging.getLogger(__name__)

#: seconds a client refused for backpressure is asked to wait (``Retry-After``)
BUSY_RETRY_AFTER = 1
#: requests checked at once in threads of their own (unknown tokens, large bodies, per-request path)
CHECK_THREADS = 8
#: group commits under way at once on PostgreSQL or MySQL (on SQLite, one)
SERVER_STORE_COMMIT_THREADS = 2
#: bodies up to this size are checked by the group committer just before their commit; larger ones in
#: a thread of their own, so that a large batch does not hold up the small requests' commits
INLINE_CHECK_BYTES = 64 * 1024

Scalar = StrictStr | StrictBool | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)] | None
Key = (
    Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=r"^[^\x00]+$")]
    | Annotated[StrictInt, Field(ge=-(2**63), lt=2**63)]
)


class IngestRecord(BaseModel):
    """One record an application hands over."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"key": "ad-17", "fields": {"contract_id": "800…", "quantity": 3}}]},
    )

    key: Key = Field(description="The record's key in the application (the flow's `key` field).")
    operation: Literal["upsert", "delete"] = Field(
        "upsert", description="upsert: create or update the target record; delete: remove it."
    )
    fields: dict[Annotated[str, Field(min_length=1, max_length=255)], Scalar] = Field(
        default_factory=dict,
        description="Source field → value; only fields the flow lets the application write.",
    )
    delivery_id: Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=r"^[^\x00]+$")] | None = (
        Field(None, description="The sender's id of this delivery: sent again, it is counted a duplicate.")
    )


class IngestBatch(BaseModel):
    """Several records in one request: all are queued, or none."""

    model_config = ConfigDict(extra="forbid")

    records: list[IngestRecord] = Field(description="The records, in the order they are queued.")


class LockPending(Exception):
    """The records passed every check but the lock rule, whose answer the target has to give."""

    def __init__(self, flow: FlowRuntime, changes: list[NewChange], parents: dict[str, list[str]]) -> None:
        super().__init__(f"flow {flow.name}: lock rule not answered yet")
        self.flow = flow
        self.changes = changes
        self.parents = parents


class Accepted(BaseModel):
    """The answer once every record is durably queued."""

    accepted: int = Field(description="Records queued by this request.")
    duplicates: int = Field(description="Records whose delivery_id was seen before (not queued again).")


@runtime_checkable
class Describes(Protocol):
    """A connector that can describe an object's fields (Salesforce)."""

    def describe(self, object_name: str) -> Mapping[str, Any]: ...


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (never read whole)."""
    hint = "(web.max_body_bytes); send fewer records per request"
    declared = request.headers.get("content-length", "")
    # at most 18 digits before int(): converting a 5,000-digit header is neither free nor allowed
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise ApiError(
            413,
            "body_too_large",
            f"body of {declared[:20]} bytes is over the limit of {limit:,} bytes {hint}",
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"body is over the limit of {limit:,} bytes {hint}")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ApiError(400, "incomplete_body", "the client went away before sending the whole body") from exc
    return b"".join(chunks)


def parse_records(body: bytes, max_batch: int) -> list[IngestRecord]:
    if not body.strip():
        raise ApiError(
            400, "invalid_json", "empty body: send a JSON record, a list of records or {'records': [...]}"
        )
    try:
        data = json.loads(body)
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot be stored
    except (json.JSONDecodeError, UnicodeError) as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON text: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from exc
    try:
        if isinstance(data, list):
            records = IngestBatch(records=data).records
        elif isinstance(data, dict) and "records" in data:
            records = IngestBatch.model_validate(data).records
        elif isinstance(data, dict):
            records = [IngestRecord.model_validate(data)]
        else:
            raise ApiError(422, "invalid_record", "body must be a JSON object or array of objects")
    except ValidationError as exc:
        details = [
            {"loc": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_url=False)
        ]
        raise ApiError(422, "invalid_record", "records do not have the expected shape", details) from exc
    if not records:
        raise ApiError(422, "invalid_record", "no records in the body")
    if len(records) > max_batch:
        raise ApiError(413, "batch_too_large", f"{len(records)} records in one request; at most {max_batch}")
    return records


class Ingestor:
    """The blocking part of ingest: checks, lock rules, enqueue (runs in a worker thread)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lock-check")
        self.limits = DescribedLimits(self._describe, self._pool)
        web = runtime.config.web
        self.backlog = web.ingest_backlog
        self.committer = (
            GroupCommitter(
                runtime.queue,
                window=web.group_commit_window_seconds,
                max_records=5 * web.max_batch,
                # SQLite has one writer at a time; a server store overlaps one group's round trips
                # with the next group's
                threads=1 if runtime.store.dialect == "sqlite" else SERVER_STORE_COMMIT_THREADS,
            )
            if web.group_commit
            else None
        )
        self.tokens = TokenCache(runtime.store, web.token_cache_seconds)
        self._app_flows: dict[str, FlowRuntime] = {}
        self._in_progress = 0  # requests between arrival and answer (changed on the event loop only)
        #: threads checking requests at once (each may read the store; more would only queue on it)
        self._checkers = anyio.CapacityLimiter(CHECK_THREADS)

    def _describe(self, connection: str, object_name: str) -> Mapping[str, Any] | None:
        connector = self.rt.connector(connection)
        return connector.describe(object_name) if isinstance(connector, Describes) else None

    def flow(self, name: str) -> FlowRuntime:
        flow = self.rt.flows.get(name)
        if flow is not None and self._app_flows.get(name) is flow:
            return flow  # known to take records from applications (a reloaded flow is asked again)
        if flow is None or not self.rt.is_app_source(flow):
            valid = ", ".join(sorted(n for n, f in self.rt.flows.items() if self.rt.is_app_source(f)))
            raise ApiError(
                404, "unknown_flow", f"no flow {name!r} takes records from applications; valid: {valid}"
            )
        self._app_flows[name] = flow
        return flow

    def changes(
        self, flow: FlowRuntime, records: list[IngestRecord], *, ask_target: bool = True
    ) -> list[NewChange]:
        """The changes to queue for ``records``, once every check passed (else an :class:`ApiError`).

        ``ask_target``: a lock rule whose answer is not cached asks the target (bounded in time);
        else :class:`LockPending` is raised for the caller to ask."""
        problems: list[dict[str, str]] = []
        for i, record in enumerate(records):
            for problem in flow.refuse_fields(record.fields):
                problems.append({"loc": f"records.{i}.fields", "message": problem})
            given_key = record.fields.get(flow.key_field)
            if given_key is not None and str(given_key) != str(record.key):
                problems.append(
                    {
                        "loc": f"records.{i}.fields.{flow.key_field}",
                        "message": "differs from the record's key",
                    }
                )
        if problems:
            self.rt.metrics.refused(flow.name, "fields")
            raise ApiError(
                422, "field_not_writable", "records contain fields the application may not write", problems
            )
        problems = self.value_problems(flow, records)
        if problems:
            self.rt.metrics.refused(flow.name, "values")
            raise ApiError(422, "invalid_value", "records contain values the target cannot hold", problems)
        changes = [
            NewChange(
                source=flow.source,
                flow=flow.name,
                record_key=str(r.key),
                operation=r.operation,
                fields=dict(r.fields),
                delivery_id=r.delivery_id,
            )
            for r in records
        ]
        self._check_locks(flow, records, None if ask_target else changes)
        return changes

    def accept(self, flow: FlowRuntime, records: list[IngestRecord]) -> dict[str, Any]:
        """Check ``records`` and queue them in a transaction of their own."""
        changes = self.changes(flow, records)
        try:
            result = self.rt.queue.enqueue(changes)
        except CrmsyncError as exc:
            raise ApiError(503, "store_unavailable", f"could not queue the records: {exc}") from exc
        return self._answer(flow, result)

    def _answer(self, flow: FlowRuntime, result: EnqueueResult) -> dict[str, Any]:
        self.rt.metrics.received(flow.name, result.accepted, result.duplicates)
        return {"accepted": result.accepted, "duplicates": result.duplicates}

    def value_problems(self, flow: FlowRuntime, records: list[IngestRecord]) -> list[dict[str, str]]:
        """Each value its transform refuses or the target field cannot hold, naming the field.

        The same transforms the worker applies, then the target field's limits: the describe's
        where it is known (fetched in the background, see :class:`DescribedLimits`), else what any
        target can hold. Upserts only: a delete carries no values to write.
        """
        limits = self.limits.get(flow.target, flow.object_name)
        problems: list[dict[str, str]] = []
        for i, record in enumerate(records):
            if record.operation != "upsert":
                continue
            given = {flow.key_field: record.key, **record.fields}
            for rule in flow.rules:
                if not (rule.to_target and rule.owned_by_source and rule.source in given):
                    continue
                loc = (
                    f"records.{i}.key"
                    if rule.source == flow.key_field
                    else f"records.{i}.fields.{rule.source}"
                )
                try:
                    value = flow.to_target(str(record.key), record.fields, [rule]).get(rule.target)
                except FixTheData as exc:
                    problems.append({"loc": loc, "message": exc.message})
                    continue
                limit = limits.get(rule.target)
                problem = limit.problem(value) if limit is not None else generic_problem(value)
                if problem is not None:
                    problems.append(
                        {"loc": loc, "message": f"field {rule.source!r} → {rule.target}: {problem}"}
                    )
        return problems

    def _check_locks(
        self, flow: FlowRuntime, records: list[IngestRecord], pending: list[NewChange] | None = None
    ) -> None:
        """Refuse the records (409) if a parent is locked. Without a cached answer the target is
        asked here, bounded in time, unless ``pending`` is given: then :class:`LockPending` is
        raised with it, for the caller to ask."""
        if flow.lock is None:
            return
        parents: dict[str, list[str]] = {}
        for r in records:
            parent = flow.lock_parent(r.fields)
            if parent is None:
                parent = flow.lock_parent(self.rt.ledger.last_synced(flow, str(r.key)))
            if parent is not None:
                parents.setdefault(parent, []).append(str(r.key))
        if not parents:
            return
        locked = self.rt.locks.cached(flow, parents)
        if locked is None and pending is not None:
            raise LockPending(flow, pending, parents)
        if locked is None:  # something to ask the target: bounded, so a slow target never slows ingest
            future = self._pool.submit(self._ask_target, flow, list(parents))
            try:
                locked = future.result(timeout=flow.lock.check_timeout_seconds)
            except (FutureTimeout, CrmsyncError) as exc:
                # the target cannot answer now: accept, the worker asks again before writing
                log.info("flow %s: lock check deferred to the worker (%s)", flow.name, exc or "timeout")
                return
        self._refuse_locked(flow, parents, locked)

    def _ask_target(self, flow: FlowRuntime, parents: list[str]) -> set[str]:
        """Which of ``parents`` the target says are locked now (blocking: in the lock-check pool)."""
        return self.rt.locks.locked(flow, self.rt.queryable(flow.target), parents)

    async def _ask_locks(self, pending: LockPending) -> None:
        """On the event loop: ask the target about the pending records' parents, bounded in time."""
        flow = pending.flow
        assert flow.lock is not None
        future = asyncio.wrap_future(self._pool.submit(self._ask_target, flow, list(pending.parents)))
        try:
            # shielded: an answer that comes late still fills the cache for the next requests
            locked = await asyncio.wait_for(asyncio.shield(future), flow.lock.check_timeout_seconds)
        except (TimeoutError, CrmsyncError) as exc:
            # the target cannot answer now: accept, the worker asks again before writing
            log.info("flow %s: lock check deferred to the worker (%s)", flow.name, exc or "timeout")
            return
        self._refuse_locked(flow, pending.parents, locked)

    def _refuse_locked(self, flow: FlowRuntime, parents: dict[str, list[str]], locked: set[str]) -> None:
        assert flow.lock is not None
        if locked:
            keys = sorted(k for p in locked for k in parents[p])
            parent = sorted(locked)[0]
            self.rt.metrics.refused(flow.name, "locked")
            raise ApiError(
                409,
                "locked",
                flow.lock_message({flow.lock.key: parent, "key": keys[0]}),
                {"locked_parents": sorted(locked), "records": keys},
            )

    async def __call__(self, request: Request, token: str) -> dict[str, Any]:
        if self._in_progress >= self.backlog:
            flow_name = request.path_params["flow"]
            self.rt.metrics.refused(flow_name if flow_name in self.rt.flows else "", "busy")
            raise ApiError(
                503,
                "busy",
                f"{self._in_progress} ingest requests are in progress (web.ingest_backlog); "
                f"send again in {BUSY_RETRY_AFTER} s with the same delivery ids",
                retry_after=BUSY_RETRY_AFTER,
            )
        self._in_progress += 1
        try:
            body = await read_body(request, self.rt.max_body_bytes)
            flow_name = request.path_params["flow"]
            if self.committer is None:
                return await anyio.to_thread.run_sync(self.handle, token, flow_name, body)
            if self.tokens.cached(token) is None:  # else verified moments ago: no thread, no store read
                await anyio.to_thread.run_sync(self.tokens.authenticate, token, limiter=self._checkers)
            flow = self.flow(flow_name)
            committer = self.committer
            if len(body) > INLINE_CHECK_BYTES:
                checked = await anyio.to_thread.run_sync(self.check, flow, body, limiter=self._checkers)
                answer = committer.check_and_commit(lambda: checked)
            else:  # checked by the committer's thread just before the group's transaction
                answer = committer.check_and_commit(lambda: self.check(flow, body, ask_target=False))
            try:
                try:
                    result = await answer
                except LockPending as pending:
                    await self._ask_locks(pending)
                    changes = pending.changes
                    result = await committer.check_and_commit(lambda: changes)
            except CrmsyncError as exc:
                raise ApiError(503, "store_unavailable", f"could not queue the records: {exc}") from exc
            return self._answer(flow, result)
        finally:
            self._in_progress -= 1

    def check(self, flow: FlowRuntime, body: bytes, *, ask_target: bool = True) -> list[NewChange]:
        """Parse and check a request's records (blocking: in a thread); its changes to queue."""
        return self.changes(flow, parse_records(body, self.rt.max_batch), ask_target=ask_target)

    def handle(self, token: str, flow_name: str, body: bytes) -> dict[str, Any]:
        """Everything blocking, in one worker thread: authenticate first, then check and queue."""
        authenticate(self.rt.store, token)
        flow = self.flow(flow_name)
        return self.accept(flow, parse_records(body, self.rt.max_batch))

    def close(self) -> None:
        if self.committer is not None:
            self.committer.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
