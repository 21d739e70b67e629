"""JSON error replies: one shape for every refusal, naming the problem.

::

    {"error": {"code": "invalid_value", "message": "...", "details": [{"loc": ..., "message": ...}],
               "omitted": 59980}}

A reply lists at most :data:`MAX_DETAILS` problems: the first ones, and how many more were found
(``omitted``), so 60,000 bad fields cost a short reply, not megabytes.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

#: the most problems one error reply lists
MAX_DETAILS = 20


class ErrorBody(BaseModel):
    code: str = Field(description="What went wrong, for programs: e.g. invalid_value, locked, unauthorized.")
    message: str = Field(description="What went wrong and what to do, for people.")
    details: Any = Field(
        None,
        description=(
            "The problems found, usually a list of {loc, message} where loc is the path in the body "
            "(e.g. records.1.fields.quantity); a 409 names the locked parents and records."
        ),
    )
    omitted: int | None = Field(
        None, description=f"How many more problems were found than listed (at most {MAX_DETAILS})."
    )


class ErrorReply(BaseModel):
    """Every refusal: a 4xx or 5xx status with this body."""

    error: ErrorBody


class ApiError(Exception):
    """A refusal the API answers with ``status`` and ``{"error": {"code", "message", "details"}}``."""

    def __init__(
        self, status: int, code: str, message: str, details: Any = None, *, retry_after: int | None = None
    ) -> None:
        self.omitted = 0
        if isinstance(details, list) and len(details) > MAX_DETAILS:
            self.omitted = len(details) - MAX_DETAILS
            message = f"{message} (the first {MAX_DETAILS} of {len(details):,} problems are listed)"
            details = details[:MAX_DETAILS]
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        #: seconds the client should wait before sending again (sent as ``Retry-After``)
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        body = ErrorBody(
            code=self.code, message=self.message, details=self.details, omitted=self.omitted or None
        )
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return JSONResponse(
            ErrorReply(error=body).model_dump(exclude_none=True),
            status_code=self.status,
            headers=headers or None,
        )


def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The reply to what a handler raised: its own refusal (:class:`ApiError`); 503 when the store
    cannot be reached (the client may send again); else 500, the error logged with its traceback."""
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, SQLAlchemyError):
        log.warning("store unavailable: %s", exc)
        return ApiError(503, "store_unavailable", "the store cannot be reached; try again").response()
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return ApiError(500, "internal_error", "unexpected error; see the server log").response()
