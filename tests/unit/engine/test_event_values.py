"""What an event says it set and replaced travels from its source to the target's write, mapped by
the flow's field rules like the values written, whatever the target holds when it is written."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any, cast

import pytest

from crmsync.config.models import Flow
from crmsync.connectors.base import EventMeta, Write
from crmsync.connectors.capabilities import SourceEvent
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.queue import ClaimedChange
from crmsync.engine.worker import Worker

AT = dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC)


def board(**extra: Any) -> FlowRuntime:
    """A board flow into a reporting table: the list's name mapped through a value map, the
    amount as a number, the owner's field owned by the target."""
    fields = [
        {"source": "name", "target": "name"},
        {"source": "list", "target": "list_name", "transform": "value_map",
         "args": {"map": {"Doing": "In progress", "Backlog": "Backlog"}}},
        {"source": "Amount", "target": "amount", "transform": "number"},
        {"source": "Owner", "target": "owner", "owner": "target"},
    ]  # fmt: skip
    flow = Flow.model_validate(
        {"source": "trello", "target": "reporting", "object": "card", "key": "id", "fields": fields, **extra}
    )
    return FlowRuntime("board", flow)


def told(changed: dict[str, Any] | None, previous: dict[str, Any] | None, **extra: Any) -> EventMeta:
    return EventMeta(
        at=AT, action="updateCard", delivery_id="a1", changed=changed, previous=previous, **extra
    )


def test_an_events_values_are_mapped_by_the_flows_rules_into_the_targets_names() -> None:
    flow = board()
    move = told({"idList": "l2", "list": "Doing"}, {"idList": "l1", "list": "Backlog"})
    # the list id has no rule: it is not the target's; the value map applies to both sides
    assert flow.event_values("c1", move) == ({"list_name": "In progress"}, {"list_name": "Backlog"})
    amount = told({"Amount": "1,200.50"}, {"Amount": None})
    assert flow.event_values("c1", amount) == ({"amount": 1200.5}, {"amount": None})


def test_a_creation_replaced_nothing_and_the_records_key_is_not_an_event_value() -> None:
    flow = board(fields=[{"source": "id", "target": "card_id"}, {"source": "name", "target": "name"}])
    create = told({"name": "One", "list": "Backlog"}, {})
    assert flow.event_values("c1", create) == ({"name": "One"}, {})
    # the key is mapped into every write's fields, not into what the event changed
    assert flow.to_target("c1", {"name": "One"}) == {"card_id": "c1", "name": "One"}


def test_fields_owned_by_the_target_are_left_out_unless_the_flow_maps_every_field() -> None:
    flow = board()
    meta = told({"Owner": "bob", "name": "Two"}, {"Owner": "ann", "name": "One"})
    assert flow.event_values("c1", meta) == ({"name": "Two"}, {"name": "One"})
    assert flow.event_values("c1", meta, owned=False) == (
        {"owner": "bob", "name": "Two"},
        {"owner": "ann", "name": "One"},
    )


@pytest.mark.parametrize(
    "meta",
    [
        None,
        EventMeta(at=AT, delivery_id="a1"),  # a poll, a full read: the source does not say
        told({"name": "Two"}, None),  # one side alone is not told
        told(None, {"name": "One"}),
    ],
)
def test_an_event_that_does_not_say_gives_no_values_and_its_write_stays_as_it_was(
    meta: EventMeta | None,
) -> None:
    flow = board()
    assert flow.event_values("c1", meta) is None
    write = Write("c1", "update", {"name": "Two"}, target_id="c1", meta=meta)
    assert flow.with_event_values(write) is write


def test_values_a_transform_cannot_map_alone_fall_back_to_not_told() -> None:
    flow = board()
    meta = told({"Amount": "1200"}, {"Amount": "twelve hundred"})  # refused by the number transform
    assert flow.event_values("c1", meta) is None


def test_a_transform_failing_in_a_way_nobody_foresaw_fails_the_history_values_not_the_change() -> None:
    flow = board()

    def broken(value: Any, args: Any, record: Any) -> Any:
        raise RuntimeError("nobody foresaw this")

    flow._functions["number"] = cast(Any, broken)
    meta = told({"Amount": "1200", "name": "Two"}, {"Amount": None, "name": "One"})
    write = Write("c1", "update", {"name": "Two"}, target_id="c1", meta=meta)
    assert flow.event_values("c1", meta) is None
    assert flow.with_event_values(write) is write


def test_with_event_values_keeps_the_rest_of_the_write() -> None:
    flow = board()
    meta = told({"name": "Two"}, {"name": "One"})
    write = Write("c1", "upsert", {"name": "Two"}, external_id="c1", meta=meta, maybe_applied=True)
    out = flow.with_event_values(write)
    assert (out.changed, out.previous) == ({"name": "Two"}, {"name": "One"})
    assert (out.key, out.operation, out.fields, out.external_id, out.meta, out.maybe_applied) == (
        "c1", "upsert", {"name": "Two"}, "c1", meta, True
    )  # fmt: skip


def claimed(operation: str, fields: dict[str, Any], meta: EventMeta | None) -> ClaimedChange:
    return ClaimedChange(
        change_ids=(1,),
        source="trello",
        flow="board",
        record_key="c1",
        operation=cast(Any, operation),
        fields=fields,
        attempts=0,
        created_at=AT,
        lease_owner="w",
        meta=meta,
    )


def test_the_workers_write_carries_the_events_own_values_beside_the_values_to_write() -> None:
    flow = board()
    runtime = SimpleNamespace(ledger=SimpleNamespace(target_id=lambda flow, key: "c1"))
    worker = Worker(cast(Any, runtime), owner="w")
    # a reordered delivery: its name is older than one written already, so it is not written,
    # but the event still says what it set and replaced
    late = told({"name": "Card (v2)"}, {"name": "Card"})
    write = worker._write_for(flow, claimed("upsert", {}, late))
    assert write is not None
    assert (write.operation, write.fields, write.changed, write.previous) == (
        "update", {}, {"name": "Card (v2)"}, {"name": "Card"}
    )  # fmt: skip
    gone = worker._write_for(flow, claimed("delete", {}, told({}, {})))
    assert gone is not None and (gone.operation, gone.changed, gone.previous) == ("delete", {}, {})
    polled = worker._write_for(flow, claimed("upsert", {"name": "Three"}, None))
    assert polled is not None and (polled.changed, polled.previous) == (None, None)


def test_a_source_events_fields_are_what_it_set_unless_it_says_otherwise() -> None:
    move = SourceEvent("b1", "c1", "a1", "upsert", {"list": "Doing"}, at=AT, previous={"list": "Backlog"})
    assert (move.meta().changed, move.meta().previous) == ({"list": "Doing"}, {"list": "Backlog"})
    # a member added: the card's whole set is written, the action itself set no field
    member = SourceEvent(
        "b1",
        "c1",
        "a2",
        "upsert",
        {"members": ["ann", "bob"]},
        previous={},
        changed={},
        details={"member": "bob"},
    )
    assert (member.meta().changed, member.meta().previous, member.meta().details) == (
        {},
        {},
        {"member": "bob"},
    )
    polled = SourceEvent("b1", "c1", "a3", "upsert", {"name": "x"})
    assert (polled.meta().changed, polled.meta().previous) == (None, None)


def test_event_meta_keeps_what_was_told_through_its_json_form() -> None:
    meta = EventMeta(
        at=AT,
        who="ann",
        action="updateComment",
        delivery_id="a1",
        details={"text": "new"},
        changed={},
        previous={},
        previous_details={"text": "old"},
    )
    assert EventMeta.from_dict(meta.to_dict()) == meta
    untold = EventMeta(at=AT, delivery_id="a2")
    back = EventMeta.from_dict(untold.to_dict())
    assert back == untold and back is not None and not back.tells_values
    # a change queued before these keys existed reads as not told
    assert EventMeta.from_dict({"delivery_id": "a3"}) == EventMeta(delivery_id="a3")
