"""Writes land in the current-state table and the history table exactly, once, on every database."""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from crmsync.connectors.base import EventMeta, Write, WriteResult
from crmsync.connectors.sql import ColumnSpec, Event, ObjectSpec, SqlConnector
from crmsync.errors import FixTheData

Make = Callable[..., SqlConnector]

CARD = ObjectSpec(
    "card",
    (
        ColumnSpec("name", "text", 40),
        ColumnSpec("list_name", "text", 100),
        ColumnSpec("due", "datetime"),
        ColumnSpec("members", "json"),
        ColumnSpec("labels", "json"),
        ColumnSpec("closed", "boolean"),
        ColumnSpec("stage", "text", 40),
        ColumnSpec("amount", "number"),
    ),
    source_system="trello",
)
T = dt.datetime(2025, 3, 3, 9, 0)  # naive UTC, as the tables hold it


def at(n: int) -> dt.datetime:
    return T + dt.timedelta(minutes=n)


def dump(connector: SqlConnector, table: sa.Table, order: str) -> list[dict[str, Any]]:
    with connector.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).order_by(table.c[order])).mappings()]


def action(n: int, kind: str, card: str, who: str, **fields: Any) -> Write:
    operation = "delete" if kind == "deleteCard" else "upsert"
    meta = EventMeta(at=at(n).replace(tzinfo=dt.UTC), who=who, action=kind, delivery_id=f"a{n:02}")
    return Write(f"k{n}", operation, fields, external_id=card, meta=meta)


#: 30 board actions of every kind (comments, 7 and 18, change no card: they are events only)
ACTIONS: dict[int, Write | Event] = {
    1: action(1, "createCard", "c1", "ann", name="Quote ACME", list_name="Requests"),
    2: action(2, "createCard", "c2", "bob", name="Demo Globex", list_name="Requests"),
    3: action(3, "updateCard", "c1", "ann", list_name="Doing"),
    4: action(4, "addMemberToCard", "c1", "ann", members=["ann"]),
    5: action(5, "updateCard", "c1", "ann", due="2025-03-10T17:00:00Z"),
    6: action(6, "addLabelToCard", "c2", "bob", labels=["urgent"]),
    7: Event(
        "card", "c1", "commentCard", at(7), "carl", new_values={"text": "Called them"}, delivery_id="a07"
    ),
    8: action(8, "createCard", "c3", "carl", name="Renewal Initech", list_name="Requests"),
    9: action(9, "updateCard", "c2", "bob", name="Demo Globex (v2)"),
    10: action(10, "updateCard", "c2", "bob", list_name="Doing"),
    11: action(11, "updateCustomFieldItem", "c1", "ann", stage="Proposal"),
    12: action(12, "addMemberToCard", "c1", "bob", members=["ann", "bob"]),
    13: action(13, "removeMemberFromCard", "c1", "bob", members=["ann"]),
    14: action(14, "updateCard", "c1", "ann", list_name="Done"),
    15: action(15, "updateCard", "c3", "carl", closed=True),
    16: action(16, "createCard", "c4", "dan", name="Upsell Umbrella", list_name="Requests", amount=1200),
    17: action(17, "updateCustomFieldItem", "c4", "dan", amount="1500.50"),
    18: Event(
        "card", "c2", "commentCard", at(18), "bob", new_values={"text": "Demo booked"}, delivery_id="a18"
    ),
    19: action(19, "deleteCard", "c3", "carl"),
    20: action(20, "updateCard", "c4", "dan", list_name="Doing"),
    21: action(21, "updateCard", "c4", "dan", list_name="Doing"),  # a position change: nothing mapped moved
    22: action(22, "removeLabelFromCard", "c2", "bob", labels=[]),
    23: action(23, "updateCard", "c1", "ann", due=None),
    24: action(24, "createCard", "c5", "eve", name="Quote Hooli", list_name="Requests"),
    25: action(25, "updateCard", "c5", "eve", list_name="Done"),
    26: action(26, "updateCustomFieldItem", "c5", "eve", stage="Closed Won"),
    27: action(27, "updateCard", "c2", "bob", closed=False),
    28: action(28, "addChecklistToCard", "c4", "dan"),
    29: action(29, "updateCard", "c5", "eve", name="Quote Hooli Inc"),
    30: action(30, "deleteCard", "c5", "eve"),
}

#: (action, card, who, old values, new values) of each of the 30 events, in order
HISTORY = [
    ("createCard", "c1", "ann", {}, {"name": "Quote ACME", "list_name": "Requests"}),
    ("createCard", "c2", "bob", {}, {"name": "Demo Globex", "list_name": "Requests"}),
    ("updateCard", "c1", "ann", {"list_name": "Requests"}, {"list_name": "Doing"}),
    ("addMemberToCard", "c1", "ann", {"members": None}, {"members": ["ann"]}),
    ("updateCard", "c1", "ann", {"due": None}, {"due": "2025-03-10T17:00:00+00:00"}),
    ("addLabelToCard", "c2", "bob", {"labels": None}, {"labels": ["urgent"]}),
    ("commentCard", "c1", "carl", {}, {"text": "Called them"}),
    ("createCard", "c3", "carl", {}, {"name": "Renewal Initech", "list_name": "Requests"}),
    ("updateCard", "c2", "bob", {"name": "Demo Globex"}, {"name": "Demo Globex (v2)"}),
    ("updateCard", "c2", "bob", {"list_name": "Requests"}, {"list_name": "Doing"}),
    ("updateCustomFieldItem", "c1", "ann", {"stage": None}, {"stage": "Proposal"}),
    ("addMemberToCard", "c1", "bob", {"members": ["ann"]}, {"members": ["ann", "bob"]}),
    ("removeMemberFromCard", "c1", "bob", {"members": ["ann", "bob"]}, {"members": ["ann"]}),
    ("updateCard", "c1", "ann", {"list_name": "Doing"}, {"list_name": "Done"}),
    ("updateCard", "c3", "carl", {"closed": None}, {"closed": True}),
    ("createCard", "c4", "dan", {}, {"name": "Upsell Umbrella", "list_name": "Requests", "amount": 1200}),
    ("updateCustomFieldItem", "c4", "dan", {"amount": 1200}, {"amount": 1500.5}),
    ("commentCard", "c2", "bob", {}, {"text": "Demo booked"}),
    ("deleteCard", "c3", "carl", {"deleted_at": None}, {"deleted_at": "2025-03-03T09:19:00+00:00"}),
    ("updateCard", "c4", "dan", {"list_name": "Requests"}, {"list_name": "Doing"}),
    ("updateCard", "c4", "dan", {}, {}),
    ("removeLabelFromCard", "c2", "bob", {"labels": ["urgent"]}, {"labels": []}),
    ("updateCard", "c1", "ann", {"due": "2025-03-10T17:00:00+00:00"}, {"due": None}),
    ("createCard", "c5", "eve", {}, {"name": "Quote Hooli", "list_name": "Requests"}),
    ("updateCard", "c5", "eve", {"list_name": "Requests"}, {"list_name": "Done"}),
    ("updateCustomFieldItem", "c5", "eve", {"stage": None}, {"stage": "Closed Won"}),
    ("updateCard", "c2", "bob", {"closed": None}, {"closed": False}),
    ("addChecklistToCard", "c4", "dan", {}, {}),
    ("updateCard", "c5", "eve", {"name": "Quote Hooli"}, {"name": "Quote Hooli Inc"}),
    ("deleteCard", "c5", "eve", {"deleted_at": None}, {"deleted_at": "2025-03-03T09:30:00+00:00"}),
]

EMPTY = dict.fromkeys(c.name for c in CARD.columns)
#: the cards after the 30 actions
CURRENT = [
    {**EMPTY, "source_id": "c1", "name": "Quote ACME", "list_name": "Done", "members": ["ann"],
     "stage": "Proposal", "updated_at": at(23), "deleted_at": None},
    {**EMPTY, "source_id": "c2", "name": "Demo Globex (v2)", "list_name": "Doing", "labels": [],
     "closed": False, "updated_at": at(27), "deleted_at": None},
    {**EMPTY, "source_id": "c3", "name": "Renewal Initech", "list_name": "Requests", "closed": True,
     "updated_at": at(19), "deleted_at": at(19)},
    {**EMPTY, "source_id": "c4", "name": "Upsell Umbrella", "list_name": "Doing", "amount": 1500.5,
     "updated_at": at(20), "deleted_at": None},
    {**EMPTY, "source_id": "c5", "name": "Quote Hooli Inc", "list_name": "Done", "stage": "Closed Won",
     "updated_at": at(30), "deleted_at": at(30)},
]  # fmt: skip


def apply(connector: SqlConnector, numbers: Sequence[int]) -> list[WriteResult]:
    """Send actions ``numbers`` as the worker would: runs of writes as one batch, events alone."""
    results: list[WriteResult] = []
    run: list[Write] = []
    for n in numbers:
        item = ACTIONS[n]
        if isinstance(item, Write):
            run.append(item)
            continue
        if run:
            results += connector.write_batch("card", run)
            run = []
        connector.append_events([item])
    if run:
        results += connector.write_batch("card", run)
    return results


def test_thirty_board_actions_leave_current_and_history_tables_exact(make_connector: Make) -> None:
    connector = make_connector([CARD])
    for numbers in (range(1, 8), range(8, 16), range(16, 23), range(23, 31)):
        results = apply(connector, numbers)
        assert all(r.ok for r in results), results
    # duplicated deliveries, in batches cut differently, change nothing
    apply(connector, range(3, 11))
    apply(connector, [30, 29, 25, 7, 18, 1])

    rows = dump(connector, connector.table("card"), "source_id")
    assert [{k: v for k, v in r.items() if k != "source_system"} for r in rows] == CURRENT
    assert {r["source_system"] for r in rows} == {"trello"}
    events = dump(connector, connector.events_table, "id")
    assert [
        (e["action"], e["source_id"], e["who"], e["old_values"], e["new_values"]) for e in events
    ] == HISTORY
    assert [e["at"] for e in events] == [at(n) for n in range(1, 31)]
    assert [e["delivery_id"] for e in events] == [f"a{n:02}" for n in range(1, 31)]
    assert {e["object_name"] for e in events} == {"card"}


def test_the_same_writes_applied_twice_change_nothing(make_connector: Make) -> None:
    connector = make_connector([CARD])
    batch = [
        Write("k1", "create", {"name": "One", "list_name": "Requests"}),  # no delivery id
        Write("k2", "upsert", {"name": "Two", "amount": "10"}, external_id="c2"),
        Write("k3", "update", {"stage": "Won"}, target_id="c3", meta=EventMeta(delivery_id="d3")),
        Write("k4", "delete", target_id="c2"),
    ]
    first = connector.write_batch("card", batch)
    assert [(r.ok, r.target_id, r.created) for r in first] == [
        (True, "k1", True),
        (True, "c2", True),
        (True, "c3", True),
        (True, "c2", False),
    ]
    card, events = (
        dump(connector, connector.table("card"), "source_id"),
        dump(connector, connector.events_table, "id"),
    )
    assert len(events) == 4
    second = connector.write_batch("card", batch)
    assert [(r.ok, r.target_id, r.created) for r in second] == [
        (True, "k1", False),
        (True, "c2", False),  # upserted again (it was deleted: it exists again), then deleted again
        (True, "c3", False),
        (True, "c2", False),
    ]
    again = dump(connector, connector.table("card"), "source_id")
    assert [r["source_id"] for r in again] == ["c2", "c3", "k1"]
    assert again[2] == card[2] and again[1] == card[1]  # k1 and c3 untouched
    assert again[0]["deleted_at"] is not None
    assert len(dump(connector, connector.events_table, "id")) == 4 + 2  # c2's second life, told
    third = connector.write_batch("card", batch[:3])
    assert all(r.ok and r.created is False for r in third)
    assert connector.write_batch("card", batch[:1] + batch[2:3])[0].ok
    assert len(dump(connector, connector.events_table, "id")) == 6 + 1  # c2 written again only


def test_one_refused_record_fails_alone(make_connector: Make) -> None:
    connector = make_connector([CARD])
    results = connector.write_batch(
        "card",
        [
            Write("k1", "upsert", {"name": "Fine"}, external_id="c1", meta=EventMeta(delivery_id="d1")),
            Write("k2", "upsert", {"name": "N" * 41}, external_id="c2", meta=EventMeta(delivery_id="d2")),
            Write("k3", "upsert", {"amount": "twelve"}, external_id="c3"),
            Write("k4", "upsert", {"name": "Also fine"}, external_id="c4", meta=EventMeta(delivery_id="d4")),
        ],
    )
    assert [r.ok for r in results] == [True, False, False, True]
    assert isinstance(results[1].error, FixTheData) and "too long" in str(results[1].error).lower()
    assert isinstance(results[2].error, FixTheData) and "'twelve' is not a number" in str(results[2].error)
    assert [r["source_id"] for r in dump(connector, connector.table("card"), "source_id")] == ["c1", "c4"]
    assert [e["delivery_id"] for e in dump(connector, connector.events_table, "id")] == ["d1", "d4"]


def test_records_are_read_by_id_and_scanned(make_connector: Make) -> None:
    connector = make_connector([CARD])
    connector.write_batch(
        "card",
        [
            Write(
                "k1",
                "upsert",
                {"name": "One", "due": "2025-03-10T17:00:00+02:00"},
                external_id="c1",
                meta=EventMeta(at=at(1).replace(tzinfo=dt.UTC)),
            ),
            Write(
                "k2",
                "upsert",
                {"name": "Two", "closed": "true"},
                external_id="c2",
                meta=EventMeta(at=at(2).replace(tzinfo=dt.UTC)),
            ),
            Write(
                "k3",
                "upsert",
                {"name": "Three"},
                external_id="c3",
                meta=EventMeta(at=at(3).replace(tzinfo=dt.UTC)),
            ),
        ],
    )
    connector.write_batch(
        "card", [Write("k3", "delete", target_id="c3", meta=EventMeta(at=at(4).replace(tzinfo=dt.UTC)))]
    )
    read = {r.id: r for r in connector.read_records("card", ["c1", "c3", "nope"])}
    assert set(read) == {"c1", "c3"}
    assert read["c1"].fields["due"] == dt.datetime(2025, 3, 10, 15, 0) and not read["c1"].deleted
    assert read["c1"].modified == "2025-03-03T09:01:00+00:00"
    assert read["c3"].deleted and read["c3"].fields["name"] == "Three"
    assert [r.id for r in connector.scan("card")] == ["c1", "c2", "c3"]
    assert [r.id for r in connector.scan("card", since="2025-03-03T09:02:00Z")] == ["c2", "c3"]
    assert next(iter(connector.read_records("card", ["c2"]))).fields["closed"] is True


def test_concurrent_deliveries_of_the_same_changes_land_once(make_connector: Make) -> None:
    connectors = [make_connector([CARD]) for _ in range(3)]
    connectors[0].prepare()
    batch = [
        action(n, "createCard", f"c{n}", "ann", name=f"Card {n}", list_name="Requests") for n in range(1, 21)
    ]
    barrier = threading.Barrier(len(connectors))
    outcomes: list[list[WriteResult]] = []

    def deliver(connector: SqlConnector) -> None:
        barrier.wait()
        outcomes.append(connector.write_batch("card", batch))

    threads = [threading.Thread(target=deliver, args=(c,)) for c in connectors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 3 and all(r.ok for results in outcomes for r in results), outcomes
    assert len(dump(connectors[0], connectors[0].table("card"), "source_id")) == 20
    events = dump(connectors[0], connectors[0].events_table, "id")
    assert sorted(e["delivery_id"] for e in events) == [f"a{n:02}" for n in range(1, 21)]


def told(n: int, kind: str, card: str, before: dict[str, Any], after: dict[str, Any], **extra: Any) -> Write:
    """A board action whose event says what it set and replaced (``changed`` / ``previous``)."""
    operation = "delete" if kind == "deleteCard" else "upsert"
    meta = EventMeta(
        at=at(n).replace(tzinfo=dt.UTC),
        who="ann",
        action=kind,
        delivery_id=f"t{n:02}",
        details=extra.get("details", {}),
        changed=after,
        previous=before,
        previous_details=extra.get("previous_details", {}),
    )
    fields = {} if operation == "delete" else extra.get("fields", after)
    return Write(f"k{n}", operation, fields, external_id=card, meta=meta, changed=after, previous=before)


#: actions whose events tell their own values, and the (old_values, new_values) each records
TOLD: list[tuple[Write, tuple[dict[str, Any], dict[str, Any]]]] = [
    (told(1, "createCard", "c1", {}, {"name": "One", "list_name": "Requests"}),
     ({}, {"name": "One", "list_name": "Requests"})),
    (told(2, "updateCard", "c1", {"list_name": "Requests"}, {"list_name": "Doing"}),
     ({"list_name": "Requests"}, {"list_name": "Doing"})),
    (told(3, "updateCard", "c1", {"name": "One"}, {"name": "One (v2)"}),
     ({"name": "One"}, {"name": "One (v2)"})),
    (told(4, "updateCard", "c1", {"name": "One (v2)"}, {"name": "One (v3)"}),
     ({"name": "One (v2)"}, {"name": "One (v3)"})),
    # the card's whole set is written; the history says which member the action added or removed
    (told(5, "addMemberToCard", "c1", {}, {}, fields={"members": ["ann"]}, details={"member": "ann"}),
     ({}, {"member": "ann"})),
    (told(6, "removeMemberFromCard", "c1", {}, {}, fields={"members": []},
          previous_details={"member": "ann"}),
     ({"member": "ann"}, {})),
    (told(7, "updateCard", "c1", {"due": None}, {"due": "2025-03-10T17:00:00Z"}),
     ({"due": None}, {"due": "2025-03-10T17:00:00+00:00"})),
    (told(8, "updateCustomFieldItem", "c1", {"amount": None}, {"amount": "1200"}),
     ({"amount": None}, {"amount": 1200})),
    (told(9, "commentCard", "c1", {}, {}, fields={}, details={"text": "Called them"}),
     ({}, {"text": "Called them"})),
    (told(10, "deleteCard", "c1", {}, {}),
     ({"deleted_at": None}, {"deleted_at": "2025-03-03T09:10:00+00:00"})),
]  # fmt: skip


def history_of(connector: SqlConnector) -> list[tuple[str | None, Any, Any]]:
    events = dump(connector, connector.events_table, "id")
    return sorted((e["delivery_id"], e["old_values"], e["new_values"]) for e in events)


def test_events_telling_their_own_values_record_them_in_any_order(make_connector: Make) -> None:
    expected = sorted((f"t{n:02}", old, new) for n, (_, (old, new)) in enumerate(TOLD, 1))
    in_order = make_connector([CARD])
    for write, _ in TOLD:
        assert all(r.ok for r in in_order.write_batch("card", [write]))
    assert history_of(in_order) == expected

    # reordered, duplicated and batched differently: the newer name and the deletion land first,
    # the creation last — the same rows, none computed against what the card held by then
    shuffled = make_connector([CARD], table_prefix=f"s{secrets.token_hex(3)}_")
    writes = [w for w, _ in TOLD]
    for batch in (
        [writes[3], writes[9]],
        [writes[2], writes[6], writes[3]],
        writes[4:9],
        writes[:2],
        writes[1:3],
    ):
        assert all(r.ok for r in shuffled.write_batch("card", batch))
    assert history_of(shuffled) == expected
    # the current-state row took the writes as they came, the creation's name last (the engine
    # drops a value older than one already received before it gets here)
    [card] = dump(shuffled, shuffled.table("card"), "source_id")
    assert card["name"] == "One"


def test_writes_not_telling_their_values_record_the_row_before_and_after(make_connector: Make) -> None:
    connector = make_connector([CARD])
    meta = EventMeta(delivery_id="p1", at=at(1).replace(tzinfo=dt.UTC))
    connector.write_batch("card", [Write("k1", "upsert", {"name": "One"}, external_id="c1", meta=meta)])
    late = EventMeta(delivery_id="p2", at=at(2).replace(tzinfo=dt.UTC))
    connector.write_batch("card", [Write("k2", "upsert", {"name": "Two"}, external_id="c1", meta=late)])
    # told only one side: not told
    half = EventMeta(delivery_id="p3", at=at(3).replace(tzinfo=dt.UTC), changed={"name": "Three"})
    connector.write_batch(
        "card",
        [Write("k3", "upsert", {"name": "Three"}, external_id="c1", meta=half, changed={"name": "Three"})],
    )
    assert history_of(connector) == [
        ("p1", {}, {"name": "One"}),
        ("p2", {"name": "One"}, {"name": "Two"}),
        ("p3", {"name": "Two"}, {"name": "Three"}),
    ]
