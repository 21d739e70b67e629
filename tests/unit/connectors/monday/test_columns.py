"""The column codec: a plain value written, read back through the API and through a webhook, is the
same plain value (checked against the emulator's own column types)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from crmsync.connectors.monday import columns as codec
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.monday import columns as sandbox_columns


@pytest.fixture(scope="module")
def emu() -> MondayEmulator:
    emulator = MondayEmulator()
    emulator.seed("demo")
    return emulator


# (board, column id, plain value written, plain value read back)
ROUND_TRIPS: list[tuple[str, str, Any, Any]] = [
    ("Leads", "status", "Qualified", "Qualified"),
    ("Leads", "text", "Acme Corp", "Acme Corp"),
    ("Leads", "numbers", 42, 42),
    ("Leads", "numbers", 4.5, 4.5),
    ("Leads", "numbers", Decimal("12000"), 12000),
    ("Leads", "date4", "2025-02-05", "2025-02-05"),
    (
        "Leads",
        "date4",
        dt.datetime(2025, 2, 5, 11, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "2025-02-05T10:30:00Z",
    ),
    ("Leads", "person", [58_000_002, 58_000_003], [58_000_002, 58_000_003]),
    ("Leads", "email", "kim@lee.example", "kim@lee.example"),
    ("Leads", "phone", "+15551234567", "+15551234567"),
    ("Leads", "link", "https://lee.example", "https://lee.example"),
    ("Deals", "dropdown", ["Ads", "Support"], ["Ads", "Support"]),
    ("Deals", "checkbox", True, True),
    ("Deals", "long_text", "Line one\nline two", "Line one\nline two"),
]


@pytest.mark.parametrize(
    ("board_name", "column_id", "written", "read"), ROUND_TRIPS, ids=lambda v: str(v)[:20]
)
def test_written_then_read_through_the_api_and_a_webhook(
    emu: MondayEmulator, board_name: str, column_id: str, written: Any, read: Any
) -> None:
    board = emu.board_id(board_name)
    column = emu.ops.board(int(board)).column(column_id)
    assert column is not None
    item_id = emu.ui_create_item(board, "Codec", values={column_id: codec.encode(column.type, written)})
    view = emu.item(item_id)
    api_column = {
        "id": column_id,
        "type": column.type,
        "text": view["columns"][column_id],
        "value": view["values"][column_id],
    }
    if column.type == "dropdown":  # the connector selects the labels through the typed fragment
        api_column["values"] = [{"label": label} for label in read]
    assert codec.decode_column_value(api_column) == read
    stored = emu.store.items[int(item_id)].values[column_id]
    hook_value = sandbox_columns.webhook_value(column, stored, emu.ops)
    internal = sandbox_columns.internal_type(column)
    assert codec.decode(internal, hook_value) == read  # update_column_value names its type
    assert codec.decode(codec.infer_type(hook_value), hook_value) == read  # create_pulse does not


def test_board_relations_read_the_linked_ids(emu: MondayEmulator) -> None:
    deals = emu.board_id("Deals")
    leads = [i["id"] for i in emu.items(emu.board_id("Leads"))][:2]
    item_id = emu.ui_create_item(
        deals, "Linked", values={"board_relation_mkr1": codec.encode("board_relation", leads)}
    )
    column = {
        "id": "board_relation_mkr1",
        "type": "board_relation",
        "text": "",
        "value": None,
        "linked_item_ids": leads,
    }
    assert codec.decode_column_value(column) == [int(i) for i in leads]
    stored = emu.store.items[int(item_id)].values["board_relation_mkr1"]
    relation = emu.ops.board(int(deals)).column("board_relation_mkr1")
    assert relation is not None
    hook = sandbox_columns.webhook_value(relation, stored, emu.ops)
    assert codec.decode("board-relation", hook) == [int(i) for i in leads]


@pytest.mark.parametrize(
    ("column_type", "expected"),
    [
        ("status", None),
        ("text", None),
        ("numbers", None),
        ("people", []),
        ("dropdown", []),
        ("checkbox", False),
    ],
)
def test_empty_columns(column_type: str, expected: Any) -> None:
    assert codec.decode(column_type, None, "") == expected
    assert codec.decode(column_type, {}) == expected


def test_clearing_and_passing_monday_shapes_through() -> None:
    assert codec.encode("status", None) is None
    assert codec.encode("text", "") is None
    assert codec.encode("board_relation", []) == {"item_ids": []}
    assert codec.encode("checkbox", False) is None
    assert codec.encode("status", {"index": 1}) == {"index": 1}
    assert codec.encode("color", 3) == {"index": 3}
    assert codec.encode("people", {"id": 9, "kind": "team"}) == {"id": 9, "kind": "team"}
    assert codec.encode("people", [{"id": 9, "kind": "team"}]) == {
        "personsAndTeams": [{"id": 9, "kind": "team"}]
    }


def test_internal_type_names_and_unknown_types() -> None:
    assert codec.api_type("color") == "status" and codec.api_type("multiple-person") == "people"
    assert codec.api_type(None) == "text"
    assert codec.decode("formula", None, "=42") == "=42"
    assert codec.decode("timeline", '{"from":"2025-01-01","to":"2025-01-31"}', "2025-01-01 - 2025-01-31") == (
        "2025-01-01 - 2025-01-31"
    )
