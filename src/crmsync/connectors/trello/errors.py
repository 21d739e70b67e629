"""Trello errors sorted into crmsync's error tree, by one table: (status, body pattern) → class.

Trello answers most 4xx errors with a **text/plain** body (``invalid id``, ``invalid token``,
``The requested resource was not found.``) and rate limits with JSON
(``{"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}``); the OpenAPI file
also declares ``{code, message}``, and a failed ``/batch`` entry is ``{message, statusCode}``.
:func:`read_body` turns any of them into a code (the JSON ``error``/``code``) and a message.

Lookup: the first row of :data:`ERROR_TABLE` whose status matches (``None``: any status) and
whose pattern is found, case-insensitively, in the code or the message; then the status family
(5xx → retry later, 401/403 → fatal, other 4xx → fix the data). A spent budget is
:class:`~crmsync.errors.BudgetExhausted` with ``retry_after`` = the rest of the window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from crmsync.connectors.retry_after import retry_after_header
from crmsync.errors import BudgetExhausted, CallbackUnreachable, CrmsyncError, Fatal, FixTheData, RetryLater

#: seconds to wait after a 429 when the reply gives no hint (Trello's window)
DEFAULT_RETRY_AFTER = 10.0


@dataclass(frozen=True)
class ErrorRule:
    status: int | None
    pattern: str | None
    cls: type[CrmsyncError]


ERROR_TABLE: tuple[ErrorRule, ...] = (
    # -- budgets: wait for the next window ---------------------------------------------------
    ErrorRule(429, "API_TOKEN_LIMIT_EXCEEDED", BudgetExhausted),
    ErrorRule(429, "API_KEY_LIMIT_EXCEEDED", BudgetExhausted),
    ErrorRule(429, "API_TOKEN_DB_LIMIT_EXCEEDED", BudgetExhausted),
    ErrorRule(429, "RATE_LIMIT_EXCEEDED", BudgetExhausted),
    ErrorRule(None, "API_TOO_MANY_CARDS_REQUESTED", Fatal),
    ErrorRule(429, None, BudgetExhausted),
    # -- the record or value is refused: fix the data ------------------------------------------
    ErrorRule(400, "invalid id", FixTheData),
    ErrorRule(400, "invalid value for", FixTheData),
    ErrorRule(400, "is already on the card", FixTheData),
    ErrorRule(400, "A webhook with that callback, model, and token already exists", FixTheData),
    ErrorRule(404, "The requested resource was not found", FixTheData),
    # -- a person must act ---------------------------------------------------------------------
    ErrorRule(400, "did not return 200 status code", CallbackUnreachable),
    ErrorRule(401, "invalid key", Fatal),
    ErrorRule(401, "invalid token", Fatal),
    ErrorRule(401, "unauthorized token", Fatal),
    ErrorRule(401, "unauthorized permission requested", Fatal),
    ErrorRule(401, "unauthorized card permission requested", Fatal),
    ErrorRule(None, "webhook does not belong to token", Fatal),
    ErrorRule(404, "Cannot ", Fatal),
    # -- transient -----------------------------------------------------------------------------
    ErrorRule(500, None, RetryLater),
    ErrorRule(502, None, RetryLater),
    ErrorRule(503, None, RetryLater),
    ErrorRule(504, None, RetryLater),
)

#: messages meaning "already so": adding a member or label a second time is a success
ALREADY_DONE = ("is already on the card",)
#: what to fix when Trello refuses the key or token
LOGIN_HINT = (
    "Check the connection's key and token ($TRELLO_KEY, $TRELLO_TOKEN): the Power-Up's API key and "
    "a token authorized for it with read,write scope; then: crmsync check --connect"
)


@dataclass(frozen=True)
class VendorError:
    """One error as Trello reported it."""

    status: int
    code: str | None
    message: str


def read_body(status: int, body: bytes | str | Any) -> VendorError:
    """The code and message of an error body: plain text, JSON ``{error, message}``, ``{code,
    message}`` or ``{message, statusCode}`` (already parsed, e.g. a ``/batch`` entry)."""
    data: Any = body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        text = body.strip()
        try:
            data = json.loads(text) if text[:1] in ("{", '"') else text
        except ValueError:
            data = text
    if isinstance(data, dict):
        code = data.get("error") if isinstance(data.get("error"), str) else data.get("code")
        message = data.get("message") or code or ""
        return VendorError(status, str(code) if code else None, str(message))
    return VendorError(status, None, str(data) if data not in (None, "") else f"HTTP {status}")


def error_class(status: int, code: str | None, message: str) -> type[CrmsyncError]:
    """The class for one error, following the lookup order of this module."""
    haystacks = [h.lower() for h in (code, message) if h]
    for rule in ERROR_TABLE:
        if rule.status is not None and rule.status != status:
            continue
        if rule.pattern is None or any(rule.pattern.lower() in h for h in haystacks):
            return rule.cls
    if status >= 500:
        return RetryLater
    if status in (401, 403):
        return Fatal
    return FixTheData


def make_error(
    vendor: VendorError,
    *,
    url: str | None = None,
    headers: Any = None,
    object_name: str | None = None,
    record: str | None = None,
    retry_after: float | None = None,
) -> CrmsyncError:
    """An error instance for one vendor error, carrying everything a person needs."""
    cls = error_class(vendor.status, vendor.code, vendor.message)
    kw: dict[str, Any] = {
        "url": url,
        "object_name": object_name,
        "record": record,
        "vendor_code": vendor.code,
        "status": vendor.status,
    }
    if issubclass(cls, RetryLater):
        wait = retry_after if retry_after is not None else retry_after_header(headers)
        if wait is None and cls is BudgetExhausted:
            wait = DEFAULT_RETRY_AFTER
        return cls(vendor.message, retry_after=wait, **kw)
    if vendor.status == 401 and cls is Fatal and "permission" not in vendor.message:
        return cls(f"{vendor.message}. {LOGIN_HINT}", **kw)
    return cls(vendor.message, **kw)


def already_done(error: CrmsyncError) -> bool:
    """Was the refused change already in place (e.g. the member is already on the card)?"""
    return any(text in error.message for text in ALREADY_DONE)


def gone(error: CrmsyncError) -> bool:
    """Is the object gone (404 not found): deleting or archiving it again succeeds."""
    return error.status == 404 and isinstance(error, FixTheData)
