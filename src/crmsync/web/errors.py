"""JSON error replies: one shape for every refusal, naming the problem.

::

    {"error": {"code": "invalid_value", "message": "...", "details": [{"loc": ..., "message": ...}],
               "omitted": 59980}}

A reply lists at most :data:`MAX_DETAILS` problems: the first ones, and how many more were found
(``omitted``), so 60,000 bad fields cost a short reply, not megabytes.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

#: the most problems one error reply lists
MAX_DETAILS = 20


class ApiError(Exception):
    """A refusal the API answers with ``status`` and ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
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

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        if self.omitted:
            body["omitted"] = self.omitted
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)
