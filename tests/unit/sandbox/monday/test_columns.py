"""Column types: write validation, stored form and the four read views."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crmsync.sandbox.monday import columns as cols
from crmsync.sandbox.monday.errors import MondayError
from crmsync.sandbox.monday.seeds import LEAD_STATUSES, status_settings
from crmsync.sandbox.monday.store import Column, Item, User

NOW = "2026-10-27T10:00:00.000Z"


class Lookup:
    def __init__(self) -> None:
        self.users = {1: User(1, "Ada Lovelace", "ada@x"), 9: User(9, "Sales", "s@x", kind="team")}
        self.items = {100: Item(100, 7, "topics", "Linked lead", 1, 1.0)}

    def user(self, user_id: int) -> User | None:
        return self.users.get(user_id)

    def item(self, item_id: int) -> Item | None:
        return self.items.get(item_id)


LOOKUP = Lookup()


def write(column: Column, raw: Any, create: bool = False) -> dict[str, Any] | None:
    return cols.parse_write(column, raw, lookup=LOOKUP, create_labels=create, changed_at=NOW)


def status() -> Column:
    return Column("status", "Status", "status", status_settings(LEAD_STATUSES))


@pytest.mark.parametrize(
    ("column", "raw", "text", "value"),
    [
        (status(), {"label": "Qualified"}, "Qualified", {"index": 1, "post_id": None, "changed_at": NOW}),
        (status(), {"index": 7}, "MOU", {"index": 7, "post_id": None, "changed_at": NOW}),
        (status(), "Lost", "Lost", {"index": 2, "post_id": None, "changed_at": NOW}),
        (Column("t", "T", "text"), "plain", "plain", "plain"),
        (Column("l", "L", "long_text"), {"text": "a\nb"}, "a\nb", {"text": "a\nb", "changed_at": NOW}),
        (Column("n", "N", "numbers"), 42, "42", "42"),
        (Column("n", "N", "numbers"), "-3.5", "-3.5", "-3.5"),
        (
            Column("d", "D", "date"),
            {"date": "2026-01-15"},
            "2026-01-15",
            {"date": "2026-01-15", "time": None, "changed_at": NOW},
        ),
        (
            Column("d", "D", "date"),
            "2026-01-15 08:30:00",
            "2026-01-15 08:30",
            {"date": "2026-01-15", "time": "08:30:00", "changed_at": NOW},
        ),
        (
            Column("p", "P", "people"),
            {"personsAndTeams": [{"id": 1, "kind": "person"}, {"id": 9, "kind": "team"}]},
            "Ada Lovelace, Sales",
            {"personsAndTeams": [{"id": 1, "kind": "person"}, {"id": 9, "kind": "team"}], "changed_at": NOW},
        ),
        (
            Column("e", "E", "email"),
            "a@b.example Ann",
            "a@b.example",
            {"email": "a@b.example", "text": "Ann", "changed_at": NOW},
        ),
        (
            Column("ph", "Ph", "phone"),
            {"phone": "+15551234567", "countryShortName": "us"},
            "+15551234567",
            {"phone": "+15551234567", "countryShortName": "US", "changed_at": NOW},
        ),
        (
            Column("li", "Li", "link"),
            {"url": "https://x.example", "text": "X"},
            "X - https://x.example",
            {"url": "https://x.example", "text": "X", "changed_at": NOW},
        ),
        (
            Column("dd", "Dd", "dropdown", {"labels": [{"id": 1, "name": "A"}, {"id": 2, "name": "B"}]}),
            "B,A",
            "B, A",
            {"ids": [2, 1], "changed_at": NOW},
        ),
        (Column("c", "C", "checkbox"), {"checked": True}, "v", {"checked": "true", "changed_at": NOW}),
    ],
)
def test_writes_and_reads(column: Column, raw: Any, text: str, value: Any) -> None:
    stored = write(column, raw)
    assert cols.text_of(column, stored, LOOKUP) == text
    api = cols.api_value(column, stored)
    assert api is not None and json.loads(api) == value


@pytest.mark.parametrize("raw", [None, "", {}, []])
def test_empty_values_clear(raw: Any) -> None:
    column = status()
    assert write(column, raw) is None
    assert cols.text_of(column, None, LOOKUP) == "" and cols.api_value(column, None) is None


def test_checkbox_false_and_empty_shapes_clear() -> None:
    assert write(Column("c", "C", "checkbox"), {"checked": "false"}) is None
    assert write(Column("r", "R", "board_relation"), {"item_ids": []}) is None
    assert write(Column("d", "D", "date"), {"date": ""}) is None


def test_board_relation_value_is_null_since_2025_04() -> None:
    column = Column("r", "R", "board_relation")
    stored = write(column, {"item_ids": [100, "100"]})
    assert stored is not None and stored["item_ids"] == [100]
    assert cols.api_value(column, stored) is None
    assert json.loads(cols.api_value(column, stored, legacy_relations=True) or "") == {
        "linkedPulseIds": [{"linkedPulseId": 100}]
    }
    assert cols.typed_fields(column, stored, LOOKUP)["linked_item_ids"] == [100]
    assert cols.text_of(column, stored, LOOKUP) == "Linked lead"


def test_unknown_status_label_is_created_only_when_asked() -> None:
    column = status()
    with pytest.raises(MondayError) as caught:
        write(column, {"label": "Won"})
    assert caught.value.extensions["error_data"]["column_type"] == "color"
    stored = write(column, {"label": "Won"}, create=True)
    assert stored is not None and column.settings["labels"][str(stored["index"])] == "Won"
    assert stored["index"] not in (5, *LEAD_STATUSES)


def test_dropdown_labels_created_when_asked() -> None:
    column = Column("dd", "Dd", "dropdown", {"labels": [{"id": 1, "name": "A"}]})
    with pytest.raises(MondayError):
        write(column, {"labels": ["Z"]})
    assert write(column, {"labels": ["Z"]}, create=True) == {"ids": [2], "changed_at": NOW}


@pytest.mark.parametrize(
    ("column", "raw", "internal"),
    [
        (Column("n", "N", "numbers"), "NaN", "numeric"),
        (Column("n", "N", "numbers"), True, "numeric"),
        (Column("d", "D", "date"), "15/01/2026", "date"),
        (Column("p", "P", "people"), {"personsAndTeams": [{"id": 9, "kind": "person"}]}, "multiple-person"),
        (Column("p", "P", "people"), "abc", "multiple-person"),
        (Column("e", "E", "email"), {"email": "nope"}, "email"),
        (Column("ph", "Ph", "phone"), {"phone": "+1555", "countryShortName": "USA"}, "phone"),
        (Column("li", "Li", "link"), {"url": "has space"}, "link"),
        (Column("c", "C", "checkbox"), "true", "boolean"),
        (Column("r", "R", "board_relation"), {"item_ids": [5]}, "board-relation"),
        (Column("r", "R", "board_relation", {"boardIds": [8]}), {"item_ids": [100]}, "board-relation"),
        (Column("l", "L", "long_text"), 5, "long-text"),
    ],
)
def test_bad_values(column: Column, raw: Any, internal: str) -> None:
    with pytest.raises(MondayError) as caught:
        write(column, raw)
    assert caught.value.code == "ColumnValueException"
    assert caught.value.extensions["error_data"] == {"column_value": json.dumps(raw), "column_type": internal}


def test_read_only_types_are_refused() -> None:
    with pytest.raises(MondayError, match="cannot be changed"):
        write(Column("f", "F", "formula"), "1+1")


def test_webhook_values() -> None:
    column = status()
    stored = write(column, "Qualified")
    assert cols.webhook_value(column, stored, LOOKUP) == {
        "label": {
            "index": 1,
            "text": "Qualified",
            "style": {"color": "#00c875", "border": "#00b461", "var_name": "green-shadow"},
            "is_done": True,
        },
        "post_id": None,
    }
    text = Column("t", "T", "text")
    assert cols.webhook_value(text, write(text, "x"), LOOKUP) == {"value": "x"}
    dropdown = Column("dd", "Dd", "dropdown", {"labels": [{"id": 1, "name": "A"}]})
    assert cols.webhook_value(dropdown, write(dropdown, "A"), LOOKUP) == {
        "chosenValues": [{"id": 1, "name": "A"}]
    }
    assert cols.webhook_value(text, None, LOOKUP) is None
    assert cols.internal_type(Column("p", "P", "people")) == "multiple-person"
