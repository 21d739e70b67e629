"""Changes carrying their source's event travel with it and stay whole, on every store database."""

from __future__ import annotations

import datetime as dt

from crmsync.connectors.base import EventMeta
from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.store import Store


def event(n: int, **fields: object) -> NewChange:
    meta = EventMeta(
        at=dt.datetime(2026, 1, 1, 9, n, tzinfo=dt.UTC),
        who="ann",
        action="updateCard",
        delivery_id=f"a{n}",
        details={"text": f"comment {n}"},
    )
    return NewChange("board", "f", "card1", "upsert", fields, delivery_id=f"a{n}:f", meta=meta)


def test_an_event_keeps_its_metadata_and_is_claimed_on_its_own(store: Store) -> None:
    queue = ChangeQueue(store)
    queue.enqueue([event(1, name="One"), event(2, name="Two"), event(3)])
    queue.enqueue([NewChange("board", "f", "card2", "upsert", {"name": "x"})])
    queue.enqueue([NewChange("board", "f", "card2", "upsert", {"due": "y"})])
    seen = []
    while claimed := queue.claim("w", 10):
        for change in claimed:
            seen.append((change.record_key, dict(change.fields), change.meta))
        queue.complete(claimed)
    cards = [(key, fields, meta.delivery_id if meta else None) for key, fields, meta in seen]
    assert cards == [
        ("card1", {"name": "One"}, "a1"),
        ("card2", {"name": "x", "due": "y"}, None),  # changes without an event still fold
        ("card1", {"name": "Two"}, "a2"),
        ("card1", {}, "a3"),
    ]
    first = seen[0][2]
    assert first == EventMeta(
        at=dt.datetime(2026, 1, 1, 9, 1, tzinfo=dt.UTC),
        who="ann",
        action="updateCard",
        delivery_id="a1",
        details={"text": "comment 1"},
    )


def test_what_an_event_set_and_replaced_travels_with_it(store: Store) -> None:
    queue = ChangeQueue(store)
    told = EventMeta(
        at=dt.datetime(2026, 1, 1, 9, 5, tzinfo=dt.UTC),
        action="updateCard",
        delivery_id="a5",
        changed={"list": "Done", "due": None},
        previous={"list": "Doing", "due": "2026-02-01T09:00:00.000Z"},
        previous_details={"member": "ann"},
    )
    created = EventMeta(delivery_id="a6", action="createCard", changed={"name": "New"}, previous={})
    queue.enqueue(
        [NewChange("board", "f", "card1", "upsert", {"list": "Done"}, delivery_id="a5:f", meta=told)]
    )
    queue.enqueue(
        [NewChange("board", "f", "card2", "upsert", {"name": "New"}, delivery_id="a6:f", meta=created)]
    )
    queue.enqueue([event(7, name="Seven")])  # its source said nothing of what it replaced
    metas: dict[str | None, EventMeta] = {}
    while claimed := queue.claim("w", 10):
        metas |= {c.meta.delivery_id: c.meta for c in claimed if c.meta is not None}
        queue.complete(claimed)
    assert metas["a5"] == told and metas["a6"] == created
    assert metas["a6"].previous == {}  # a creation: told, and it replaced nothing
    assert (metas["a7"].changed, metas["a7"].previous) == (None, None)
