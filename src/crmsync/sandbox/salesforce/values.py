"""Field values on the wire: timestamps, type checks and the errors Salesforce answers for bad values.

Values arrive either as JSON (REST, Collections, Composite: types must match) or as CSV text
(Bulk 2.0: everything is a string, ``#N/A`` is null). Each check returns the stored value or
raises :class:`FieldProblem`, which the store turns into a Salesforce error item.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from crmsync.sandbox.salesforce.ids import normalize
from crmsync.sandbox.salesforce.schema import FieldDef

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATETIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


@dataclass(slots=True)
class ErrorItem:
    """One Salesforce error: ``errorCode`` on single-record calls, ``statusCode`` in SaveResults."""

    code: str
    message: str
    fields: list[str] | None = field(default=None)

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            out["fields"] = self.fields
        return out

    def save_result(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


class FieldProblem(Exception):
    def __init__(self, code: str, message: str, fields: list[str]) -> None:
        super().__init__(message)
        self.item = ErrorItem(code, message, fields)


def format_datetime(value: dt.datetime) -> str:
    """``2024-05-01T10:30:00.000+0000``: UTC, whole seconds (Salesforce stores no milliseconds)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def parse_datetime(text: str) -> dt.datetime | None:
    """Parse the ISO forms clients send (``Z``, ``+00:00``, ``+0000``, with or without ms); None if bad."""
    m = _DATETIME_RE.match(text.strip())
    if m is None:
        return None
    day, clock, zone = m.groups()
    if clock.count(":") == 1:
        clock += ":00"
    if zone is None or zone == "Z":
        zone = "+00:00"
    elif ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        return dt.datetime.fromisoformat(f"{day}T{clock}{zone}").astimezone(dt.UTC)
    except ValueError:
        return None


def _json_error(type_name: str, value: Any) -> FieldProblem:
    kind = "VALUE_STRING" if isinstance(value, str) else "VALUE_NUMBER_INT"
    return FieldProblem(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {type_name} from {kind} value {value} "
        "or request may be missing a required field",
        [],
    )


def coerce(f: FieldDef, value: Any, *, csv: bool = False) -> Any:
    """The value to store for field ``f`` (None clears it); raises :class:`FieldProblem`."""
    if value is None or (csv and value in ("", "#N/A")):
        return None
    t = f.type
    if t in ("string", "textarea", "email", "phone", "url", "combobox", "picklist", "multipicklist", "time"):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _json_error("String", value)
        text = value if isinstance(value, str) else str(value)
        if f.length and len(text) > f.length:
            raise FieldProblem(
                "STRING_TOO_LONG",
                f"{f.label}: data value too large: {text[:50]} (max length={f.length})",
                [f.name],
            )
        if t == "email" and text and not _EMAIL_RE.match(text):
            raise FieldProblem("INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {text}", [f.name])
        if t == "picklist" and f.restricted and text not in f.picklist:
            raise FieldProblem(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{f.label}: bad value for restricted picklist field: {text}",
                [f.name],
            )
        if t == "multipicklist" and f.restricted:
            for part in text.split(";"):
                if part and part not in f.picklist:
                    raise FieldProblem(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{f.label}: bad value for restricted picklist field: {part}",
                        [f.name],
                    )
        return text
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if csv and isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise _json_error("boolean", value)
    if t in ("int", "long", "double", "currency", "percent"):
        if csv and isinstance(value, str):
            try:
                value = float(value) if t not in ("int", "long") else int(value)
            except ValueError:
                raise FieldProblem(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD",
                    f"{f.label}: value not of required type: {value}",
                    [f.name],
                ) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _json_error("int" if t in ("int", "long") else "double", value)
        if t in ("int", "long"):
            if isinstance(value, float) and not value.is_integer():
                raise FieldProblem(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD",
                    f"{f.label}: value not of required type: {value}",
                    [f.name],
                )
            return int(value)
        return float(value)
    if t == "date":
        if not isinstance(value, str):
            raise _json_error("date", value)
        try:
            return dt.date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            raise _json_error("date", value) from None
    if t == "datetime":
        if not isinstance(value, str):
            raise _json_error("datetime", value)
        parsed = parse_datetime(value)
        if parsed is None:
            raise _json_error("datetime", value)
        return format_datetime(parsed)
    if t in ("reference", "id"):
        if not isinstance(value, str):
            raise _json_error("String", value)
        rid = normalize(value)
        if rid is None:
            raise FieldProblem("MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name])
        return rid
    return value
