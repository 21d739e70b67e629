"""Bulk API 2.0: ingest and query jobs over CSV.

::

    ingest:  Open --PUT batches, PATCH UploadComplete--> UploadComplete --first GET--> JobComplete
               \\--PATCH Aborted--> Aborted                                 (rows may still fail)
    query:   UploadComplete --first GET--> JobComplete | Failed

A job is processed the first time it is polled after upload (the emulator's InProgress lasts no
time). Ingest results: ``successfulResults`` (``sf__Id,sf__Created,…``), ``failedResults``
(``sf__Id,sf__Error,…``) and ``unprocessedrecords`` (rows of an aborted job). Query results page
with ``maxRecords`` and ``locator``; the ``Sforce-Locator`` header is ``null`` on the last page.
CSV input: header of API names, ``#N/A`` clears a field, ``Rel.ExtField`` columns look parents
up by external id, delete jobs take ``Id`` only.
"""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import dataclass, field
from typing import Any

from crmsync.sandbox.salesforce.api import ApiError, Call, Reply, Router
from crmsync.sandbox.salesforce.ids import normalize
from crmsync.sandbox.salesforce.org import Org
from crmsync.sandbox.salesforce.query import run
from crmsync.sandbox.salesforce.schema import ObjectDef
from crmsync.sandbox.salesforce.store import AmbiguousMatch, DmlError

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")
MAX_UPLOAD_BYTES = 150 * 1024 * 1024


@dataclass
class Job:
    id: str
    kind: str  # ingest | query
    operation: str
    object: str
    created: str
    api_version: str
    column_delimiter: str = "COMMA"
    line_ending: str = "LF"
    external_id: str | None = None
    query: str | None = None
    state: str = "Open"
    modstamp: str = ""
    data: list[str] = field(default_factory=list)
    successful: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # query results
    processed: int = 0
    error_message: str | None = None

    def info(self, user_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": user_id,
            "createdDate": self.created,
            "systemModstamp": self.modstamp or self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "jobType": "V2Ingest" if self.kind == "ingest" else "V2Query",
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }
        if self.kind == "ingest":
            out["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
            if self.external_id:
                out["externalIdFieldName"] = self.external_id
            out["numberRecordsProcessed"] = self.processed
            out["numberRecordsFailed"] = len(self.failed)
        else:
            out["numberRecordsProcessed"] = self.processed
        out.update(retries=0, totalProcessingTime=0, apiActiveProcessingTime=0, apexProcessingTime=0)
        if self.error_message:
            out["errorMessage"] = self.error_message
        return out


def _bulk_error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, message)


def _write_csv(
    header: list[str], rows: list[list[str]], delimiter: str = ",", line_ending: str = "\n"
) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=line_ending, quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict) and "attributes" in value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Bulk:
    def __init__(self, org: Org) -> None:
        self.org = org
        self.jobs: dict[str, Job] = {}

    def clear(self) -> None:
        self.jobs.clear()

    def job(self, job_id: str, kind: str) -> Job:
        job = self.jobs.get(normalize(job_id) or job_id)
        if job is None or job.kind != kind:
            raise _bulk_error(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    # -- ingest ----------------------------------------------------------------------------------
    def create_ingest(self, call: Call) -> Reply:
        body = call.json_object()
        operation = body.get("operation")
        if operation not in INGEST_OPERATIONS:
            raise _bulk_error(400, "INVALIDJOB", f"Invalid operation: {operation}")
        obj = self.org.object(str(body.get("object", "")))
        if obj is None:
            raise _bulk_error(400, "INVALIDJOB", f"Unable to find object: {body.get('object')}")
        ext = body.get("externalIdFieldName")
        if operation == "upsert":
            if not ext:
                raise _bulk_error(400, "INVALIDJOB", "External ID was blank for Upsert operation")
            f = obj.field(str(ext))
            if f is None or not (f.external_id or f.type == "id"):
                raise _bulk_error(
                    400, "INVALIDJOB", f"Field name provided, {ext} is not an External ID or indexed field"
                )
            ext = f.name
        delimiter = body.get("columnDelimiter", "COMMA")
        if delimiter not in DELIMITERS:
            raise _bulk_error(400, "INVALIDJOB", f"Invalid column delimiter: {delimiter}")
        line_ending = body.get("lineEnding", "LF")
        if line_ending not in ("LF", "CRLF"):
            raise _bulk_error(400, "INVALIDJOB", f"Invalid line ending: {line_ending}")
        job = Job(
            id=self.org.store.ids.next("750"),
            kind="ingest",
            operation=operation,
            object=obj.name,
            created=self.org.store.now(),
            api_version=call.version,
            column_delimiter=delimiter,
            line_ending=line_ending,
            external_id=ext if operation == "upsert" else None,
        )
        self.jobs[job.id] = job
        return Reply(200, job.info(self.org.app.user_id))

    def upload(self, call: Call, job_id: str) -> Reply:
        job = self.job(job_id, "ingest")
        if job.state != "Open":
            raise _bulk_error(409, "INVALIDJOBSTATE", f"Job {job.id} is not open for uploads: {job.state}")
        if len(call.body) > MAX_UPLOAD_BYTES:
            raise _bulk_error(400, "INVALIDBATCH", "Data exceeds the 150 MB upload limit")
        job.data.append(call.body.decode("utf-8-sig"))
        return Reply(201)

    def patch_ingest(self, call: Call, job_id: str) -> Reply:
        job = self.job(job_id, "ingest")
        state = call.json_object().get("state")
        if state == "UploadComplete" and job.state == "Open":
            job.state = "UploadComplete"
        elif state == "Aborted" and job.state in ("Open", "UploadComplete", "InProgress"):
            job.state = "Aborted"
            job.unprocessed = self._parse(job)[1] if job.data else []
            job.header = self._parse(job)[0] if job.data else []
        else:
            raise _bulk_error(
                400, "INVALIDJOBSTATE", f"Cannot change the state of job {job.id} from {job.state} to {state}"
            )
        job.modstamp = self.org.store.now()
        return Reply(200, job.info(self.org.app.user_id))

    def get_ingest(self, call: Call, job_id: str) -> Reply:
        job = self.job(job_id, "ingest")
        if job.state == "UploadComplete":
            self._process(job)
        return Reply(200, job.info(self.org.app.user_id))

    def delete_job(self, call: Call, job_id: str, kind: str) -> Reply:
        job = self.job(job_id, kind)
        if job.state in ("Open", "UploadComplete", "InProgress"):
            raise _bulk_error(400, "INVALIDJOBSTATE", "Cannot delete a job that is not complete or aborted")
        del self.jobs[job.id]
        return Reply(204)

    def results(self, call: Call, job_id: str, which: str) -> Reply:
        job = self.job(job_id, "ingest")
        if which == "successfulResults":
            header, rows = ["sf__Id", "sf__Created", *job.header], job.successful
        elif which == "failedResults":
            header, rows = ["sf__Id", "sf__Error", *job.header], job.failed
        else:
            header, rows = job.header, job.unprocessed
        delimiter = DELIMITERS[job.column_delimiter]
        ending = "\r\n" if job.line_ending == "CRLF" else "\n"
        return Reply(
            200, _write_csv(header, rows, delimiter, ending) if header else "", media_type="text/csv"
        )

    def _parse(self, job: Job) -> tuple[list[str], list[list[str]]]:
        delimiter = DELIMITERS[job.column_delimiter]
        header: list[str] = []
        rows: list[list[str]] = []
        for chunk in job.data:
            reader = csv.reader(io.StringIO(chunk, newline=""), delimiter=delimiter)
            chunk_header = next(reader, None)
            if chunk_header is None:
                continue
            if not header:
                header = chunk_header
            rows.extend(r for r in reader if r)
        return header, rows

    def _process(self, job: Job) -> None:
        obj = self.org.object(job.object)
        header, rows = self._parse(job)
        job.header = header
        job.data = []
        if obj is None:
            job.state, job.error_message = "Failed", f"Unable to find object: {job.object}"
            return
        if job.operation in ("delete", "hardDelete") and [h.lower() for h in header] != ["id"]:
            job.state = "Failed"
            job.error_message = "InvalidBatch : The 'delete' batch must contain only 'Id'"
            job.unprocessed = rows
            return
        for row in rows:
            values = dict(zip(header, row, strict=False))
            try:
                rid, created = self._apply(job, obj, values)
                job.successful.append([rid, "true" if created else "false", *row])
            except DmlError as exc:
                message = "|".join(f"{e.code}:{e.message}:{','.join(e.fields or [])} --" for e in exc.errors)
                job.failed.append([values.get("Id", "") or "", message, *row])
            except ApiError as exc:
                e = exc.items[0]
                job.failed.append([values.get("Id", "") or "", f"{e.code}:{e.message}:--", *row])
            job.processed += 1
        job.state = "JobComplete"
        job.modstamp = self.org.store.now()

    def _apply(self, job: Job, obj: ObjectDef, values: dict[str, str]) -> tuple[str, bool]:
        store = self.org.store
        values = self._lookups(obj, values)
        op = job.operation
        if op == "insert":
            return store.create(obj, values, csv=True), True
        if op == "upsert":
            assert job.external_id is not None
            key = next((v for k, v in values.items() if k.lower() == job.external_id.lower()), "")
            try:
                return store.upsert(obj, job.external_id, key, values, csv=True)
            except AmbiguousMatch as exc:
                raise DmlError.one(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{job.external_id}: more than one record found for external id field: {exc.ids}",
                    [job.external_id],
                ) from None
        raw = next((v for k, v in values.items() if k.lower() == "id"), "")
        rid = normalize(raw)
        if rid is None or rid[:3] != obj.key_prefix:
            raise DmlError.one("MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {raw}", ["Id"])
        if op == "update":
            store.update(obj, rid, {k: v for k, v in values.items() if k.lower() != "id"}, csv=True)
        else:
            store.delete(obj, rid, hard=op == "hardDelete")
        return rid, False

    def _lookups(self, obj: ObjectDef, values: dict[str, str]) -> dict[str, Any]:
        """Turn ``Account.Ext__c`` columns into the reference field's id."""
        out: dict[str, Any] = {}
        for key, value in values.items():
            rel, dot, ext = key.partition(".")
            if not dot:
                out[key] = value
                continue
            f = obj.relationships.get(rel.lower())
            if f is None:
                raise DmlError.one(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", []
                )
            if value in ("", "#N/A"):
                out[f.name] = value
                continue
            target = self.org.object(f.reference_to[0])
            assert target is not None
            ext_field = self.org.store.ext_field(target, ext)
            matches = self.org.store.match_external(target, ext_field, value)
            if len(matches) != 1:
                raise DmlError.one(
                    "INVALID_FIELD",
                    f"Foreign key external ID: {value} not found for field {ext_field.name} "
                    f"in entity {target.name}",
                    [f.name],
                )
            out[f.name] = matches[0]
        return out

    # -- query -------------------------------------------------------------------------------------
    def create_query(self, call: Call) -> Reply:
        body = call.json_object()
        operation = body.get("operation")
        if operation not in QUERY_OPERATIONS:
            raise _bulk_error(400, "INVALIDJOB", f"Invalid operation: {operation}")
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise _bulk_error(400, "INVALIDJOB", "The query is required")
        from crmsync.sandbox.salesforce import soql

        try:
            parsed = soql.parse(text)
        except soql.SoqlError as exc:
            raise ApiError(400, exc.error_code, exc.message) from None
        delimiter = body.get("columnDelimiter", "COMMA")
        if delimiter not in DELIMITERS:
            raise _bulk_error(400, "INVALIDJOB", f"Invalid column delimiter: {delimiter}")
        job = Job(
            id=self.org.store.ids.next("750"),
            kind="query",
            operation=operation,
            object=parsed.object_name,
            created=self.org.store.now(),
            api_version=call.version,
            column_delimiter=delimiter,
            line_ending=body.get("lineEnding", "LF"),
            query=text,
            state="UploadComplete",
        )
        self.jobs[job.id] = job
        return Reply(200, job.info(self.org.app.user_id))

    def get_query(self, call: Call, job_id: str) -> Reply:
        job = self.job(job_id, "query")
        if job.state == "UploadComplete":
            assert job.query is not None
            try:
                result = run(
                    self.org, job.query, job.api_version, include_deleted=job.operation == "queryAll"
                )
            except ApiError as exc:
                job.state, job.error_message = "Failed", exc.items[0].message
            else:
                flat = [_flatten(r) for r in result.records]
                header: list[str] = []
                for row in flat:
                    for key in row:
                        if key not in header:
                            header.append(key)
                job.header = header
                job.rows = [[_cell(row.get(k)) for k in header] for row in flat]
                job.processed = len(job.rows)
                job.state = "JobComplete"
            job.modstamp = self.org.store.now()
        return Reply(200, job.info(self.org.app.user_id))

    def patch_query(self, call: Call, job_id: str) -> Reply:
        job = self.job(job_id, "query")
        if call.json_object().get("state") != "Aborted" or job.state not in ("UploadComplete", "InProgress"):
            raise _bulk_error(400, "INVALIDJOBSTATE", f"Cannot change the state of job {job.id}")
        job.state = "Aborted"
        return Reply(200, job.info(self.org.app.user_id))

    def query_results(self, call: Call, job_id: str) -> Reply:
        job = self.job(job_id, "query")
        if call.version != job.api_version:
            raise _bulk_error(
                409, "INVALIDJOB", f"Job {job.id} was created with API version {job.api_version}"
            )
        if job.state != "JobComplete":
            raise _bulk_error(412, "JOB_NOT_COMPLETE", f"Job {job.id} is not complete: {job.state}")
        start = 0
        locator = call.params.get("locator")
        if locator:
            try:
                start = int(base64.b64decode(locator.encode()).decode())
            except ValueError:
                raise _bulk_error(400, "INVALIDLOCATOR", f"Invalid locator: {locator}") from None
        try:
            max_records = int(call.params.get("maxRecords", "0")) or len(job.rows) or 1
        except ValueError:
            raise _bulk_error(400, "INVALIDPARAMETER", "maxRecords must be a number") from None
        end = min(start + max_records, len(job.rows))
        text = (
            _write_csv(
                job.header,
                job.rows[start:end],
                DELIMITERS[job.column_delimiter],
                "\r\n" if job.line_ending == "CRLF" else "\n",
            )
            if job.header
            else ""
        )
        next_locator = base64.b64encode(str(end).encode()).decode() if end < len(job.rows) else "null"
        return Reply(
            200,
            text,
            headers={"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(end - start)},
            media_type="text/csv",
        )


def register(router: Router, bulk: Bulk) -> None:
    router.add("POST", "/jobs/ingest", lambda call: bulk.create_ingest(call))
    router.add("GET", "/jobs/ingest/{job_id}", bulk.get_ingest)
    router.add("PATCH", "/jobs/ingest/{job_id}", bulk.patch_ingest)
    router.add(
        "DELETE", "/jobs/ingest/{job_id}", lambda call, job_id: bulk.delete_job(call, job_id, "ingest")
    )
    router.add("PUT", "/jobs/ingest/{job_id}/batches", bulk.upload)
    for which in ("successfulResults", "failedResults", "unprocessedrecords", "unprocessedRecords"):
        router.add(
            "GET",
            f"/jobs/ingest/{{job_id}}/{which}",
            lambda call, job_id, which=which: bulk.results(call, job_id, which),
        )
    router.add("POST", "/jobs/query", lambda call: bulk.create_query(call))
    router.add("GET", "/jobs/query/{job_id}", bulk.get_query)
    router.add("PATCH", "/jobs/query/{job_id}", bulk.patch_query)
    router.add("DELETE", "/jobs/query/{job_id}", lambda call, job_id: bulk.delete_job(call, job_id, "query"))
    router.add("GET", "/jobs/query/{job_id}/results", bulk.query_results)
