"""The example queries of docs/reporting.md, run as written on each database, against data written
through the connector; and the snapshot table's one-row-set-per-day rule."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crmsync.connectors.base import EventMeta, Write
from crmsync.connectors.sql import (
    ColumnSpec,
    Event,
    ObjectSpec,
    SnapshotRow,
    SqlConnector,
)
from crmsync.connectors.stamps import parse_stamp

Make = Callable[..., SqlConnector]
DOC = Path(__file__).resolve().parents[4] / "docs" / "reporting.md"
DIALECTS = ("postgresql", "mysql", "sqlite")
HEADER = re.compile(r"^-- (?P<name>[a-z ]+) \((?P<dialects>[a-z, ]+)\)$")

CARD = ObjectSpec("card", (ColumnSpec("name", "text", 100), ColumnSpec("list_name", "text", 100)), "trello")
OPPORTUNITY = ObjectSpec(
    "opportunity",
    (ColumnSpec("stage", "text", 40), ColumnSpec("amount", "number"), ColumnSpec("owner", "text", 80)),
    "salesforce",
)


def documented_queries() -> dict[tuple[str, str], str]:
    """(query name, dialect) → SQL, from the ```sql blocks of docs/reporting.md."""
    found: dict[tuple[str, str], str] = {}
    for block in re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S):
        first, _, sql = block.partition("\n")
        header = HEADER.match(first)
        assert header, f"a query in {DOC.name} has no '-- name (dialects)' line: {first!r}"
        for dialect in header["dialects"].split(","):
            found[(header["name"], dialect.strip())] = sql
    return found


QUERIES = documented_queries()


def test_every_documented_query_exists_for_every_database() -> None:
    names = {name for name, _ in QUERIES}
    assert names == {"cards per list per week", "time in each list", "win rate", "workload trend"}
    assert {(n, d) for n in names for d in DIALECTS} == set(QUERIES)


def run(connector: SqlConnector, name: str) -> list[tuple[Any, ...]]:
    sql = QUERIES[(name, connector.settings.backend)].replace("crm_", connector.settings.table_prefix)
    with connector.engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql)]


def move(n: int, card: str, when: str, **fields: Any) -> Write:
    kind = "deleteCard" if not fields else "updateCard"
    meta = EventMeta(at=parse_stamp(when), who="ann", action=kind, delivery_id=f"a{n}")
    return Write(f"k{n}", "delete" if not fields else "upsert", fields, external_id=card, meta=meta)


@pytest.fixture
def board(make_connector: Make) -> SqlConnector:
    """Three cards moving across lists over two weeks (weeks of Monday 3 and Monday 10 March)."""
    connector = make_connector([CARD, OPPORTUNITY])
    writes = [
        move(1, "c1", "2025-03-03T09:00:00Z", name="ACME quote", list_name="Requests"),
        move(2, "c1", "2025-03-04T09:00:00Z", list_name="Doing"),  # 24 h in Requests
        move(3, "c2", "2025-03-05T12:00:00Z", name="Globex demo", list_name="Requests"),
        move(4, "c1", "2025-03-06T21:00:00Z", list_name="Done"),  # 60 h in Doing
        move(5, "c2", "2025-03-10T12:00:00Z", list_name="Doing"),  # 120 h in Requests
        move(6, "c3", "2025-03-10T08:00:00Z", name="Initech renewal", list_name="Requests"),
        move(7, "c3", "2025-03-10T14:00:00Z", list_name="Done"),  # 6 h in Requests
        move(8, "c2", "2025-03-11T10:00:00Z", name="Globex demo (v2)"),
        move(9, "c3", "2025-03-11T11:00:00Z"),  # deleted
    ]
    assert all(r.ok for r in connector.write_batch("card", writes))
    comment = Event("card", "c1", "commentCard", "2025-03-05T10:00:00Z", "bob", new_values={"text": "hi"})
    assert connector.append_events([comment]) == 1
    opportunities = [
        ("o1", "ann", "Closed Won", 1000),
        ("o2", "ann", "Closed Lost", 500),
        ("o3", "ann", "Closed Won", 250.5),
        ("o4", "bob", "Closed Lost", 800),
        ("o5", "bob", "Prospecting", 300),
        ("o6", "bob", "Closed Won", 900),
    ]
    writes = [
        Write(oid, "upsert", {"owner": owner, "stage": stage, "amount": amount}, external_id=oid)
        for oid, owner, stage, amount in opportunities
    ]
    writes.append(Write("o6", "delete", target_id="o6"))
    assert all(r.ok for r in connector.write_batch("opportunity", writes))
    return connector


def test_cards_per_list_per_week(board: SqlConnector) -> None:
    rows = [
        (str(week)[:10], list_name, cards) for week, list_name, cards in run(board, "cards per list per week")
    ]
    assert rows == [
        ("2025-03-03", "Doing", 1),
        ("2025-03-03", "Done", 1),
        ("2025-03-03", "Requests", 2),
        ("2025-03-10", "Doing", 1),
        ("2025-03-10", "Done", 1),
        ("2025-03-10", "Requests", 1),
    ]


def test_time_in_each_list(board: SqlConnector) -> None:
    rows = [(name, stays, float(hours)) for name, stays, hours in run(board, "time in each list")]
    assert rows == [("Doing", 1, 60.0), ("Requests", 3, 50.0)]


def test_win_rate(board: SqlConnector) -> None:
    rows = [
        (owner, won, lost, float(rate), float(amount))
        for owner, won, lost, rate, amount in run(board, "win rate")
    ]
    assert rows == [("ann", 2, 1, 66.7, 1250.5), ("bob", 0, 1, 0.0, 0.0)]


def test_the_snapshot_of_a_day_is_replaced_by_a_rerun(make_connector: Make) -> None:
    connector = make_connector()
    monday, tuesday = dt.date(2025, 3, 3), dt.date(2025, 3, 4)
    assert (
        connector.write_snapshot(
            monday, [SnapshotRow("Doing", "ann", "OK", 3), SnapshotRow("Done", None, None, 5)]
        )
        == 2
    )
    connector.write_snapshot(tuesday, [SnapshotRow("Doing", "ann", "Due", 2)])
    connector.write_snapshot(monday, [SnapshotRow("Doing", "bob", "OK", 7)], board="ops")
    # the same day again (the job ran twice, the board changed meanwhile): replaced, never added
    rerun = [
        SnapshotRow("Doing", "ann", "OK", 3),
        SnapshotRow("Doing", "ann", "OK", 1),
        SnapshotRow("Requests", "ann", "Overdue", 2),
    ]
    assert connector.write_snapshot(monday, rerun) == 2  # equal keys are summed
    snapshot = connector.snapshot_table
    with connector.engine.connect() as conn:
        rows = conn.execute(
            sa.select(snapshot.c.snapshot_date, snapshot.c.board, snapshot.c.list_name, snapshot.c.member,
                      snapshot.c.status, snapshot.c.card_count).order_by(snapshot.c.id)
        ).all()  # fmt: skip
    assert sorted(tuple(r) for r in rows) == [
        (monday, "", "Doing", "ann", "OK", 4),
        (monday, "", "Requests", "ann", "Overdue", 2),
        (monday, "ops", "Doing", "bob", "OK", 7),
        (tuesday, "", "Doing", "ann", "Due", 2),
    ]
    assert [(str(d)[:10], name, int(n)) for d, name, n in run(connector, "workload trend")] == [
        ("2025-03-03", "Doing", 11),
        ("2025-03-03", "Requests", 2),
        ("2025-03-04", "Doing", 2),
    ]
    connector.write_snapshot(tuesday, [])
    with connector.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).where(snapshot.c.snapshot_date == tuesday)).scalar()
    assert left == 0
