"""Cards as records: board metadata, field names, custom-field values and the create marker.

A card record's ``fields`` hold Trello's own card fields (``name desc idList pos due start
dueComplete closed idMembers idLabels idBoard dateLastActivity shortLink url``), three readable
names (``list``: the list's name, ``labels``: label names, ``members``: usernames) and one entry
per custom field **set** on the card, keyed by the field's name, decoded to a plain value:

==========  ==========================  =========================================
type        read as                     written from
==========  ==========================  =========================================
text        str                         any value (its text)
number      int or float                a number, or text holding one
date        ISO text (``...000Z``)      ISO text, ``datetime`` or ``date``
checkbox    bool                        bool, or ``"true"``/``"false"`` (key ``checked``)
list        the option's text           the option's text or id (``idValue``)
==========  ==========================  =========================================

``None`` clears a custom field (``{"value": ""}`` / ``{"idValue": ""}``).

A card crmsync creates carries a **marker**, the last line of its description
(``crmsync:<connection>:<key>``), so that a create whose answer was lost is found by reading the
board's cards by id before it is sent again (Trello has no idempotency key, and its search is not
read-after-write consistent). Reads strip the marker from ``desc``; writes of ``desc`` keep it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crmsync.connectors.base import Record

#: card fields written as they are
PLAIN_FIELDS = (
    "name",
    "desc",
    "idList",
    "pos",
    "due",
    "start",
    "dueComplete",
    "closed",
    "idMembers",
    "idLabels",
)
#: card fields read into a record
READ_FIELDS = (*PLAIN_FIELDS, "idBoard", "dateLastActivity", "shortLink", "url")
#: readable names written in place of ids
LIST, LABELS, MEMBERS = "list", "labels", "members"
#: the fields a card read asks for
CARD_QUERY = ",".join(("id", *READ_FIELDS))
CUSTOM_TYPES = ("text", "number", "date", "checkbox", "list")

_MARKER = re.compile(r"(?:\n\n|\n|^)crmsync:[^\s:]+:[^\n]*$")


@dataclass
class BoardInfo:
    """What a board's cards refer to by id: lists, labels, members and custom field definitions."""

    id: str
    name: str = ""
    lists: dict[str, str] = field(default_factory=dict)  # id -> name
    labels: dict[str, str] = field(default_factory=dict)  # id -> name
    members: dict[str, str] = field(default_factory=dict)  # id -> username
    custom_fields: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> definition

    @classmethod
    def from_board(cls, board: Mapping[str, Any]) -> BoardInfo:
        return cls(
            id=str(board["id"]),
            name=str(board.get("name") or ""),
            lists={str(x["id"]): str(x.get("name") or "") for x in board.get("lists") or []},
            labels={str(x["id"]): str(x.get("name") or "") for x in board.get("labels") or []},
            members={str(x["id"]): str(x.get("username") or "") for x in board.get("members") or []},
            custom_fields={str(x["id"]): dict(x) for x in board.get("customFields") or []},
        )

    def _find(self, table: Mapping[str, str], value: Any, what: str) -> str:
        text = str(value)
        if text in table:
            return text
        found = [ident for ident, name in table.items() if name == text]
        if len(found) != 1:
            known = ", ".join(sorted(set(table.values()))) or "none"
            problem = "no" if not found else f"{len(found)}"
            raise ValueError(
                f"{problem} {what} named {text!r} on board {self.name or self.id} (known: {known})"
            )
        return found[0]

    def list_id(self, value: Any) -> str:
        return self._find(self.lists, value, "list")

    def label_ids(self, values: Iterable[Any]) -> list[str]:
        return [self._find(self.labels, v, "label") for v in values]

    def member_ids(self, values: Iterable[Any]) -> list[str]:
        return [self._find(self.members, v, "member") for v in values]

    def custom_field(self, name: str) -> dict[str, Any] | None:
        """The definition named (or with the id) ``name``."""
        if name in self.custom_fields:
            return self.custom_fields[name]
        found = [d for d in self.custom_fields.values() if d.get("name") == name]
        return found[0] if len(found) == 1 else None

    def option_text(self, definition: Mapping[str, Any], option_id: Any) -> str | None:
        for option in definition.get("options") or []:
            if option.get("id") == option_id:
                return str((option.get("value") or {}).get("text"))
        return None


# -- the marker ------------------------------------------------------------------------------------
def marker(connection: str, key: str) -> str:
    """The marker line of the card created for record ``key`` through ``connection``."""
    safe = " ".join(str(key).split())
    return f"crmsync:{connection}:{safe}"


def strip_marker(desc: str | None) -> str:
    return _MARKER.sub("", desc or "")


def marker_of(desc: str | None) -> str | None:
    found = _MARKER.search(desc or "")
    return found.group().strip() if found else None


def with_marker(desc: Any, line: str) -> str:
    text = strip_marker(None if desc is None else str(desc))
    return f"{text}\n\n{line}" if text else line


# -- custom field values ---------------------------------------------------------------------------
def decode_item(definition: Mapping[str, Any], item: Mapping[str, Any], info: BoardInfo) -> Any:
    """The plain value of one custom field item (see the table of this module)."""
    kind = definition.get("type")
    if kind == "list":
        return info.option_text(definition, item.get("idValue")) or item.get("idValue")
    value = item.get("value") or {}
    if kind == "number":
        number = float(str(value.get("number")))
        return int(number) if number.is_integer() else number
    if kind == "checkbox":
        return str(value.get("checked")).lower() == "true"
    if kind == "date":
        return value.get("date")
    return value.get("text")


def encode_item(definition: Mapping[str, Any], value: Any) -> dict[str, Any]:
    """The ``customFieldItems`` entry setting (or, for ``None``, clearing) one field."""
    ident = str(definition["id"])
    kind = definition.get("type")
    if kind == "list":
        if value is None or value == "":
            return {"idCustomField": ident, "idValue": ""}
        for option in definition.get("options") or []:
            if value in (option.get("id"), (option.get("value") or {}).get("text")):
                return {"idCustomField": ident, "idValue": str(option["id"])}
        known = ", ".join(str((o.get("value") or {}).get("text")) for o in definition.get("options") or [])
        raise ValueError(f"{value!r} is not an option of {definition.get('name')!r} (options: {known})")
    if value is None:
        return {"idCustomField": ident, "value": ""}
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError(f"{definition.get('name')!r} takes a number, not {value!r}")
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{definition.get('name')!r} takes a finite number, not {value!r}")
        text = str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)
        return {"idCustomField": ident, "value": {"number": text}}
    if kind == "checkbox":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"{definition.get('name')!r} is a checkbox: true or false, not {value!r}")
        return {"idCustomField": ident, "value": {"checked": "true" if value else "false"}}
    if kind == "date":
        return {"idCustomField": ident, "value": {"date": iso_date(value)}}
    return {"idCustomField": ident, "value": {"text": str(value)}}


def iso_date(value: Any) -> str:
    """Trello's date form (``2018-03-13T16:00:00.000Z``) of a datetime, a date or ISO text."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    else:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- records ---------------------------------------------------------------------------------------
def card_record(card: Mapping[str, Any], info: BoardInfo) -> Record:
    """A card as a record (see the module's docstring for its fields)."""
    fields: dict[str, Any] = {name: card.get(name) for name in READ_FIELDS if name in card}
    fields["desc"] = strip_marker(card.get("desc"))
    fields[LIST] = info.lists.get(str(card.get("idList")))
    fields[LABELS] = sorted(info.labels.get(i, i) for i in card.get("idLabels") or [])
    fields[MEMBERS] = sorted(info.members.get(i, i) for i in card.get("idMembers") or [])
    for item in card.get("customFieldItems") or []:
        definition = info.custom_fields.get(str(item.get("idCustomField")))
        if definition is not None:
            fields[str(definition.get("name"))] = decode_item(definition, item, info)
    return Record(
        object_name="Card",
        id=str(card["id"]),
        fields=fields,
        modified=card.get("dateLastActivity"),
        deleted=False,
    )


def split_fields(fields: Mapping[str, Any], info: BoardInfo) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A write's fields as the card parameters and the ``customFieldItems`` entries.

    Raises ValueError for a name that is neither a card field nor a custom field of the board, or
    a value a field cannot take."""
    params: dict[str, Any] = {}
    items: list[dict[str, Any]] = []
    for name, value in fields.items():
        if name in PLAIN_FIELDS:
            params[name] = value
        elif name == LIST:
            params["idList"] = info.list_id(value)
        elif name == LABELS:
            params["idLabels"] = info.label_ids(value or [])
        elif name == MEMBERS:
            params["idMembers"] = info.member_ids(value or [])
        else:
            definition = info.custom_field(name)
            if definition is None:
                raise ValueError(f"{name!r} is neither a card field nor a custom field of the board")
            items.append(encode_item(definition, value))
    for name in ("due", "start"):
        if params.get(name) is not None:
            params[name] = iso_date(params[name])
    for name in ("idMembers", "idLabels"):
        if name in params:
            params[name] = ",".join(str(v) for v in params[name] or [])
    return params, items
