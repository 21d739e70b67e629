"""Wire-level helpers of the Salesforce emulator: JSON replies, form bodies, release names, fault bodies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from crmsync.sandbox.faults import FaultRule

SERIES = {
    31: "Summer '14",
    32: "Winter '15",
    33: "Spring '15",
    34: "Summer '15",
    35: "Winter '16",
    36: "Spring '16",
    37: "Summer '16",
    38: "Winter '17",
    39: "Spring '17",
    40: "Summer '17",
    41: "Winter '18",
    42: "Spring '18",
    43: "Summer '18",
    44: "Winter '19",
    45: "Spring '19",
    46: "Summer '19",
    47: "Winter '20",
    48: "Spring '20",
    49: "Summer '20",
    50: "Winter '21",
    51: "Spring '21",
    52: "Summer '21",
    53: "Winter '22",
    54: "Spring '22",
    55: "Summer '22",
    56: "Winter '23",
    57: "Spring '23",
    58: "Summer '23",
    59: "Winter '24",
    60: "Spring '24",
    61: "Summer '24",
    62: "Winter '25",
    63: "Spring '25",
    64: "Summer '25",
    65: "Winter '26",
    66: "Spring '26",
    67: "Summer '26",
    68: "Winter '27",
}
SESSION_EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
FAULT_KINDS: dict[str, tuple[int, str, str]] = {
    "server_error": (
        500,
        "UNKNOWN_EXCEPTION",
        "An unexpected error occurred. Please include this ErrorId if you contact support: 1839502771-59641 "
        "(-1480409421)",
    ),
    "unavailable": (503, "SERVER_UNAVAILABLE", "Server temporarily unavailable. Please try again later."),
    "limit_exceeded": (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    "rate_limit": (
        403,
        "REQUEST_LIMIT_EXCEEDED",
        "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
    ),
    "session_expired": (401, "INVALID_SESSION_ID", "Session expired or invalid"),
    "lock": (400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records"),
}
GENERIC_CODES = {
    400: "BAD_REQUEST",
    401: "INVALID_SESSION_ID",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    412: "PRECONDITION_FAILED",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "SERVER_UNAVAILABLE",
}


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/json;charset=UTF-8",
    )


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the OAuth endpoints take nothing else)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def fault_reply(rule: FaultRule, path: str, limit_info: str) -> Response:
    """Salesforce's reply for a fault rule's ``error`` kind (see :data:`FAULT_KINDS`) or ``status``."""
    if rule.error:
        status, code, message = FAULT_KINDS.get(
            rule.error,
            (500, "UNKNOWN_EXCEPTION", f"unknown fault kind {rule.error!r}; valid: {', '.join(FAULT_KINDS)}"),
        )
    else:
        status = rule.status or 500
        code = GENERIC_CODES.get(status, "UNKNOWN_EXCEPTION")
        message = f"HTTP {status}"
    if path.startswith("/services/oauth2/"):
        return json_response(status, {"error": code.lower(), "error_description": message})
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Token"
    if path.startswith("/services/data/v"):
        headers["Sforce-Limit-Info"] = limit_info
    body: list[dict[str, Any]] = [{"message": message, "errorCode": code}]
    if code == "UNABLE_TO_LOCK_ROW":
        body[0]["fields"] = []
    return json_response(status, body, headers)
