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
from decimal import Decimal, InvalidOperation
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from crmsync.errors import ConfigError, FixTheData

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
        return self.function(
            value, args if args is not None else _EMPTY, record if record is not None else _EMPTY
        )

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


# ---------------------------------------------------------------- helpers


def _bad(message: str) -> FixTheData:
    return FixTheData(message)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _monday(value: Any) -> Any:
    """A Monday column value: a JSON string holding an object or list is decoded."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return json.dumps(value, sort_keys=True, default=str)


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
    if limit is not None and len(out) > int(limit):
        raise _bad(f"text is {len(out)} characters long; at most {limit} allowed")
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
    try:
        return fmt.format_map({k: ("" if v is None else v) for k, v in record.items()})
    except (ValueError, IndexError, AttributeError, KeyError) as exc:
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
    if value in table:
        return table[value]
    if value is not None and str(value) in table:
        return table[str(value)]
    if "default" in args:
        return args["default"]
    if value is None:
        return None
    raise _bad(f"value {value!r} is not in the value map; known: {', '.join(map(str, table))}")


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


def _decimal(value: Any) -> Decimal | None:
    value = _monday(value)
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise _bad(f"{value!r} is a yes/no value, not a number")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        cleaned = _NUMBER_NOISE.sub("", value.strip().strip('"'))
        try:
            number = Decimal(cleaned)
        except InvalidOperation:
            raise _bad(f"{value!r} is not a number") from None
        if number.is_finite():
            return number
    raise _bad(f"{value!r} is not a number")


@transform("number")
def number(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """A number from a number or text (thousands separators allowed); whole numbers come out as integers.

    Example: ``"1,234.50"`` → ``1234.5``; ``"3"`` → ``3``.
    """
    d = _decimal(value)
    if d is None:
        return None
    return int(d) if d == d.to_integral_value() else float(d)


@transform("integer")
def integer(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """A whole number; a fraction is refused. Example: ``"42"`` → ``42``; ``"4.5"`` → refused."""
    d = _decimal(value)
    if d is None:
        return None
    if d != d.to_integral_value():
        raise _bad(f"{value!r} is not a whole number")
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
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _bad(f"{value!r} is not a yes/no value (true/false, yes/no, 1/0, on/off)")


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
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Salesforce writes "+0000"; Python before 3.11 could not read it, normalise anyway
    text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise _bad(f"{value!r} is not an ISO date and time (e.g. 2024-05-01T10:30:00Z)") from None


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
        raise _bad(f"{value!r} is not a date")
    fmt = args.get("format")
    if fmt:
        try:
            return dt.datetime.strptime(value.strip(), str(fmt)).date().isoformat()
        except ValueError:
            raise _bad(f"{value!r} does not match the date format {fmt!r}") from None
    text = value.strip()
    if len(text) == 10:
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            raise _bad(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
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
        moment = dt.datetime.fromtimestamp(value, tz=dt.UTC)
    elif isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = _parse_datetime(value)
    else:
        raise _bad(f"{value!r} is not a date and time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC)
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
    if address.lower().startswith("mailto:"):
        address = address[7:]
    if not _EMAIL.match(address):
        raise _bad(f"{address!r} is not an e-mail address")
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
    digits = _PHONE_PUNCTUATION.sub("", raw)
    plus = digits.startswith("+")
    digits = digits.lstrip("+")
    if not plus and digits.startswith("00"):
        plus, digits = True, digits[2:]
    if not digits.isdigit():
        raise _bad(f"{raw!r} is not a phone number")
    code = str(args.get("country_code") or "").lstrip("+")
    if not plus and code:
        if not code.isdigit():
            raise _bad(f"phone: args.country_code must be digits, not {code!r}")
        plus, digits = True, code + digits.lstrip("0")
    if not 5 <= len(digits) <= 15:
        raise _bad(f"{raw!r} is not a phone number (it has {len(digits)} digits)")
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
        return None if _blank(url) else str(url)
    if _blank(value):
        return None
    url = _as_text(value).strip()
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$", url):
        raise _bad(f"{url!r} is not a URL (e.g. https://example.com)")
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
        try:
            out.append({"id": int(str(item).strip()), "kind": kind})
        except ValueError:
            raise _bad(f"people: {item!r} is not a Monday user id") from None
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
            labels = [str(x) for x in value.get("labels") or []]
        elif "chosenValues" in value:
            labels = [str(c.get("name")) for c in value.get("chosenValues") or [] if isinstance(c, Mapping)]
        else:
            raise _bad(
                "dropdown: a Monday dropdown value has 'labels' or 'chosenValues'; ids need their labels"
            )
        return sep.join(labels) or None
    labels = [str(x).strip() for x in value] if isinstance(value, list) else _as_text(value).split(sep)
    return {"labels": [x.strip() for x in labels if x.strip()]}
