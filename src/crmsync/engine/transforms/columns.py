"""Contact details and Monday column shapes: ``email``, ``phone``, ``link``, ``people``, ``dropdown``.

Each reads Monday's value shape — a mapping or its JSON string — and the plain value; ``link``,
``people`` and ``dropdown`` also turn a plain value into Monday's shape, so one name serves both
directions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from crmsync.engine.transforms.registry import transform
from crmsync.engine.transforms.values import (
    MAX_EMAIL,
    MAX_NUMBER_TEXT,
    MAX_URL,
    _as_text,
    _bad,
    _blank,
    _monday,
    bounded_text,
    shown,
)

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
