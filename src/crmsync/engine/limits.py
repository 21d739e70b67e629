"""How large a value a target field can hold: text length, digits before and after the point.

Limits come from the target's describe (Salesforce declares ``length`` for text fields,
``precision`` and ``scale`` for numbers, ``digits`` for integers). The ingest API checks every
mapped value against them, so a value the target would refuse is answered 422 naming the field
instead of becoming a dead letter later. Without a describe, :func:`generic_problem` still keeps
every value within what any target can hold.

A describe is fetched once per object in the background (:class:`DescribedLimits`): a request
never waits for it, and until it is known only the generic bounds and the flow's own transform
arguments (``max_length``, ``precision``, ``scale``) apply.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from crmsync.engine.transforms import MAX_DIGITS, MAX_TEXT, fit_digits, shown, to_decimal
from crmsync.errors import CrmsyncError, FixTheData

log = logging.getLogger(__name__)

#: describe types holding text of at most ``length`` characters
TEXT_TYPES = frozenset(
    {
        "combobox",
        "email",
        "encryptedstring",
        "id",
        "multipicklist",
        "phone",
        "picklist",
        "reference",
        "string",
        "textarea",
        "url",
    }
)
#: describe types holding a decimal number of ``precision`` digits, ``scale`` after the point
DECIMAL_TYPES = frozenset({"currency", "double", "percent"})
#: describe types holding a whole number of at most ``digits`` digits
INTEGER_TYPES = frozenset({"int", "long"})


@dataclass(frozen=True)
class FieldLimit:
    """What one target field can hold; ``None`` where the describe sets no bound."""

    field: str
    kind: str  # "text", "decimal" or "integer"
    length: int | None = None
    precision: int | None = None
    scale: int = 0

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit this field (None when it does, or when it is null)."""
        if value is None:
            return None
        if self.kind == "text":
            if self.length and isinstance(value, str) and len(value) > self.length:
                return f"{len(value):,} characters long; {self.field} holds at most {self.length:,}"
            return None
        if isinstance(value, bool):
            return f"{value!r} is a yes/no value; {self.field} holds a number"
        try:
            number = to_decimal(value)
            if number is not None and self.precision:
                fit_digits(number, self.precision, self.scale, shown(value))
            if self.kind == "integer" and number is not None and number != number.to_integral_value():
                return f"{shown(value)} is not a whole number; {self.field} holds whole numbers"
        except FixTheData as exc:
            return exc.message
        return None


def from_describe(describe: Mapping[str, Any]) -> dict[str, FieldLimit]:
    """The limits of every field a Salesforce describe declares, by field name."""
    limits: dict[str, FieldLimit] = {}
    for f in describe.get("fields") or []:
        if not isinstance(f, Mapping) or not isinstance(f.get("name"), str):
            continue
        name, kind = f["name"], f.get("type")
        if kind in TEXT_TYPES and _positive(f.get("length")):
            limits[name] = FieldLimit(name, "text", length=int(f["length"]))
        elif kind in DECIMAL_TYPES and _positive(f.get("precision")):
            precision = min(int(f["precision"]), MAX_DIGITS)
            scale = min(int(f.get("scale") or 0), precision)
            limits[name] = FieldLimit(name, "decimal", precision=precision, scale=scale)
        elif kind in INTEGER_TYPES:
            digits = next((d for d in (f.get("digits"), f.get("precision")) if _positive(d)), None)
            limits[name] = FieldLimit(name, "integer", precision=min(digits, MAX_DIGITS) if digits else None)
    return limits


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def generic_problem(value: Any) -> str | None:
    """Why no target could hold ``value`` (text past MAX_TEXT, a number past MAX_DIGITS digits)."""
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return f"{len(value):,} characters long; at most {MAX_TEXT:,} allowed"
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        try:
            to_decimal(value)
        except FixTheData as exc:
            return exc.message
    return None


#: ``fetch(connection, object_name)``: the object's describe, or None when the connection has none
Fetch = Callable[[str, str], Mapping[str, Any] | None]


class DescribedLimits:
    """Field limits per (connection, object), from describes fetched once in the background.

    :meth:`get` never blocks: it answers what is known and asks for the rest. A failed fetch is
    tried again after ``retry_seconds``.
    """

    def __init__(self, fetch: Fetch, pool: Executor, *, retry_seconds: float = 60.0) -> None:
        self._fetch = fetch
        self._pool = pool
        self._retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], dict[str, FieldLimit]] = {}
        self._asked: dict[tuple[str, str], float] = {}
        self._done: dict[tuple[str, str], threading.Event] = {}
        self._inflight: set[tuple[str, str]] = set()

    def get(self, connection: str, object_name: str) -> Mapping[str, FieldLimit]:
        key = (connection, object_name)
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                return known
            asked = self._asked.get(key)
            if key in self._inflight or (
                asked is not None and time.monotonic() - asked < self._retry_seconds
            ):
                return {}
            self._asked[key] = time.monotonic()
            self._inflight.add(key)
            done = self._done[key] = threading.Event()
        try:
            self._pool.submit(self._load, key, done)
        except RuntimeError:  # the pool is shut down: the process is stopping
            self._finished(key, done)
        return {}

    def wait(self, connection: str, object_name: str, timeout: float) -> Mapping[str, FieldLimit]:
        """What is known once the fetch under way (or started now) ended, waiting at most ``timeout``."""
        known = self.get(connection, object_name)
        with self._lock:
            done = self._done.get((connection, object_name))
        if known or done is None or not done.wait(timeout):
            return known
        with self._lock:
            return self._known.get((connection, object_name), {})

    def _finished(self, key: tuple[str, str], done: threading.Event) -> None:
        with self._lock:
            self._inflight.discard(key)
        done.set()

    def _load(self, key: tuple[str, str], done: threading.Event) -> None:
        try:
            describe = self._fetch(*key)
            limits = from_describe(describe) if describe is not None else {}
        except CrmsyncError as exc:
            log.info("field limits of %s on %s not known yet: %s", key[1], key[0], exc)
        except Exception:  # a background thread: nobody else would see it
            log.exception("reading the field limits of %s on %s failed", key[1], key[0])
        else:
            with self._lock:
                self._known[key] = limits
        finally:
            self._finished(key, done)
