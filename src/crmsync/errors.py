"""One root exception, sorted by what the caller must do next.

::

    CrmsyncError
    ├── RetryLater        transient: 5xx, 429, lock contention, an expired session after one re-login
    │   ├── BudgetExhausted   an API budget is spent; retry after ``retry_after`` seconds
    │   └── Unexpected        an error nobody foresaw (a bug, an odd value): retried, then a dead letter
    ├── FixTheData        the record is refused: goes to dead letters with the vendor's message
    │   └── LockedRecord      a lock rule forbids the change (answered 409 to the sender)
    └── Fatal             bad credentials, misconfiguration: stop the flow and alert a person
        └── ConfigError       the configuration file is invalid

Every error carries what a person needs to find the cause: the URL, the object, the record and
the vendor's own message and code, when they are known.
"""

from __future__ import annotations

from typing import Any


class CrmsyncError(Exception):
    """Root of every error crmsync raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        object_name: str | None = None,
        record: str | None = None,
        vendor_code: str | None = None,
        status: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.object_name = object_name
        self.record = record
        self.vendor_code = vendor_code
        self.status = status
        self.details = details

    def __str__(self) -> str:
        parts = [self.message]
        if self.vendor_code:
            parts.append(f"[{self.vendor_code}]")
        where = " ".join(p for p in (self.object_name, self.record) if p)
        if where:
            parts.append(f"({where})")
        if self.url:
            parts.append(f"at {self.url}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description, as stored in the sync log and dead letters."""
        return {
            "kind": type(self).__name__,
            "message": self.message,
            "vendor_code": self.vendor_code,
            "status": self.status,
            "url": self.url,
            "object": self.object_name,
            "record": self.record,
        }


class RetryLater(CrmsyncError):
    """Transient: try the same thing again later; nothing is wrong with the data."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class BudgetExhausted(RetryLater):
    """An API budget (daily calls, rate window, complexity) is spent."""


class Unexpected(RetryLater):
    """An exception crmsync did not foresee while applying one change (a bug, an unforeseen value).

    It is recorded on that change alone and retried with back-off like a transient failure; after
    ``worker.max_attempts`` attempts the change becomes a dead letter with this message.
    """

    @classmethod
    def wrap(cls, exc: BaseException, **kw: Any) -> Unexpected:
        text = str(exc)
        if len(text) > 500:
            text = text[:500] + "…"
        return cls(f"unexpected {type(exc).__name__}: {text}", **kw)


class FixTheData(CrmsyncError):
    """The receiving system refused this record; retrying will not help until someone edits it."""


class LockedRecord(FixTheData):
    """A lock rule forbids changing this record any more."""


class Fatal(CrmsyncError):
    """A person must act (credentials, configuration); the flow stops and an alert goes out."""


class CallbackUnreachable(Fatal):
    """The vendor could not reach the callback URL of a webhook being created (crmsync must be
    serving it, at an address the vendor reaches)."""


class ConfigError(Fatal):
    """The configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, message: str, problems: list[str] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.problems = problems or []
