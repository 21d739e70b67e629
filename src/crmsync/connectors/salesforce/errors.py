"""Salesforce errors sorted into crmsync's error tree, by one table: (HTTP status, errorCode) → class.

Lookup order for a reply: ``(status, code)``, then ``(None, code)`` (the code decides whatever the
status), then ``(status, None)`` (the status decides), then the status family (5xx → retry later,
401/403 → fatal, other 4xx → fix the data). Per-record SaveResults of sObject Collections carry a
``statusCode`` and no HTTP status: they are looked up with ``status=None``.

An expired session (401 ``INVALID_SESSION_ID``) is handled by the client before this table is
consulted: it logs in again once and retries once; the table only sees the second 401 (fatal).

``REQUEST_LIMIT_EXCEEDED`` names three different limits; the vendor's message tells them apart
(:func:`normalize_code`): ``TotalRequests Limit exceeded.`` is the org's rolling 24-hour budget
(wait about an hour), ``ConcurrentRequests ...`` / ``ConcurrentPerOrgLongTxn ...`` too many
long-running requests at once (wait seconds), anything else a rate limit (wait what
``Retry-After`` says, else the engine's backoff). A ``Retry-After`` header, in seconds or as an
HTTP date, overrides the default wait of every retry-later error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crmsync.connectors.retry_after import retry_after_header
from crmsync.errors import BudgetExhausted, CrmsyncError, Fatal, FixTheData, RetryLater

#: seconds to wait once the org's rolling 24-hour API budget is spent (Salesforce sends no Retry-After)
DAILY_LIMIT_RETRY_AFTER = 3600.0
#: seconds to wait when too many long-running requests are in flight
CONCURRENCY_RETRY_AFTER = 30.0

#: a pseudo error code for a 300 reply (an external id matched several records)
MULTIPLE_MATCHES = "MULTIPLE_RECORDS"
#: pseudo error codes for the two ``REQUEST_LIMIT_EXCEEDED`` replies that are not the daily limit
CONCURRENT_REQUESTS = "ConcurrentRequests"
RATE_LIMITED = "RateLimited"
ERROR_TABLE: dict[tuple[int | None, str | None], type[CrmsyncError]] = {
    # -- sessions, budgets and concurrency ---------------------------------------------------
    (401, "INVALID_SESSION_ID"): Fatal,  # only reached after one re-login and one retry
    (403, "REQUEST_LIMIT_EXCEEDED"): BudgetExhausted,
    (403, CONCURRENT_REQUESTS): RetryLater,
    (None, "REQUEST_LIMIT_EXCEEDED"): BudgetExhausted,
    (None, RATE_LIMITED): RetryLater,
    # -- transient -----------------------------------------------------------------------------
    (None, "UNABLE_TO_LOCK_ROW"): RetryLater,
    (None, "SERVER_UNAVAILABLE"): RetryLater,
    (None, "QUERY_TIMEOUT"): RetryLater,
    (None, "INVALID_QUERY_LOCATOR"): RetryLater,
    (None, "ALL_OR_NONE_OPERATION_ROLLED_BACK"): RetryLater,
    (None, "PROCESSING_HALTED"): RetryLater,
    (429, None): RetryLater,
    (500, None): RetryLater,
    (502, None): RetryLater,
    (503, None): RetryLater,
    (504, None): RetryLater,
    # -- the record is refused: fix the data ------------------------------------------------
    (None, "REQUIRED_FIELD_MISSING"): FixTheData,
    (None, "INVALID_FIELD"): FixTheData,
    (None, "INVALID_FIELD_FOR_INSERT_UPDATE"): FixTheData,
    (None, "MALFORMED_ID"): FixTheData,
    (None, "DUPLICATE_VALUE"): FixTheData,
    (None, "DUPLICATES_DETECTED"): FixTheData,
    (None, "DUPLICATE_EXTERNAL_ID"): FixTheData,
    (None, "FIELD_CUSTOM_VALIDATION_EXCEPTION"): FixTheData,
    (None, "FIELD_INTEGRITY_EXCEPTION"): FixTheData,
    (None, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"): FixTheData,
    (None, "STRING_TOO_LONG"): FixTheData,
    (None, "NUMBER_OUTSIDE_VALID_RANGE"): FixTheData,
    (None, "INVALID_TYPE_ON_FIELD_IN_RECORD"): FixTheData,
    (None, "INVALID_EMAIL_ADDRESS"): FixTheData,
    (None, "INVALID_CROSS_REFERENCE_KEY"): FixTheData,
    (None, "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY"): FixTheData,
    (None, "CANNOT_UPDATE_CONVERTED_LEAD"): FixTheData,
    (None, "ENTITY_IS_LOCKED"): FixTheData,
    (None, "JSON_PARSER_ERROR"): FixTheData,
    (None, "MALFORMED_QUERY"): FixTheData,
    (None, "INVALID_QUERY_FILTER_OPERATOR"): FixTheData,
    (404, "NOT_FOUND"): FixTheData,
    (None, "NOT_FOUND"): FixTheData,
    (None, "ENTITY_IS_DELETED"): FixTheData,
    (300, MULTIPLE_MATCHES): FixTheData,
    (414, None): FixTheData,
    # -- a person must act ----------------------------------------------------------------------
    (None, "INVALID_TYPE"): Fatal,
    (None, "INSUFFICIENT_ACCESS"): Fatal,
    (None, "INSUFFICIENT_ACCESS_OR_READONLY"): Fatal,
    (None, "API_DISABLED_FOR_ORG"): Fatal,
    (None, "API_CURRENTLY_DISABLED"): Fatal,
    (None, "FUNCTIONALITY_NOT_ENABLED"): Fatal,
    (401, None): Fatal,
    (403, None): Fatal,
    (405, None): Fatal,
    (410, None): Fatal,  # the API version is retired
    (415, None): Fatal,
}

#: errors of the token endpoint (``{"error": ..., "error_description": ...}``); anything else is fatal
TOKEN_ERROR_TABLE: dict[str, type[CrmsyncError]] = {
    "rate_limit_exceeded": RetryLater,
    "server_error": RetryLater,
    "temporarily_unavailable": RetryLater,
}

#: codes for which a delete is a success: the record is already gone (deleting is idempotent)
ALREADY_DELETED = frozenset({"ENTITY_IS_DELETED", "NOT_FOUND"})


def normalize_code(status: int | None, code: str | None, message: str) -> str | None:
    """The table key for a code: ``REQUEST_LIMIT_EXCEEDED`` is the daily limit only when its
    message says ``TotalRequests``; concurrency and rate limits share the code (see the module)."""
    if code == "REQUEST_LIMIT_EXCEEDED" and "totalrequests" not in message.lower():
        return CONCURRENT_REQUESTS if message.lower().startswith("concurrent") else RATE_LIMITED
    if status == 300 and code is None:
        return MULTIPLE_MATCHES
    return code


def error_class(status: int | None, code: str | None) -> type[CrmsyncError]:
    """The class for one (status, code) pair, following the lookup order of this module."""
    for key in ((status, code), (None, code), (status, None)):
        if key != (None, None) and key in ERROR_TABLE:
            return ERROR_TABLE[key]
    if status is None:
        return FixTheData  # a per-record error with an unknown code: the record was refused
    if status >= 500:
        return RetryLater
    if status in (401, 403):
        return Fatal
    return FixTheData


def make_error(
    status: int | None,
    code: str | None,
    message: str,
    *,
    url: str | None = None,
    object_name: str | None = None,
    record: str | None = None,
    details: Any = None,
    retry_after: float | None = None,
) -> CrmsyncError:
    """An error instance for one vendor error, carrying everything a person needs.

    ``retry_after`` is the vendor's own hint (``Retry-After``); without one, the daily limit waits
    :data:`DAILY_LIMIT_RETRY_AFTER` and too many concurrent requests :data:`CONCURRENCY_RETRY_AFTER`.
    """
    code = normalize_code(status, code, message)
    cls = error_class(status, code)
    kw: dict[str, Any] = {
        "url": url,
        "object_name": object_name,
        "record": record,
        "vendor_code": code,
        "status": status,
        "details": details,
    }
    if issubclass(cls, RetryLater):
        if retry_after is None and cls is BudgetExhausted:
            retry_after = DAILY_LIMIT_RETRY_AFTER
        elif retry_after is None and code == CONCURRENT_REQUESTS:
            retry_after = CONCURRENCY_RETRY_AFTER
        return cls(message, retry_after=retry_after, **kw)
    return cls(message, **kw)


def parse_error_body(text: str) -> tuple[str | None, str, Any]:
    """``(errorCode, message, parsed body)`` from a REST error reply (array, object or not JSON)."""
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        return None, text[:500] or "(empty reply)", text[:2000]
    first: Any = body[0] if isinstance(body, list) and body else body
    if isinstance(first, dict):
        code = first.get("errorCode") or first.get("statusCode") or first.get("error")
        message = first.get("message") or first.get("error_description") or json.dumps(first)[:500]
        return (str(code) if code else None), str(message), body
    if isinstance(body, list) and body and isinstance(body[0], str):
        # 300 Multiple Choices lists the matching record URLs
        return None, f"{len(body)} records match: {', '.join(body[:5])}", body
    return None, (text[:500] or "(empty reply)"), body


def error_from_reply(
    status: int,
    text: str,
    *,
    url: str,
    object_name: str | None = None,
    record: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> CrmsyncError:
    """An error for a whole HTTP reply with status ``status``, body ``text`` and ``headers``."""
    code, message, body = parse_error_body(text)
    if status == 300 and code is None:
        message = f"the external id matches several records: {message}"
    return make_error(
        status,
        code,
        message,
        url=url,
        object_name=object_name,
        record=record,
        details=body,
        retry_after=retry_after_header(headers),
    )


def error_from_save_result(
    errors: list[dict[str, Any]], *, url: str | None, object_name: str, record: str | None
) -> CrmsyncError:
    """An error for one refused record of a collections call (``errors`` of its SaveResult)."""
    if not errors:
        return make_error(None, None, "refused without a reason", url=url, object_name=object_name)
    first = errors[0]
    code = first.get("statusCode") or first.get("errorCode")
    message = str(first.get("message") or code or "refused")
    fields = first.get("fields")
    if fields:
        message = f"{message} (fields: {', '.join(map(str, fields))})"
    return make_error(
        None,
        str(code) if code else None,
        message,
        url=url,
        object_name=object_name,
        record=record,
        details=errors,
    )


def token_error(
    status: int, text: str, *, url: str, headers: Mapping[str, str] | None = None
) -> CrmsyncError:
    """An error for a refused login: the vendor's error and description, never the secret sent."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        code = str(body["error"])
        description = str(body.get("error_description") or "")
        message = f"login refused: {code}" + (f": {description}" if description else "")
        cls = TOKEN_ERROR_TABLE.get(code, Fatal)
        if status >= 500 or status == 429:
            cls = RetryLater  # the login service is down or busy: nothing is wrong with the credentials
    else:
        code = None
        message = f"login failed with HTTP {status}: {text[:300]}"
        cls = RetryLater if status >= 500 or status == 429 else Fatal
    if issubclass(cls, RetryLater):
        return cls(message, url=url, vendor_code=code, status=status, retry_after=retry_after_header(headers))
    return cls(message, url=url, vendor_code=code, status=status)
