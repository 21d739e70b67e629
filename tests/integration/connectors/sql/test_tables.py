"""Reporting tables are created and migrated by crmsync: additive changes applied, destructive refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from crmsync.connectors.base import Write
from crmsync.connectors.sql import ColumnSpec, ObjectSpec, SchemaRefused, SqlConnector
from crmsync.connectors.sql.tables import kind_of

Make = Callable[..., SqlConnector]

CARD = ObjectSpec(
    "card",
    (
        ColumnSpec("name", "text", 80),
        ColumnSpec("description", "text"),
        ColumnSpec("amount", "number"),
        ColumnSpec("position", "integer"),
        ColumnSpec("closed", "boolean"),
        ColumnSpec("close_date", "date"),
        ColumnSpec("due", "datetime"),
        ColumnSpec("labels", "json"),
    ),
    source_system="trello",
)


def columns(connector: SqlConnector, table: str) -> dict[str, tuple[str, int | None]]:
    with connector.engine.connect() as conn:
        found = sa.inspect(conn).get_columns(table)
    return {c["name"]: kind_of(c["type"]) for c in found}


def tables(connector: SqlConnector) -> set[str]:
    prefix = connector.settings.table_prefix
    with connector.engine.connect() as conn:
        return {t for t in sa.inspect(conn).get_table_names() if t.startswith(prefix)}


def test_tables_are_created_with_typed_columns(make_connector: Make) -> None:
    connector = make_connector([CARD])
    p = connector.settings.table_prefix
    plan = connector.prepare()
    assert {str(c) for c in plan.changes} == {
        f"create table {p}card",
        f"create table {p}events",
        f"create table {p}workload_snapshot",
    }
    assert tables(connector) == {f"{p}card", f"{p}events", f"{p}workload_snapshot"}
    card = columns(connector, f"{p}card")
    assert list(card) == [
        "source_id", "source_system", "name", "description", "amount", "position", "closed",
        "close_date", "due", "labels", "updated_at", "deleted_at",
    ]  # fmt: skip
    wanted = {
        "source_id": ("text", 255),
        "name": ("text", 80),
        "description": ("text", None),
        "amount": ("number", None),
        "position": ("integer", None),
        "closed": ("boolean", None),
        "close_date": ("date", None),
        "due": ("datetime", None),
        "updated_at": ("datetime", None),
    }
    assert {k: card[k] for k in wanted} == wanted
    assert card["labels"] in (("json", None), ("text", None))  # MariaDB keeps JSON as LONGTEXT
    assert set(columns(connector, f"{p}events")) == {
        "id", "at", "who", "action", "object_name", "source_id", "old_values", "new_values",
        "delivery_id", "recorded_at",
    }  # fmt: skip
    assert set(columns(connector, f"{p}workload_snapshot")) == {
        "id", "snapshot_date", "board", "list_name", "member", "status", "card_count", "taken_at",
    }  # fmt: skip
    assert connector.plan().changes == [] and connector.prepare().changes == []  # nothing more to do


def _card(*extra: ColumnSpec, without: str | None = None, **changed: ColumnSpec) -> ObjectSpec:
    kept = [changed.get(c.name, c) for c in CARD.columns if c.name != without]
    return ObjectSpec("card", (*kept, *extra), "trello")


def test_additive_changes_are_applied_and_keep_the_data(make_connector: Make) -> None:
    first = make_connector([CARD])
    [done] = first.write_batch("card", [Write("c1", "upsert", {"name": "Quote"}, external_id="c1")])
    assert done.ok
    p = first.settings.table_prefix
    wider = _card(ColumnSpec("stage", "text", 40), name=ColumnSpec("name", "text", 200))
    second = make_connector([wider, ObjectSpec("opportunity", (ColumnSpec("stage", "text", 40),))])
    assert {str(c) for c in second.plan().changes} == {
        f"add column {p}card.stage (text(40))",
        f"widen column {p}card.name (text(80) → text(200))",
        f"create table {p}opportunity",
    }
    second.prepare()
    long_name = "N" * 150
    results = second.write_batch("card", [Write("c2", "upsert", {"name": long_name, "stage": "Won"})])
    assert all(r.ok for r in results), results
    read = {r.id: r.fields for r in second.read_records("card", ["c1", "c2"])}
    assert read["c1"]["name"] == "Quote" and read["c1"]["stage"] is None
    assert read["c2"]["name"] == long_name and read["c2"]["stage"] == "Won"
    assert columns(second, f"{p}card")["name"] == ("text", 200)
    unbounded = make_connector([_card(ColumnSpec("stage", "text", 40), name=ColumnSpec("name", "text"))])
    unbounded.prepare()
    assert columns(unbounded, f"{p}card")["name"] == ("text", None)
    assert unbounded.plan().changes == []


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        (
            _card(without="amount"),
            "column amount (number) is no longer mapped; crmsync never drops a column",
        ),
        (
            _card(name=ColumnSpec("name", "text", 40)),
            "column name: the database has text(80), the mapping now wants text(40); crmsync never narrows",
        ),
        (
            _card(amount=ColumnSpec("amount", "text", 20)),
            "column amount: the database has number, the mapping now wants text(20); "
            "crmsync never changes a column's type",
        ),
        (
            _card(closed=ColumnSpec("closed", "date")),
            "column closed: the database has boolean, the mapping now wants date",
        ),
    ],
    ids=["dropped", "narrowed", "retyped", "boolean-to-date"],
)
def test_destructive_changes_are_refused_and_nothing_changes(
    make_connector: Make, spec: ObjectSpec, said: str
) -> None:
    first = make_connector([CARD])
    first.prepare()
    p = first.settings.table_prefix
    before = columns(first, f"{p}card")
    # an additive change in the same plan is not applied either: all or nothing
    second = make_connector([spec, ObjectSpec("opportunity", (ColumnSpec("stage", "text", 40),))])
    with pytest.raises(SchemaRefused) as refused:
        second.prepare()
    [problem] = refused.value.problems
    assert problem.startswith(f"table {p}card, column ") and said in problem, problem
    assert "yourself" in problem  # says what to do
    assert columns(first, f"{p}card") == before
    assert f"{p}opportunity" not in tables(first)
    with pytest.raises(SchemaRefused):
        second.write_batch("card", [Write("c1", "upsert", {"name": "x"})])


def test_column_types_in_the_settings_override_the_describe(make_connector: Make) -> None:
    connector = make_connector([CARD], column_types={"card": {"amount": "text", "position": "number"}})
    connector.prepare()
    found = columns(connector, f"{connector.settings.table_prefix}card")
    assert found["amount"] == ("text", None) and found["position"] == ("number", None)
