"""Named field transforms: what a flow's ``transform:`` key refers to.

A transform turns one source value into one target value::

    @transform("upper")
    def upper(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
        ...

``args`` is the field mapping's ``args:`` (empty when none), ``record`` is the whole source
record (what ``template`` formats). ``None`` passes through every built-in unchanged unless it
says otherwise. Bad input raises :class:`crmsync.errors.FixTheData` with a message a person can
act on; a transform never guesses.

There is one way to register a transform: the :func:`transform` decorator. Plug-ins ship theirs
in a module named by an entry point of the ``crmsync.transforms`` group (the entry point may
name the module or one decorated function); it is imported the first time a name is looked up.

Every transform is bounded for any input: text longer than :data:`MAX_TEXT` characters, numbers
of more than :data:`MAX_DIGITS` digits before the point (or text of more than
:data:`MAX_NUMBER_TEXT` characters), NaN and infinity are refused before any costly work, so a
hostile value costs microseconds and never an exception other than ``FixTheData``.

Transforms that bridge Monday.com column values (``link``, ``people``, ``dropdown``,
``checkbox``, ``date``, ``email``, ``phone``) read Monday's value shape — a mapping or its JSON
string — and turn a plain value into Monday's shape, so one name serves both directions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from crmsync.errors import ConfigError, CrmsyncError, FixTheData

ENTRY_POINT_GROUP = "crmsync.transforms"

TransformFunction = Callable[[Any, Mapping[str, Any], Mapping[str, Any]], Any]

_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True)
class Transform:
    """A registered transform: call it as ``t(value, args, record)``."""

    name: str
    function: TransformFunction
    required_args: tuple[str, ...] = ()
    optional_args: tuple[str, ...] = ()
    doc: str = field(default="", compare=False)

    def __call__(
        self, value: Any, args: Mapping[str, Any] | None = None, record: Mapping[str, Any] | None = None
    ) -> Any:
        """The transformed value; bad input (even a plug-in's unexpected error) is :class:`FixTheData`."""
        try:
            return self.function(
                value, args if args is not None else _EMPTY, record if record is not None else _EMPTY
            )
        except CrmsyncError:
            raise
        except (ArithmeticError, LookupError, RecursionError, TypeError, ValueError) as exc:
            raise FixTheData(f"transform {self.name!r} cannot read {shown(value)}: {exc}") from exc

    @property
    def summary(self) -> str:
        """The first line of the docstring (what the docs quote)."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def check_args(self, args: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``args`` for this transform (empty when nothing)."""
        problems = [f"transform {self.name!r} needs args.{a}" for a in self.required_args if a not in args]
        known = set(self.required_args) | set(self.optional_args)
        for a in args:
            if a not in known:
                valid = ", ".join(sorted(known)) or "none"
                problems.append(f"transform {self.name!r} takes no arg {a!r}; valid: {valid}")
        return problems


_REGISTRY: dict[str, Transform] = {}
_plugins_loaded = False


def transform(
    name: str, *, required: Iterable[str] = (), optional: Iterable[str] = ()
) -> Callable[[TransformFunction], Transform]:
    """Register the decorated function under ``name``; ``required``/``optional`` name its args."""

    def decorate(function: TransformFunction) -> Transform:
        if name in _REGISTRY and _REGISTRY[name].function is not function:
            raise ConfigError(f"transform {name!r} is registered twice")
        t = Transform(name, function, tuple(required), tuple(optional), function.__doc__ or "")
        _REGISTRY[name] = t
        return t

    return decorate


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:
            raise ConfigError(f"transform plug-in {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if not isinstance(loaded, Transform | ModuleType):
            raise ConfigError(
                f"transform plug-in {ep.name!r} ({ep.value}) must name a module or a function decorated "
                "with @crmsync.engine.transforms.transform"
            )
    _plugins_loaded = True  # only once every plug-in loaded: a broken one keeps failing loudly


def names() -> list[str]:
    """Every registered transform name, sorted (plug-ins included)."""
    _load_plugins()
    return sorted(_REGISTRY)


def get(name: str) -> Transform:
    """The transform called ``name``; :class:`ConfigError` listing the valid names if unknown."""
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown transform {name!r}; valid: {', '.join(names())}") from None


# ---------------------------------------------------------------- bounds and helpers

#: the longest text any transform reads or writes (Salesforce's long text area holds 131,072)
MAX_TEXT = 131_072
#: the most digits a number may have before its decimal point (SQL's widest DECIMAL holds 38)
MAX_DIGITS = 38
#: the longest text read as a number, a date, a phone number
MAX_NUMBER_TEXT = 100
#: the longest e-mail address (RFC 5321) and URL read
MAX_EMAIL = 254
MAX_URL = 2048


def _bad(message: str) -> FixTheData:
    return FixTheData(message)


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a refusal never quotes megabytes back."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"… ({len(value):,} characters)"
    text = repr(value) if not isinstance(value, (list, dict)) else _short_json(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _short_json(value: Any) -> str:
    try:
        return json.dumps(value, default=str)[:200]
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"


def bounded_text(value: str, limit: int = MAX_TEXT, what: str = "text") -> str:
    """``value`` when at most ``limit`` characters long; :class:`FixTheData` otherwise."""
    if len(value) > limit:
        raise _bad(f"{what} is {len(value):,} characters long; at most {limit:,} allowed")
    return value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _monday(value: Any) -> Any:
    """A Monday column value: a JSON string holding an object or list is decoded."""
    if isinstance(value, str) and len(value) <= MAX_TEXT and value.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested past any real column value
            return value
    return value


def _as_text(value: Any) -> str:
    """``value`` as text of at most :data:`MAX_TEXT` characters (:class:`FixTheData` otherwise)."""
    if isinstance(value, str):
        return bounded_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > 4 * MAX_DIGITS:
            raise _bad(f"{shown(value)} is too large a number")
        return str(value)
    if isinstance(value, float | Decimal):
        if isinstance(value, Decimal) and value.is_finite() and value.adjusted() > MAX_DIGITS:
            raise _bad(f"{shown(value)} is too large a number")
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError) as exc:
        raise _bad(f"{shown(value)} cannot be written as text: {exc}") from None
    return bounded_text(text)


# ---------------------------------------------------------------- text


@transform("text", optional=("max_length",))
def text(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Any value as text: numbers as written, true/false, lists and objects as JSON.

    `args.max_length` refuses longer text. Example: ``42`` → ``"42"``.
    """
    if value is None:
        return None
    out = _as_text(value)
    limit = args.get("max_length")
    if limit is not None:
        bounded_text(out, int(limit))
    return out


@transform("lower")
def lower(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Text in lower case. Example: ``"ACME Ltd"`` → ``"acme ltd"``."""
    return None if value is None else _as_text(value).lower()


@transform("upper")
def upper(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Text in upper case. Example: ``"gb"`` → ``"GB"``."""
    return None if value is None else _as_text(value).upper()


@transform("strip")
def strip(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Text without surrounding white space; blank becomes null. Example: ``"  Ada "`` → ``"Ada"``."""
    if value is None:
        return None
    out = _as_text(value).strip()
    return out or None


@transform("constant", required=("value",))
def constant(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Always `args.value`, whatever the source holds. Example: ``args: {value: Web}`` → ``"Web"``."""
    return args["value"]


@transform("template", required=("template",))
def template(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """`args.template` formatted with the whole source record (Python ``str.format``).

    Example: ``args: {template: "{first} {last}"}`` with first Ada, last Lovelace → ``"Ada Lovelace"``.
    """
    fmt = str(args["template"])
    missing = [f for f in template_fields(fmt) if f not in record]
    if missing:
        raise _bad(f"template needs field(s) {', '.join(missing)} which the record does not have")
    values = {k: ("" if v is None else v) for k, v in record.items()}
    for name in template_fields(fmt):
        if isinstance(values[name], str | int) and not isinstance(values[name], bool):
            _as_text(values[name])  # a huge value is refused before it is formatted
    try:
        return bounded_text(fmt.format_map(values))
    except (ValueError, IndexError, AttributeError, KeyError, TypeError) as exc:
        raise _bad(f"template {fmt!r} cannot be formatted: {exc}") from exc


def template_fields(fmt: str) -> list[str]:
    """The record fields a ``str.format`` template refers to (``ValueError`` if it does not parse)."""
    out: list[str] = []
    for _, name, _, _ in string.Formatter().parse(fmt):
        if name:
            base = re.split(r"[.\[]", name, maxsplit=1)[0]
            if base and base not in out:
                out.append(base)
    return out


@transform("value_map", required=("map",), optional=("default",))
def value_map(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Look the value up in `args.map`; unmapped values take `args.default`, or are refused without one.

    Example: ``args: {map: {Working on it: Open, Done: Closed Won}}`` → ``"Done"`` → ``"Closed Won"``.
    Monday status values (``{"label": ...}``) are looked up by their label.
    """
    table = args["map"]
    if not isinstance(table, Mapping):
        raise _bad("value_map: args.map must be a mapping")
    value = _monday(value)
    if isinstance(value, Mapping):
        label = value.get("label")
        value = label.get("text") if isinstance(label, Mapping) else label
    if isinstance(value, str | int | float | bool | None) and value in table:
        return table[value]
    if isinstance(value, str | int | float) and not isinstance(value, bool) and _as_text(value) in table:
        return table[_as_text(value)]
    if "default" in args:
        return args["default"]
    if value is None:
        return None
    raise _bad(f"value {shown(value)} is not in the value map; known: {', '.join(map(str, table))}")


@transform("split_name", required=("part",))
def split_name(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """One part of a full name: `args.part` first (all but the last word) or last (the last word).

    Example: ``"Ada King Lovelace"`` → first ``"Ada King"``, last ``"Lovelace"``; ``"Cher"`` → first null,
    last ``"Cher"``.
    """
    part = args["part"]
    if part not in ("first", "last"):
        raise _bad(f"split_name: args.part must be 'first' or 'last', not {part!r}")
    if _blank(value):
        return None
    words = _as_text(value).split()
    if part == "last":
        return words[-1]
    return " ".join(words[:-1]) or None


# ---------------------------------------------------------------- numbers and truth


_NUMBER_NOISE = re.compile(r"[\s,_]")


def to_decimal(value: Any) -> Decimal | None:
    """``value`` as a finite decimal of at most :data:`MAX_DIGITS` digits before the point.

    Blank is None; anything else (text that is not a number, NaN, infinity, ``1e5000``) is
    :class:`FixTheData`. The size is checked before any conversion, so every input is cheap.
    """
    value = _monday(value)
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise _bad(f"{value!r} is a yes/no value, not a number")
    if isinstance(value, int):
        if value.bit_length() > 4 * MAX_DIGITS:  # 2**152 > 10**38: surely too large, and cheap to see
            raise _bad(f"{shown(value)} has more than {MAX_DIGITS} digits before the decimal point")
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        if len(value) > MAX_NUMBER_TEXT:
            raise _bad(f"{shown(value)} is not a number (longer than {MAX_NUMBER_TEXT} characters)")
        cleaned = _NUMBER_NOISE.sub("", value.strip().strip('"'))
        try:
            number = Decimal(cleaned)
        except InvalidOperation:
            raise _bad(f"{shown(value)} is not a number") from None
    else:
        raise _bad(f"{shown(value)} is not a number")
    if not number.is_finite():
        raise _bad(f"{shown(value)} is not a number (NaN and infinity cannot be stored)")
    if number.is_zero():
        return Decimal(0)  # 0e999999999 is zero, not a number too large
    if number.adjusted() >= MAX_DIGITS:
        raise _bad(f"{shown(value)} has more than {MAX_DIGITS} digits before the decimal point")
    return number


def fit_digits(number: Decimal, precision: int, scale: int, shown_as: str) -> Decimal:
    """``number`` rounded to ``scale`` decimals, refused past ``precision - scale`` whole digits.

    Salesforce's rule for number, currency and percent fields: ``precision`` digits in all,
    ``scale`` of them after the point; extra decimals are rounded, extra whole digits refused.
    """
    whole = precision - scale
    if not number.is_zero() and number.adjusted() >= whole:
        raise _bad(
            f"{shown_as} does not fit: at most {whole} digit(s) before the decimal point "
            f"(precision {precision}, scale {scale})"
        )
    number = number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP, context=_WIDE)
    if not number.is_zero() and number.adjusted() >= whole:  # 99.995 rounds up to 100.00
        raise _bad(
            f"{shown_as} does not fit: at most {whole} digit(s) before the decimal point "
            f"(precision {precision}, scale {scale})"
        )
    return number


#: wide enough for any number :func:`to_decimal` lets through, rounded to any scale it allows
_WIDE = Context(prec=2 * MAX_DIGITS + 2)


def _digits_args(args: Mapping[str, Any]) -> tuple[int, int] | None:
    if args.get("precision") is None:
        return None
    precision, scale = int(args["precision"]), int(args.get("scale") or 0)
    if not 0 <= scale <= precision <= MAX_DIGITS:
        raise _bad(f"args.precision and args.scale must satisfy 0 ≤ scale ≤ precision ≤ {MAX_DIGITS}")
    return precision, scale


@transform("number", optional=("precision", "scale"))
def number(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """A number from a number or text (thousands separators allowed); whole numbers come out as integers.

    Example: ``"1,234.50"`` → ``1234.5``; ``"3"`` → ``3``. With `args.precision` and `args.scale`
    (the target field's, as Salesforce declares them) extra decimals are rounded and a number with
    more whole digits than ``precision - scale`` is refused; without them, at most 38 whole digits.
    """
    d = to_decimal(value)
    if d is None:
        return None
    digits = _digits_args(args)
    if digits is not None:
        d = fit_digits(d, *digits, shown(value))
    return int(d) if d == d.to_integral_value() else float(d)


@transform("integer", optional=("precision",))
def integer(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """A whole number; a fraction is refused. Example: ``"42"`` → ``42``; ``"4.5"`` → refused.

    `args.precision` caps its digits (e.g. 9 for a Salesforce int field).
    """
    d = to_decimal(value)
    if d is None:
        return None
    if d != d.to_integral_value():
        raise _bad(f"{shown(value)} is not a whole number")
    if args.get("precision") is not None:
        d = fit_digits(d, min(int(args["precision"]), MAX_DIGITS), 0, shown(value))
    return int(d)


_TRUE = {"true", "yes", "y", "1", "on", "v", "checked", "t"}
_FALSE = {"false", "no", "n", "0", "off", "unchecked", "f", ""}


def _truth(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and len(value) <= MAX_NUMBER_TEXT:
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _bad(f"{shown(value)} is not a yes/no value (true/false, yes/no, 1/0, on/off)")


@transform("boolean")
def boolean(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """True or false from true/false, yes/no, y/n, 1/0, on/off. Example: ``"Yes"`` → ``true``."""
    return _truth(value)


@transform("checkbox")
def checkbox(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Monday checkbox ↔ true/false: ``{"checked": "true"}`` → ``true``; ``true`` → ``{"checked": "true"}``.

    Unchecking writes null (Monday's way to clear a checkbox); an empty Monday value reads as false.
    """
    value = _monday(value)
    if isinstance(value, Mapping):
        return _truth(value.get("checked", False)) is True
    return {"checked": "true"} if _truth(value) else None


# ---------------------------------------------------------------- dates


def _parse_datetime(value: str) -> dt.datetime:
    if len(value) > MAX_NUMBER_TEXT:
        raise _bad(f"{shown(value)} is not an ISO date and time (longer than {MAX_NUMBER_TEXT} characters)")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Salesforce writes "+0000"; Python before 3.11 could not read it, normalise anyway
    text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise _bad(f"{shown(value)} is not an ISO date and time (e.g. 2024-05-01T10:30:00Z)") from None


def _date_input(value: Any) -> Any:
    value = _monday(value)
    if isinstance(value, Mapping):  # Monday date column {"date": "2024-05-01", "time": "10:30:00"}
        day, time = value.get("date"), value.get("time")
        if _blank(day):
            return None
        return f"{day}T{time}+00:00" if time else str(day)
    return value


@transform("date", optional=("format", "default_days"))
def date(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """An ISO date ``YYYY-MM-DD`` from an ISO date/date-time, a Monday date, or text in `args.format`.

    Example: ``"2024-05-01T10:30:00Z"`` → ``"2024-05-01"``; ``args: {format: "%d/%m/%Y"}``, ``"01/05/2024"``
    → ``"2024-05-01"``. With ``args.default_days`` an empty value becomes today plus that many days
    (e.g. a required close date).
    """
    value = _date_input(value)
    if _blank(value):
        if args.get("default_days") is not None:
            return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=int(args["default_days"]))).isoformat()
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise _bad(f"{shown(value)} is not a date")
    if len(value) > MAX_NUMBER_TEXT:
        raise _bad(f"{shown(value)} is not a date (longer than {MAX_NUMBER_TEXT} characters)")
    fmt = args.get("format")
    if fmt:
        try:
            return dt.datetime.strptime(value.strip(), str(fmt)).date().isoformat()
        except ValueError:
            raise _bad(f"{shown(value)} does not match the date format {fmt!r}") from None
    text = value.strip()
    if len(text) == 10:
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            raise _bad(f"{shown(value)} is not an ISO date (YYYY-MM-DD)") from None
    return _parse_datetime(text).date().isoformat()


@transform("datetime", optional=("format",))
def datetime(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """A date-time in UTC: ISO in; ISO out, or Salesforce's form with `args.format: salesforce`.

    Example: ``"2024-05-01T12:30:00+02:00"`` → ``"2024-05-01T10:30:00+00:00"``, or with
    ``format: salesforce`` → ``"2024-05-01T10:30:00.000+0000"``. Times without an offset are taken as UTC;
    a number is seconds since 1970.
    """
    style = args.get("format", "iso")
    if style not in ("iso", "salesforce"):
        raise _bad(f"datetime: args.format must be 'iso' or 'salesforce', not {style!r}")
    value = _date_input(value)
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise _bad(f"{value!r} is not a date and time")
    if isinstance(value, int | float):
        try:
            moment = dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise _bad(f"{shown(value)} is not a time: seconds since 1970 between years 1 and 9999") from None
    elif isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = _parse_datetime(value)
    else:
        raise _bad(f"{shown(value)} is not a date and time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        moment = moment.astimezone(dt.UTC)
    except OverflowError:
        raise _bad(f"{shown(value)} is out of range once in UTC") from None
    if style == "salesforce":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"
    return moment.isoformat()


# ---------------------------------------------------------------- contact details

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


@transform("email")
def email(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """A checked e-mail address, trimmed, domain in lower case; reads Monday's ``{"email": ...}``.

    Example: ``" Ada@Example.COM "`` → ``"Ada@example.com"``; ``"ada@"`` → refused.
    """
    value = _monday(value)
    if isinstance(value, Mapping):
        value = value.get("email")
    if _blank(value):
        return None
    address = _as_text(value).strip()
    if len(address) > MAX_EMAIL + 7:
        raise _bad(f"{shown(address)} is not an e-mail address (at most {MAX_EMAIL} characters)")
    if address.lower().startswith("mailto:"):
        address = address[7:]
    if not _EMAIL.match(address):
        raise _bad(f"{shown(address)} is not an e-mail address")
    local, domain = address.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


_PHONE_PUNCTUATION = re.compile(r"[\s\-().\u00a0/]")


@transform("phone", optional=("country_code",))
def phone(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """A phone number without punctuation, in international ``+`` form when known.

    Reads Monday's ``{"phone": ...}``. ``00`` becomes ``+``; with `args.country_code` (e.g. ``44``)
    a national number loses its leading 0 and gains ``+44``.
    Example: ``"(0)20 7946-0018"`` with country_code 44 → ``"+442079460018"``.
    """
    value = _monday(value)
    if isinstance(value, Mapping):
        value = value.get("phone")
    if _blank(value):
        return None
    raw = _as_text(value).strip()
    if len(raw) > MAX_NUMBER_TEXT:
        raise _bad(f"{shown(raw)} is not a phone number (longer than {MAX_NUMBER_TEXT} characters)")
    digits = _PHONE_PUNCTUATION.sub("", raw)
    plus = digits.startswith("+")
    digits = digits.lstrip("+")
    if not plus and digits.startswith("00"):
        plus, digits = True, digits[2:]
    if not digits.isdigit():
        raise _bad(f"{shown(raw)} is not a phone number")
    code = str(args.get("country_code") or "").lstrip("+")
    if not plus and code:
        if not code.isdigit():
            raise _bad(f"phone: args.country_code must be digits, not {code!r}")
        plus, digits = True, code + digits.lstrip("0")
    if not 5 <= len(digits) <= 15:
        raise _bad(f"{shown(raw)} is not a phone number (it has {len(digits)} digits)")
    return ("+" if plus else "") + digits


# ---------------------------------------------------------------- Monday column shapes


@transform("link", optional=("text",))
def link(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Monday link ↔ URL: ``{"url": u, "text": t}`` → ``u``; ``u`` → ``{"url": u, "text": args.text or u}``.

    Example: ``"https://acme.example"`` → ``{"url": "https://acme.example", "text": "https://acme.example"}``.
    """
    value = _monday(value)
    if isinstance(value, Mapping):
        url = value.get("url")
        return None if _blank(url) else bounded_text(_as_text(url), MAX_URL, "the URL")
    if _blank(value):
        return None
    url = bounded_text(_as_text(value).strip(), MAX_URL, "the URL")
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$", url):
        raise _bad(f"{shown(url)} is not a URL (e.g. https://example.com)")
    return {"url": url, "text": str(args.get("text") or url)}


@transform("people", optional=("emails", "kind"))
def people(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Monday people → list of user ids (or e-mails with `args.emails`: id → e-mail); ids → Monday people.

    Example: ``{"personsAndTeams": [{"id": 7, "kind": "person"}]}`` → ``["7"]``; ``[7]`` →
    ``{"personsAndTeams": [{"id": 7, "kind": "person"}]}``. Teams are left out unless `args.kind` is ``team``.
    """
    kind = args.get("kind", "person")
    value = _monday(value)
    if value is None:
        return None
    if isinstance(value, Mapping):
        entries = value.get("personsAndTeams") or []
        if not isinstance(entries, list):
            raise _bad(f"people: personsAndTeams must be a list, not {shown(entries)}")
        ids = [
            str(e.get("id")) for e in entries if isinstance(e, Mapping) and e.get("kind", "person") == kind
        ]
        emails = args.get("emails")
        if emails is None:
            return ids
        table = {str(k): v for k, v in emails.items()}
        unknown = [i for i in ids if i not in table]
        if unknown:
            raise _bad(f"people: no e-mail known for user id(s) {', '.join(unknown)}")
        return [table[i] for i in ids]
    items = value if isinstance(value, list) else [p for p in re.split(r"[,;]", _as_text(value)) if p.strip()]
    out = []
    for item in items:
        text = _as_text(item).strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 20):
            raise _bad(f"people: {shown(item)} is not a Monday user id")
        out.append({"id": int(text), "kind": kind})
    return {"personsAndTeams": out}


@transform("dropdown", optional=("separator",))
def dropdown(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Labels ↔ Monday dropdown: ``{"labels": [...]}`` → ``"A;B"``; ``"A;B"`` or a list → Monday's shape.

    `args.separator` (default ``;``, Salesforce's multi-select picklist) joins and splits the labels.
    Example: ``"Web;Mobile"`` → ``{"labels": ["Web", "Mobile"]}``.
    """
    sep = str(args.get("separator", ";"))
    value = _monday(value)
    if value is None:
        return None
    if isinstance(value, Mapping):
        if "labels" in value:
            labels = [_as_text(x) for x in _list(value.get("labels"), "labels")]
        elif "chosenValues" in value:
            chosen = _list(value.get("chosenValues"), "chosenValues")
            labels = [_as_text(c.get("name")) for c in chosen if isinstance(c, Mapping)]
        else:
            raise _bad(
                "dropdown: a Monday dropdown value has 'labels' or 'chosenValues'; ids need their labels"
            )
        return bounded_text(sep.join(labels)) or None
    labels = [_as_text(x).strip() for x in value] if isinstance(value, list) else _as_text(value).split(sep)
    return {"labels": [x.strip() for x in labels if x.strip()]}


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"dropdown: {name} must be a list, not {shown(value)}")
    return value
