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

Everything past reading the body runs in a worker thread (:meth:`Ingestor.handle`), never on the
event loop; every check is bounded in time for any input. With ``web.group_commit`` (the default)
the records of concurrent requests are committed together (:mod:`crmsync.web.commit`), each request
still answered only after its own records committed. Past ``web.ingest_backlog`` requests in
progress the API answers 503 with ``Retry-After`` (backpressure) rather than letting latency grow.
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
from crmsync.web.auth import authenticate
from crmsync.web.commit import GroupCommitter
from crmsync.web.errors import ApiError

log = logging.getLogger(__name__)

#: seconds a client refused for backpressure is asked to wait (``Retry-After``)
BUSY_RETRY_AFTER = 1
#: requests checked at once (authentication, values, lock rule), each in a thread of its own
CHECK_THREADS = 8

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
                runtime.queue, window=web.group_commit_window_seconds, max_records=5 * web.max_batch
            )
            if web.group_commit
            else None
        )
        self._in_progress = 0  # requests between arrival and answer (changed on the event loop only)
        #: threads checking requests at once (each may read the store; more would only queue on it)
        self._checkers = anyio.CapacityLimiter(CHECK_THREADS)

    def _describe(self, connection: str, object_name: str) -> Mapping[str, Any] | None:
        connector = self.rt.connector(connection)
        return connector.describe(object_name) if isinstance(connector, Describes) else None

    def flow(self, name: str) -> FlowRuntime:
        flow = self.rt.flows.get(name)
        if flow is None or not self.rt.is_app_source(flow):
            valid = ", ".join(sorted(n for n, f in self.rt.flows.items() if self.rt.is_app_source(f)))
            raise ApiError(
                404, "unknown_flow", f"no flow {name!r} takes records from applications; valid: {valid}"
            )
        return flow

    def changes(self, flow: FlowRuntime, records: list[IngestRecord]) -> list[NewChange]:
        """The changes to queue for ``records``, once every check passed (else an :class:`ApiError`)."""
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
        self._check_locks(flow, records)
        return [
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

    def _check_locks(self, flow: FlowRuntime, records: list[IngestRecord]) -> None:
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
        if locked is None:  # something to ask the target: bounded, so a slow target never slows ingest
            target = self.rt.queryable(flow.target)
            future = self._pool.submit(self.rt.locks.locked, flow, target, list(parents))
            try:
                locked = future.result(timeout=flow.lock.check_timeout_seconds)
            except (FutureTimeout, CrmsyncError) as exc:
                # the target cannot answer now: accept, the worker asks again before writing
                log.info("flow %s: lock check deferred to the worker (%s)", flow.name, exc or "timeout")
                return
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
            flow, changes = await anyio.to_thread.run_sync(
                self.check, token, flow_name, body, limiter=self._checkers
            )
            try:
                result = await asyncio.wrap_future(self.committer.submit(changes))
            except CrmsyncError as exc:
                raise ApiError(503, "store_unavailable", f"could not queue the records: {exc}") from exc
            return self._answer(flow, result)
        finally:
            self._in_progress -= 1

    def check(self, token: str, flow_name: str, body: bytes) -> tuple[FlowRuntime, list[NewChange]]:
        """Everything blocking before the commit, in one worker thread: authenticate, then check."""
        authenticate(self.rt.store, token)
        flow = self.flow(flow_name)
        return flow, self.changes(flow, parse_records(body, self.rt.max_batch))

    def handle(self, token: str, flow_name: str, body: bytes) -> dict[str, Any]:
        """Everything blocking, in one worker thread: authenticate first, then check and queue."""
        authenticate(self.rt.store, token)
        flow = self.flow(flow_name)
        return self.accept(flow, parse_records(body, self.rt.max_batch))

    def close(self) -> None:
        if self.committer is not None:
            self.committer.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
