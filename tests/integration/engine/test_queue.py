"""The change queue's contract, on SQLite, PostgreSQL and MariaDB (see the ``store`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from crmsync.connectors.base import EventMeta
from crmsync.engine.queue import ChangeQueue, ClaimedChange, NewChange
from crmsync.errors import FixTheData, RetryLater
from crmsync.store import Store
from crmsync.store.schema import changes

from .conftest import Clock


def up(
    key: str, delivery: str | None = None, flow: str = "f", source: str = "app", **fields: object
) -> NewChange:
    return NewChange(source, flow, key, "upsert", fields, delivery)


def rm(key: str, flow: str = "f") -> NewChange:
    return NewChange("app", flow, key, "delete", {})


def keys(claimed: list[ClaimedChange]) -> list[str]:
    return [c.record_key for c in claimed]


def states(store: Store) -> dict[int, str]:
    with store.read() as conn:
        return {r.id: r.state for r in conn.execute(sa.select(changes.c.id, changes.c.state))}


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_deduplicates_by_source_and_delivery_id(queue: ChangeQueue) -> None:
    first = queue.enqueue([up("r1", "d1", a=1), up("r2", "d2"), up("r3", None), up("r4", None)])
    assert (first.accepted, first.duplicates) == (4, 0)
    again = queue.enqueue(
        [up("r1", "d1", a=2), up("r5", "d1", source="other"), up("r6", "d3"), up("r7", "d3")]
    )
    assert (again.accepted, again.duplicates) == (2, 2)  # d1 again; d3 twice in one batch
    claimed = queue.claim("w", 100)
    assert sorted(keys(claimed)) == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert next(c for c in claimed if c.record_key == "r1").fields == {"a": 1}


def test_enqueue_in_the_callers_transaction_is_rolled_back_with_it(store: Store, queue: ChangeQueue) -> None:
    with pytest.raises(RuntimeError), store.begin() as conn:
        assert queue.enqueue([up("r1", "d1")], conn=conn).accepted == 1
        raise RuntimeError("the caller fails after enqueueing")
    assert queue.claim("w") == []
    assert queue.enqueue([up("r1", "d1")]).accepted == 1


def test_a_large_batch_is_inserted_in_one_statement(store: Store, queue: ChangeQueue) -> None:
    inserts: list[int] = []

    def count(
        conn: object, cursor: object, statement: str, params: object, context: object, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CHANGES"):
            inserts.append(len(params) if many and isinstance(params, list) else 1)  # type: ignore[arg-type]

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        result = queue.enqueue([up(f"r{i}", f"d{i}", n=i) for i in range(1000)])
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    assert result.accepted == 1000
    assert len(inserts) <= 2, inserts  # one executemany (or multi-row VALUES), not 1,000 round trips
    assert queue.stats().pending == 1000


def test_enqueue_rejects_an_unknown_operation(queue: ChangeQueue) -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        queue.enqueue([NewChange("app", "f", "r", "update", {})])  # type: ignore[arg-type]


# -- claim, coalescing, order -----------------------------------------------------------------


def test_claim_folds_a_records_pending_changes_in_order(queue: ChangeQueue, clock: Clock) -> None:
    queue.enqueue([up("a", x=1, y=1), up("b", x=1), rm("c")])
    clock.advance(1)
    queue.enqueue([up("a", y=2, z=3), rm("b"), up("c", x=9)])
    clock.advance(1)
    queue.enqueue([up("a", x=5), up("c", y=8), up("d", x=1), rm("d")])
    claimed = {c.record_key: c for c in queue.claim("w")}
    assert claimed["a"].operation == "upsert" and claimed["a"].fields == {"x": 5, "y": 2, "z": 3}
    assert claimed["b"].operation == "delete" and claimed["b"].fields == {}
    assert claimed["c"].operation == "upsert" and claimed["c"].fields == {"x": 9, "y": 8}
    assert claimed["d"].operation == "delete"
    ids = claimed["a"].change_ids
    assert len(ids) == 3 and list(ids) == sorted(ids)
    assert claimed["a"].created_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert claimed["a"].attempts == 0 and claimed["a"].lease_owner == "w"
    assert claimed["a"].source == "app" and claimed["a"].flow == "f"
    # each folded part stays known with when it was queued: a field keeps the time of its own part
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert [(op, dict(p), at - t0) for op, p, at in claimed["a"].parts] == [
        ("upsert", {"x": 1, "y": 1}, timedelta(0)),
        ("upsert", {"y": 2, "z": 3}, timedelta(seconds=1)),
        ("upsert", {"x": 5}, timedelta(seconds=2)),
    ]
    assert claimed["d"].parts and not queue.claim("w")


def test_claim_takes_the_oldest_available_first_up_to_the_limit(queue: ChangeQueue, clock: Clock) -> None:
    for key in ["k1", "k2", "k3", "k4"]:
        queue.enqueue([up(key)])
        clock.advance(0.001)
    assert keys(queue.claim("w1", 2)) == ["k1", "k2"]
    assert keys(queue.claim("w2", 10)) == ["k3", "k4"]
    assert queue.claim("w3") == []


def test_claim_filters_by_flow(queue: ChangeQueue) -> None:
    queue.enqueue([up("a", flow="f1"), up("b", flow="f2"), up("c", flow="f3")])
    assert queue.claim("w", flows=[]) == []
    assert sorted(keys(queue.claim("w", flows={"f1", "f3"}))) == ["a", "c"]
    assert keys(queue.claim("w")) == ["b"]


def test_a_record_held_by_one_worker_is_not_given_to_another(queue: ChangeQueue) -> None:
    queue.enqueue([up("a", x=1)])
    [held] = queue.claim("w1")
    queue.enqueue([up("a", x=2), up("b")])
    assert keys(queue.claim("w2")) == ["b"]  # a's second change waits behind the first
    queue.complete([held])
    [after] = queue.claim("w2")
    assert after.record_key == "a" and after.fields == {"x": 2}


def test_complete_marks_only_the_claimed_rows_done(store: Store, queue: ChangeQueue) -> None:
    queue.enqueue([up("a"), up("b")])
    claimed = queue.claim("w")
    queue.complete(claimed[:1])
    done = [i for i, s in states(store).items() if s == "done"]
    assert done == list(claimed[0].change_ids)
    assert queue.stats().leased == 1


# -- leases -----------------------------------------------------------------------------------


def test_an_expired_lease_is_claimable_again_and_the_stale_owner_is_fenced(
    store: Store, queue: ChangeQueue, clock: Clock
) -> None:
    queue.enqueue([up("a", x=1), up("a", y=2)])
    [stale] = queue.claim("dead-worker")
    clock.advance(10)
    queue.enqueue([up("a", z=3)])
    assert queue.claim("w2") == []  # still leased
    clock.advance(21)
    [fresh] = queue.claim("w2")
    assert fresh.change_ids[:2] == stale.change_ids and len(fresh.change_ids) == 3
    assert fresh.fields == {"x": 1, "y": 2, "z": 3}
    before = states(store)
    queue.complete([stale])
    queue.retry(stale, RetryLater("late"))
    queue.release([stale])
    queue.extend([stale], 100)
    assert queue.dead(stale, FixTheData("late")) == 0
    assert states(store) == before
    assert queue.dead_letters() == []
    queue.complete([fresh])
    assert set(states(store).values()) == {"done"}


def test_extend_keeps_the_lease_and_release_gives_it_back(queue: ChangeQueue, clock: Clock) -> None:
    queue.enqueue([up("a")])
    claimed = queue.claim("w1")
    clock.advance(25)
    queue.extend(claimed, 30)
    clock.advance(20)  # past the first lease, within the extension
    assert queue.claim("w2") == []
    queue.release(claimed)
    [again] = queue.claim("w2")
    assert again.attempts == 0 and again.change_ids == claimed[0].change_ids


# -- retry and dead letters -------------------------------------------------------------------


def test_retry_backs_off_to_the_back_of_the_line(queue: ChangeQueue, clock: Clock) -> None:
    queue.enqueue([up("a", x=1), up("b")])
    claimed = {c.record_key: c for c in queue.claim("w")}
    queue.complete([claimed["b"]])
    queue.retry(claimed["a"], RetryLater("503 from the target", status=503))
    queue.enqueue([up("a", x=2), up("c")])
    assert keys(queue.claim("w")) == ["c"]  # other records go ahead; a's follower waits
    assert queue.stats().retrying == 1
    clock.advance(1.0)  # Backoff(initial=1, jitter=0): available again after one second
    [a] = queue.claim("w")
    assert a.record_key == "a" and a.attempts == 1 and a.fields == {"x": 2} and len(a.change_ids) == 2
    queue.retry(a, RetryLater("again"), retry_after=10)  # the vendor's Retry-After wins over 2 s
    clock.advance(9.9)
    assert queue.claim("w") == []
    clock.advance(0.1)
    [a] = queue.claim("w")
    assert a.attempts == 2


def test_dead_letters_hold_the_net_change_and_error_then_followers_proceed(
    store: Store, queue: ChangeQueue
) -> None:
    queue.enqueue([up("a", x=1), up("a", y=2)])
    [a] = queue.claim("w")
    queue.enqueue([up("a", z=3)])
    error = FixTheData("REQUIRED_FIELD_MISSING: Name", vendor_code="REQUIRED_FIELD_MISSING", status=400)
    letter_id = queue.dead(a, error)
    assert letter_id > 0
    letter = queue.dead_letter(letter_id)
    assert letter is not None
    assert letter.change_ids == a.change_ids and letter.fields == {"x": 1, "y": 2}
    assert letter.operation == "upsert" and letter.record_key == "a" and letter.source == "app"
    assert letter.error["kind"] == "FixTheData" and letter.error["vendor_code"] == "REQUIRED_FIELD_MISSING"
    assert letter.error["message"] == "REQUIRED_FIELD_MISSING: Name" and letter.attempts == 1
    assert [states(store)[i] for i in a.change_ids] == ["dead", "dead"]
    assert queue.stats().dead == 1
    [follower] = queue.claim("w")
    assert follower.fields == {"z": 3}
    assert queue.dead_letter(letter_id + 1000) is None


def test_replay_enqueues_the_letter_again_once(queue: ChangeQueue, clock: Clock) -> None:
    queue.enqueue([up("a", x=1), rm("b", flow="g")])
    for claimed in queue.claim("w"):
        queue.dead(claimed, FixTheData("refused"))
    letters = queue.dead_letters()
    assert [x.record_key for x in letters] == ["b", "a"]  # newest first
    assert [x.record_key for x in queue.dead_letters(flow="g")] == ["b"]
    assert queue.replay([x.id for x in letters]) == 2
    assert queue.replay([x.id for x in letters]) == 0  # already replayed
    assert queue.stats().dead == 0
    replayed = {c.record_key: c for c in queue.claim("w")}
    assert replayed["a"].operation == "upsert" and replayed["a"].fields == {"x": 1}
    assert replayed["b"].operation == "delete" and replayed["b"].flow == "g"
    assert all(x.replay_requested_at == clock.now for x in queue.dead_letters())


def test_replay_keeps_the_events_metadata(queue: ChangeQueue) -> None:
    when = datetime(2024, 4, 30, 9, 15, tzinfo=UTC)
    meta = EventMeta(at=when, who="ana", action="commentCard", delivery_id="act1", details={"text": "hi"})
    queue.enqueue([NewChange("trello", "f", "card1", "upsert", {"name": "A"}, "act1:f", meta=meta)])
    [claimed] = queue.claim("w")
    assert claimed.meta == meta
    queue.dead(claimed, FixTheData("refused"))
    [letter] = queue.dead_letters()
    assert queue.replay([letter.id]) == 1
    [replayed] = queue.claim("w")
    assert replayed.meta == meta and replayed.fields == {"name": "A"}


def test_discard_hides_a_letter_and_it_cannot_be_replayed(queue: ChangeQueue) -> None:
    queue.enqueue([up("a"), up("b")])
    ids = [queue.dead(c, FixTheData("refused")) for c in queue.claim("w")]
    assert queue.discard([ids[0]]) == 1
    assert queue.discard([ids[0]]) == 0
    assert [x.id for x in queue.dead_letters()] == [ids[1]]
    assert {x.id for x in queue.dead_letters(include_discarded=True)} == set(ids)
    assert queue.replay([ids[0]]) == 0
    assert queue.stats().dead == 1


# -- stats ------------------------------------------------------------------------------------


def test_stats_count_the_queue(queue: ChangeQueue, clock: Clock) -> None:
    empty = queue.stats()
    assert (empty.pending, empty.leased, empty.dead, empty.retrying, empty.oldest_pending_age) == (
        0,
        0,
        0,
        0,
        None,
    )
    queue.enqueue([up("a"), up("b"), up("c"), up("c")])
    clock.advance(5)
    claimed = {c.record_key: c for c in queue.claim("w", 2)}  # a and b
    queue.retry(claimed["a"], RetryLater("x"))
    stats = queue.stats()
    assert (stats.pending, stats.leased, stats.retrying) == (3, 1, 1)
    assert stats.oldest_pending_age == pytest.approx(5.0)


def test_purge_done_deletes_old_finished_changes(queue: ChangeQueue, clock: Clock, store: Store) -> None:
    queue.enqueue([up("a"), up("b")])
    claimed = queue.claim("w")
    queue.complete(claimed[:1])
    clock.advance(3600)
    assert queue.purge_done(timedelta(minutes=30)) == 1
    assert sorted(states(store).values()) == ["leased"]


def test_extend_answers_which_changes_are_still_held(queue: ChangeQueue, clock: Clock) -> None:
    queue.enqueue([up("a"), up("b")])
    mine = queue.claim("w1", 10)
    assert queue.extend(mine, 30) == {i for c in mine for i in c.change_ids}
    clock.advance(31)  # the lease runs out: another worker takes "a" over
    queue.extend([c for c in mine if c.record_key == "b"], 30)
    [taken] = queue.claim("w2", 10)
    assert taken.record_key == "a"
    held = queue.extend(mine, 30)
    assert held == {i for c in mine if c.record_key == "b" for i in c.change_ids}


def test_hurry_retries_now_what_waits_on_a_failed_call_but_not_refused_records(
    queue: ChangeQueue, clock: Clock
) -> None:
    queue.enqueue([up("outage"), up("own", flow="f"), up("other", flow="g")])
    by_key = {c.record_key: c for c in queue.claim("w", 10)}
    queue.retry(by_key["outage"], RetryLater("HTTP 503"), transient=True)
    queue.retry(by_key["own"], RetryLater("UNABLE_TO_LOCK_ROW"))
    queue.retry(by_key["other"], RetryLater("HTTP 503"), transient=True)
    assert queue.claim("w", 10) == []
    assert queue.hurry(["f"]) == 1
    assert keys(queue.claim("w", 10)) == ["outage"]
