"""The error every SOQL step raises: :class:`SoqlError`, as Salesforce words it.

Parsing, name resolution and filter checks all fail the same way Salesforce does: an ``errorCode``
and a message that locates the mistake in the query text (the query line, a caret under the
offending column, ``ERROR at Row:r:Column:c`` and the reason). The emulator's REST and Bulk layers
turn it into a 400 reply; it lives on its own so that every SOQL module can raise it.
"""

from __future__ import annotations


class SoqlError(Exception):
    """A query Salesforce would refuse: ``error_code`` and ``message`` as in its 400 reply body."""

    def __init__(self, error_code: str, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        #: Salesforce's ``errorCode``: MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE, …
        self.error_code = error_code
        #: the full message, located in the query text when a position is known
        self.message = message
        #: the reason alone, without the location lines
        self.detail = detail if detail is not None else message

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"


def located_error(error_code: str, text: str, line: int, column: int, detail: str) -> SoqlError:
    """A :class:`SoqlError` whose message points at ``line``/``column`` (1-based) of ``text``."""
    lines = text.splitlines() or [""]
    shown = lines[line - 1] if 0 < line <= len(lines) else lines[-1]
    caret = " " * max(column - 1, 0) + "^"
    message = f"\n{shown}\n{caret}\nERROR at Row:{line}:Column:{column}\n{detail}"
    return SoqlError(error_code, message, detail=detail)
