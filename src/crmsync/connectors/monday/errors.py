"""monday.com errors sorted into crmsync's error tree, by one table: (HTTP status, code) → class.

monday answers application errors with HTTP 200 and an ``errors`` array (``extensions.code``),
transport and limit errors with 4xx/5xx, and spent complexity budgets in three shapes, one per
API-version era (all parsed here):

- 2025-07+: 429 ``{"errors":[{"message","extensions":{"code":"COMPLEXITY_BUDGET_EXHAUSTED",
  "retry_in_seconds"}}]}``;
- 2025-01/04: the same plus ``complexity``, ``complexity_budget_left``, ``complexity_budget_limit``;
- legacy: top-level ``{"error_code":"ComplexityException","error_message":"... reset in 3 seconds"}``.

Lookup order: ``(status, code)``, then ``(None, code)``, then ``(status, None)``, then the status
family (5xx → retry later, 401/403 → fatal, other 4xx → fix the data); an application error with
an unknown code is refused data. ``retry_after`` comes from ``retry_in_seconds``, the legacy
message or the ``Retry-After`` header (seconds or an HTTP date), in that order, clipped to a day.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crmsync.connectors.retry_after import bounded_wait, retry_after_header
from crmsync.errors import BudgetExhausted, CrmsyncError, Fatal, FixTheData, RetryLater

#: a pseudo code for an HTTP error whose body names no code
NO_CODE = None
#: seconds to wait when a budget error gives no hint
DEFAULT_RETRY_AFTER = 60.0

ERROR_TABLE: dict[tuple[int | None, str | None], type[CrmsyncError]] = {
    # -- budgets and rate limits: wait, then retry ---------------------------------------------
    (None, "COMPLEXITY_BUDGET_EXHAUSTED"): BudgetExhausted,
    (None, "ComplexityException"): BudgetExhausted,
    (None, "DAILY_LIMIT_EXCEEDED"): BudgetExhausted,
    (None, "RATE_LIMIT_EXCEEDED"): BudgetExhausted,
    (None, "Rate Limit Exceeded"): BudgetExhausted,
    (None, "IP_RATE_LIMIT_EXCEEDED"): BudgetExhausted,
    (None, "maxConcurrencyExceeded"): RetryLater,
    (None, "API_TEMPORARILY_BLOCKED"): RetryLater,
    (409, "IDEMPOTENCY_CONFLICT"): RetryLater,
    (None, "RESOURCE_LOCKED"): RetryLater,
    (None, "CursorExpiredError"): RetryLater,
    (None, "INTERNAL_SERVER_ERROR"): RetryLater,
    (423, None): RetryLater,
    (429, None): RetryLater,
    (500, None): RetryLater,
    (502, None): RetryLater,
    (503, None): RetryLater,
    (504, None): RetryLater,
    # -- the record is refused: fix the data -------------------------------------------------
    (None, "ColumnValueException"): FixTheData,
    (None, "CorrectedValueException"): FixTheData,
    (None, "InvalidArgumentException"): FixTheData,
    (None, "InvalidUserIdException"): FixTheData,
    (None, "InvalidGroupIdException"): FixTheData,
    (None, "ItemNameTooLongException"): FixTheData,
    (None, "ItemsLimitationException"): FixTheData,
    (None, "ResourceNotFoundException"): FixTheData,
    (None, "RecordInvalidException"): FixTheData,
    (None, "DeleteLastGroupException"): FixTheData,
    (None, "maxComplexityExceeded"): FixTheData,
    (404, None): FixTheData,
    (422, None): FixTheData,
    # -- a person must act -------------------------------------------------------------------
    (None, "UNAUTHORIZED"): Fatal,
    (None, "UserUnauthorizedException"): Fatal,
    (None, "USER_ACCESS_DENIED"): Fatal,
    (None, "missingRequiredPermissions"): Fatal,
    (None, "InvalidVersionException"): Fatal,
    (None, "InvalidBoardIdException"): Fatal,
    (None, "InvalidColumnIdException"): Fatal,
    (None, "PARSE_ERROR"): Fatal,
    (None, "GRAPHQL_VALIDATION_FAILED"): Fatal,
    (None, "undefinedField"): Fatal,
    (None, "argumentNotAccepted"): Fatal,
    (None, "missingRequiredArguments"): Fatal,
    (None, "JsonParseException"): Fatal,
    (None, "BAD_REQUEST"): Fatal,
    (400, None): Fatal,
    (401, None): Fatal,
    (403, None): Fatal,
}

#: codes meaning "the item is gone": deleting or archiving it again succeeds
ITEM_GONE = frozenset({"ResourceNotFoundException"})

_RESET_IN = re.compile(r"reset in (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


@dataclass(frozen=True)
class VendorError:
    """One error as monday reported it."""

    code: str | None
    message: str
    retry_after: float | None = None
    path: tuple[str | int, ...] = ()
    data: Any = None


def error_class(status: int | None, code: str | None) -> type[CrmsyncError]:
    """The class for one (status, code) pair, following the lookup order of this module."""
    for key in ((status, code), (None, code), (status, None)):
        if key != (None, None) and key in ERROR_TABLE:
            return ERROR_TABLE[key]
    if status is None or status == 200:
        return FixTheData
    if status >= 500:
        return RetryLater
    if status in (401, 403):
        return Fatal
    return FixTheData


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def parse_errors(body: Any, headers: Mapping[str, str] | None = None) -> list[VendorError]:
    """Every error of a reply body, in any of monday's shapes (empty when there is none)."""
    header_wait = retry_after_header(headers)
    out: list[VendorError] = []
    if not isinstance(body, dict):
        return out
    if body.get("error_code") or body.get("error_message"):  # the legacy shape
        message = str(body.get("error_message") or body.get("error_code"))
        found = _RESET_IN.search(message)
        wait = bounded_wait(float(found.group(1))) if found else header_wait
        out.append(VendorError(str(body.get("error_code") or "") or None, message, wait, data=body))
        return out
    errors = body.get("errors")
    if not isinstance(errors, list):
        return out
    for error in errors:
        if isinstance(error, str):
            found = _RESET_IN.search(error)
            out.append(
                VendorError(None, error, bounded_wait(float(found.group(1))) if found else header_wait)
            )
            continue
        if not isinstance(error, dict):
            continue
        ext = error.get("extensions") if isinstance(error.get("extensions"), dict) else {}
        assert isinstance(ext, dict)
        code = ext.get("code") or error.get("code")
        wait = bounded_wait(_number(ext.get("retry_in_seconds")))
        message = str(error.get("message") or code or "error")
        if wait is None:
            found = _RESET_IN.search(message)
            wait = bounded_wait(float(found.group(1))) if found else header_wait
        path = tuple(p for p in error.get("path") or () if isinstance(p, str | int))
        out.append(VendorError(str(code) if code else None, message, wait, path, ext.get("error_data")))
    return out


#: the codes of a refused token (a 401 is one whatever its code)
LOGIN_REFUSED_CODES = frozenset({"UNAUTHORIZED", "UserUnauthorizedException", "Unauthorized"})
#: what to fix when monday refuses the token
LOGIN_HINT = (
    "Check the connection's token ($MONDAY_TOKEN in the recipes): a personal API token from "
    "monday's Developers > My access tokens, or the app's token; then: crmsync check --connect"
)


def make_error(
    status: int | None,
    vendor: VendorError,
    *,
    url: str | None = None,
    object_name: str | None = None,
    record: str | None = None,
) -> CrmsyncError:
    """An error instance for one vendor error, carrying everything a person needs."""
    cls = error_class(status if status != 200 else None, vendor.code)
    kw: dict[str, Any] = {
        "url": url,
        "object_name": object_name,
        "record": record,
        "vendor_code": vendor.code,
        "status": status,
        "details": vendor.data,
    }
    if issubclass(cls, RetryLater):
        wait = vendor.retry_after
        if wait is None and cls is BudgetExhausted:
            wait = DEFAULT_RETRY_AFTER
        return cls(vendor.message, retry_after=wait, **kw)
    if status == 401 or vendor.code in LOGIN_REFUSED_CODES:
        return cls(f"{vendor.message}. {LOGIN_HINT}", **kw)
    return cls(vendor.message, **kw)


def error_from_reply(
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    url: str,
    text: str = "",
    object_name: str | None = None,
) -> CrmsyncError:
    """The error for a whole reply: a non-2xx status, or HTTP 200 with ``errors`` and no data."""
    errors = parse_errors(body, headers)
    if not errors:
        reason = text[:300] if text else "(empty reply)"
        errors = [VendorError(None, f"HTTP {status}: {reason}", retry_after_header(headers))]
    # the most urgent error decides: a budget or transport error over a data error
    ranked = sorted(errors, key=lambda e: _rank(error_class(status if status != 200 else None, e.code)))
    return make_error(status, ranked[0], url=url, object_name=object_name)


def _rank(cls: type[CrmsyncError]) -> int:
    if issubclass(cls, Fatal):
        return 0
    if issubclass(cls, RetryLater):
        return 1
    return 2
