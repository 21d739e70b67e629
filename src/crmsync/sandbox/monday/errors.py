"""monday's error shapes: application errors inside ``errors`` and transport-level bodies.

Application errors (bad column value, unknown board, ...) are raised by resolvers as
:class:`MondayError`; graphql-core puts them in the ``errors`` array with the alias in ``path``
and this class's ``extensions`` (``code``, ``status_code``, ``error_data``), under HTTP 200.
Transport errors (401, 429, 5xx, ...) are whole responses built by :func:`error_response`.
"""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus
from typing import Any

from starlette.responses import Response

from crmsync.sandbox.monday.store import ACCOUNT_ID

COLUMN_DOCS = "https://developer.monday.com/api-reference/docs/change-column-values"


class MondayError(Exception):
    """An application error; graphql-core copies ``extensions`` into the error object."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        error_data: dict[str, Any] | None = None,
        status_code: int | None = 200,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extensions: dict[str, Any] = {"code": code}
        if status_code is not None:
            self.extensions["status_code"] = status_code
        if error_data is not None:
            self.extensions["error_data"] = error_data
        self.extensions.update(extra)


def column_value_error(column_type: str, given: Any, *, label: bool = False) -> MondayError:
    """``ColumnValueException``; ``column_type`` is monday's internal name (status = ``color``)."""
    if label:
        message = (
            "invalid value - label does not exist in column. Please check our API documentation "
            f"for the correct data structure for this column. {COLUMN_DOCS}"
        )
    else:
        message = (
            "invalid value, please check our API documentation for the correct data structure "
            f"for this column. {COLUMN_DOCS}"
        )
    return MondayError(
        "ColumnValueException",
        message,
        error_data={"column_value": json.dumps(given), "column_type": column_type},
    )


def new_request_id() -> str:
    return str(uuid.uuid4())


def envelope(body: dict[str, Any], request_id: str, *, account: bool = True) -> dict[str, Any]:
    """Add ``account_id`` and ``extensions.request_id``, as every monday response has them."""
    out = dict(body)
    if account:
        out["account_id"] = ACCOUNT_ID
    out["extensions"] = {**out.get("extensions", {}), "request_id": request_id}
    return out


def json_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_body(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


def error_response(
    status: int,
    message: str,
    code: str,
    *,
    retry_after: int | None = None,
    account: bool = True,
    **extensions: Any,
) -> Response:
    """A transport-level error: ``{"errors":[{"message","extensions":{"code",...}}]}``."""
    body = envelope(error_body(message, code, **extensions), new_request_id(), account=account)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return json_response(body, status, headers)


def generic_error_response(status: int) -> Response:
    """monday's body for a bare HTTP status (``FaultRule.status``)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    code = phrase.upper().replace(" ", "_").replace("-", "_").replace("'", "")
    retry = 30 if status in (429, 503) else None
    return error_response(status, phrase, code, retry_after=retry, status_code=status)
