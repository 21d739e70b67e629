"""sObject Collections (``/composite/sobjects``) and Composite (``/composite``).

Collections take up to 200 records and answer HTTP 200 with one SaveResult per record, in input
order (errors keyed ``statusCode``); with ``allOrNone`` one bad record rolls the whole call back
and the good records answer ``ALL_OR_NONE_OPERATION_ROLLED_BACK``. Retrieve answers ``null`` for
unknown ids.

Composite runs up to 25 subrequests through the same dispatcher as HTTP calls (counted as one
API call), substituting ``@{ref.field}`` / ``@{ref.records[0].Id}`` from earlier bodies. With
``allOrNone`` the first failure rolls everything back and every other subrequest answers 400
``PROCESSING_HALTED``; without it only subrequests that refer to a failed one are skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from crmsync.sandbox.salesforce.api import ApiError, Call, Reply, Router
from crmsync.sandbox.salesforce.ids import normalize
from crmsync.sandbox.salesforce.org import Org
from crmsync.sandbox.salesforce.rest import field_list, record_url, require_object, shape
from crmsync.sandbox.salesforce.schema import ObjectDef
from crmsync.sandbox.salesforce.store import AmbiguousMatch, DmlError
from crmsync.sandbox.salesforce.values import ErrorItem

MAX_COLLECTION = 200
MAX_RETRIEVE = 2000
MAX_SUBREQUESTS = 25
ROLLED_BACK = ErrorItem(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
    [],
)
_REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_PATH_PART_RE = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]")
_URL_PREFIX_RE = re.compile(r"^/services/data/v(\d+\.\d)(/.*)?$")


class _RollBack(Exception):
    """Raised inside a store transaction to undo an allOrNone call."""


def _save_result(rid: str | None, errors: list[ErrorItem], created: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rid is not None:
        out["id"] = rid
    out["success"] = not errors
    out["errors"] = [e.save_result() for e in errors]
    if created is not None:
        out["created"] = created
    return out


def register(router: Router, org: Org, dispatch: Callable[[Call], Reply]) -> None:
    store = org.store

    def records_of(call: Call) -> tuple[list[Any], bool]:
        body = call.json_object()
        records = body.get("records")
        if not isinstance(records, list):
            raise ApiError(400, "JSON_PARSER_ERROR", "records is required")
        if len(records) > MAX_COLLECTION:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call",
            )
        return records, bool(body.get("allOrNone", False))

    def run_all(
        items: list[Any], all_or_none: bool, op: Callable[[Any], tuple[str | None, bool | None]]
    ) -> list[dict[str, Any]]:
        """Apply ``op`` to each item; SaveResults in input order, rolled back together if asked."""
        outcomes: list[tuple[str | None, list[ErrorItem], bool | None]] = []
        try:
            with store.transaction():
                for item in items:
                    try:
                        rid, created = op(item)
                        outcomes.append((rid, [], created))
                    except DmlError as exc:
                        outcomes.append((_item_id(item), exc.errors, None))
                    except ApiError as exc:
                        outcomes.append((_item_id(item), exc.items, None))
                if all_or_none and any(errors for _, errors, _ in outcomes):
                    raise _RollBack
        except _RollBack:
            return [_save_result(rid, errors or [ROLLED_BACK]) for rid, errors, _ in outcomes]
        return [_save_result(rid, errors, created) for rid, errors, created in outcomes]

    def typed(item: Any) -> tuple[ObjectDef, dict[str, Any]]:
        if not isinstance(item, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "each record must be a JSON object")
        attributes = item.get("attributes") or {}
        type_name = attributes.get("type") if isinstance(attributes, dict) else None
        if not type_name:
            raise DmlError.one("INVALID_TYPE", "Must specify a type in the attributes of each record", [])
        obj = org.object(type_name)
        if obj is None:
            raise DmlError.one("INVALID_TYPE", f"sObject type '{type_name}' is not supported.", [])
        return obj, item

    def create_many(call: Call) -> Reply:
        records, all_or_none = records_of(call)

        def op(item: Any) -> tuple[str | None, bool | None]:
            obj, values = typed(item)
            return store.create(obj, values, client=call.client), None

        return Reply(body=run_all(records, all_or_none, op))

    def update_many(call: Call) -> Reply:
        records, all_or_none = records_of(call)

        def op(item: Any) -> tuple[str | None, bool | None]:
            obj, values = typed(item)
            raw = next((v for k, v in values.items() if k.lower() == "id"), None)
            rid = normalize(raw)
            if rid is None:
                raise DmlError.one("MALFORMED_ID", f"Id in the body is malformed: {raw}", ["Id"])
            if rid[:3] != obj.key_prefix:
                raise DmlError.one(
                    "MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {raw}", ["Id"]
                )
            store.update(obj, rid, {k: v for k, v in values.items() if k.lower() != "id"}, client=call.client)
            return rid, None

        return Reply(body=run_all(records, all_or_none, op))

    def delete_many(call: Call) -> Reply:
        raw_ids = [i for i in call.params.get("ids", "").split(",") if i]
        if not raw_ids:
            raise ApiError(400, "MALFORMED_QUERY", "ids parameter is required")
        if len(raw_ids) > MAX_COLLECTION:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call",
            )

        def op(raw: Any) -> tuple[str | None, bool | None]:
            rid = normalize(raw)
            found = store.find(rid) if rid else None
            if rid is None:
                raise DmlError.one("MALFORMED_ID", f"malformed id {raw}", [])
            if found is None:
                raise DmlError.one("ENTITY_IS_DELETED", "entity is deleted", [])
            store.delete(found[0], rid, client=call.client)
            return rid, None

        return Reply(body=run_all(raw_ids, call.flag("allOrNone"), op))

    def collections(call: Call) -> Reply:
        return {"POST": create_many, "PATCH": update_many, "DELETE": delete_many}[call.method](call)

    def retrieve(call: Call, object: str) -> Reply:
        obj = require_object(org, object)
        if call.method == "POST":
            body = call.json_object()
            ids, fields = body.get("ids") or [], body.get("fields")
            limit = MAX_RETRIEVE
        else:
            ids = [i for i in call.params.get("ids", "").split(",") if i]
            fields, limit = call.params.get("fields"), 800
        if not isinstance(ids, list) or len(ids) > limit:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", f"cannot retrieve more than {limit} records")
        names = field_list(obj, fields)
        out: list[dict[str, Any] | None] = []
        for raw in ids:
            rid = normalize(raw)
            rec = store.table(obj).get(rid) if rid else None
            out.append(None if rec is None or rec["IsDeleted"] else shape(call.version, obj, rec, names))
        return Reply(body=out)

    def upsert_many(call: Call, object: str, field: str) -> Reply:
        obj = require_object(org, object)
        f = store.ext_field(obj, field)
        records, all_or_none = records_of(call)

        def op(item: Any) -> tuple[str | None, bool | None]:
            item_obj, values = typed(item)
            if item_obj is not obj:
                raise DmlError.one("INVALID_TYPE", f"all records must be of type {obj.name}", [])
            key = next((v for k, v in values.items() if k.lower() == f.name.lower()), None)
            if key is None:
                raise DmlError.one("MISSING_ARGUMENT", f"{f.name} not specified", [f.name])
            try:
                return store.upsert(obj, f.name, key, values, client=call.client)
            except AmbiguousMatch as exc:
                raise DmlError.one(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{f.name}: more than one record found for external id field: {exc.ids}",
                    [f.name],
                ) from None

        return Reply(body=run_all(records, all_or_none, op))

    def composite(call: Call) -> Reply:
        body = call.json_object()
        subrequests = body.get("compositeRequest")
        if not isinstance(subrequests, list) or not subrequests:
            raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest is required")
        if len(subrequests) > MAX_SUBREQUESTS:
            raise ApiError(
                400,
                "INVALID_BATCH_REQUEST",
                f"Composite request can contain at most {MAX_SUBREQUESTS} subrequests",
            )
        all_or_none = bool(body.get("allOrNone", False))
        results: list[dict[str, Any]] = []
        bodies: dict[str, Any] = {}
        failed: set[str] = set()
        try:
            with store.transaction():
                for sub in subrequests:
                    ref = str(sub.get("referenceId", ""))
                    if all_or_none and failed:
                        results.append(_halted(ref, sub))
                        continue
                    try:
                        status, reply_body, headers = _run_sub(call, sub, bodies, failed, dispatch)
                    except ApiError as exc:
                        status, reply_body, headers = exc.status, exc.body(), {}
                    if status >= 400:
                        failed.add(ref)
                    else:
                        bodies[ref] = reply_body
                    results.append(
                        {
                            "body": reply_body,
                            "httpHeaders": headers,
                            "httpStatusCode": status,
                            "referenceId": ref,
                        }
                    )
                if all_or_none and failed:
                    raise _RollBack
        except _RollBack:
            results = [r if r["referenceId"] in failed else _halted(r["referenceId"], r) for r in results]
        return Reply(body={"compositeResponse": results})

    router.add("POST PATCH DELETE", "/composite/sobjects", collections)
    router.add("GET POST", "/composite/sobjects/{object}", retrieve)
    router.add("PATCH", "/composite/sobjects/{object}/{field}", upsert_many)
    router.add("POST", "/composite", composite)


def _halted(ref: str, sub: Any) -> dict[str, Any]:
    return {
        "body": [
            {
                "errorCode": "PROCESSING_HALTED",
                "message": "The transaction was rolled back since another operation in the same transaction "
                "failed.",
            }
        ],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": ref,
    }


def _item_id(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        raw = next((v for k, v in item.items() if k.lower() == "id"), None)
        return normalize(raw) or (raw if isinstance(raw, str) else None)
    return None


def _resolve(ref: str, path: str, bodies: dict[str, Any], failed: set[str]) -> Any:
    if ref not in bodies:
        reason = "was not executed" if ref not in failed else "failed"
        raise ApiError(
            400,
            "PROCESSING_HALTED",
            f"Invalid reference specified. No value for {ref}{path} found in {ref}. "
            f"Provided referenceId {ref} {reason}.",
        )
    value = bodies[ref]
    for name, index in _PATH_PART_RE.findall(path):
        try:
            value = value[int(index)] if index else value[name]
        except (KeyError, IndexError, TypeError):
            raise ApiError(
                400,
                "PROCESSING_HALTED",
                f"Invalid reference specified. No value for {ref}{path} found in {ref}.",
            ) from None
    return value


def _substitute(value: Any, bodies: dict[str, Any], failed: set[str]) -> Any:
    if isinstance(value, str):
        whole = _REF_RE.fullmatch(value)
        if whole is not None:
            return _resolve(whole[1], whole[2], bodies, failed)
        return _REF_RE.sub(lambda m: str(_resolve(m[1], m[2], bodies, failed)), value)
    if isinstance(value, dict):
        return {k: _substitute(v, bodies, failed) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, bodies, failed) for v in value]
    return value


def _run_sub(
    outer: Call, sub: Any, bodies: dict[str, Any], failed: set[str], dispatch: Callable[[Call], Reply]
) -> tuple[int, Any, dict[str, str]]:
    if not isinstance(sub, dict) or not sub.get("url") or not sub.get("method") or not sub.get("referenceId"):
        raise ApiError(400, "INVALID_INPUT", "each subrequest needs method, url and referenceId")
    url = _substitute(str(sub["url"]), bodies, failed)
    parts = urlsplit(url)
    m = _URL_PREFIX_RE.match(parts.path)
    if m is None:
        raise ApiError(400, "NOT_FOUND", f"The requested resource does not exist: {parts.path}")
    body = _substitute(sub.get("body"), bodies, failed) if "body" in sub else None
    call = Call(
        method=str(sub["method"]).upper(),
        path=m[2] or "",
        version=m[1],
        params=dict(parse_qsl(parts.query)),
        body=json.dumps(body).encode() if body is not None else b"",
        headers={k.lower(): str(v) for k, v in (sub.get("httpHeaders") or {}).items()},
        client=outer.client,
    )
    if body is not None:
        call.parsed = body
    reply = dispatch(call)
    headers = dict(reply.headers)
    if reply.status == 201 and isinstance(reply.body, dict) and "id" in reply.body:
        obj_name = call.path.split("/")[2] if call.path.startswith("/sobjects/") else ""
        if obj_name:
            headers["Location"] = record_url(call.version, obj_name, reply.body["id"])
    return reply.status, reply.body, headers
