"""The contract every connector passes: one pytest suite, run against each connector's far side.

A connector's contract test is a short file (the Singer SDK generates one per tap in the same way)::

    from crmsync.connectors.contract import ConnectorContract, Harness

    class MyHarness(Harness):
        ...                                  # the connector, and a window onto the far side

    class TestMyConnector(ConnectorContract):
        connector_class = MyConnector        # its declared capabilities pick the tests
        upserts = True                       # what the connector promises beyond its capabilities
        replays_creates = False
        polls_deletions = True
        guards_budget = False

        @pytest.fixture
        def harness(self, ...) -> Iterator[Harness]:
            yield MyHarness(...)

The tests a connector gets follow from what it declares (:func:`~.capabilities.capabilities_of`),
never skipped: a connector that is not :class:`~.capabilities.Writable` simply has no write tests.

======================  ==================================================================================
capability              what is checked
======================  ==================================================================================
(every connector)       ``check`` passes; refused credentials are :class:`~crmsync.errors.Fatal`
Writable                one result per write, in order; a refused record is a ``FixTheData`` result and
                        the others land; a failed call raises ``RetryLater`` and the same batch sent again
                        lands once; an update, a delete and an upsert (``upserts``) sent twice land once;
                        a create sent again as the engine retries it (``Write.maybe_applied``) lands once
                        (``replays_creates``: an idempotency key, or a marker looked up first); a create
                        said to be ``maybe_applied`` that never landed is made
Readable                records by id (unknown ids skipped); a scan lists them
PolledSource            reading from a watermark misses no change, and repeats none past the watermark
                        (beyond ``Harness.change_overlap``, the look-back the connector declares);
                        deletions are reported (``polls_deletions``)
WebhookSource           a good delivery is authenticated and parsed into the record's change; forged ones
                        are refused; ensuring subscriptions twice makes them once
Queryable               ``find_by_field`` finds by a field's value; ``matching`` applies a condition
RelatedCreator          related records are created together, or none when one is refused
Budgeted                ``over_guard`` is false with budget left, and turns true once it is spent
                        (``guards_budget``: an allowance that runs out, not a paced rate)
======================  ==================================================================================

Nothing here sleeps: a harness whose far side answers asynchronously waits for a condition. The
module needs pytest (a test dependency): crmsync itself never imports it.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from crmsync.connectors.base import ChangeBatch, Connector, Record, Write
from crmsync.connectors.capabilities import (
    Budgeted,
    Delivery,
    PolledSource,
    Queryable,
    Readable,
    Receiver,
    RelatedCreator,
    WebhookRefused,
    WebhookSource,
    Writable,
    capabilities_of,
    require,
)
from crmsync.errors import Fatal, FixTheData, RetryLater

__all__ = ["ConnectorContract", "Harness", "parse_stamp"]

#: most change readings in a row before the suite decides a connector never stops answering news
MAX_READS = 50


def parse_stamp(value: str) -> dt.datetime:
    """A vendor's stamp (ISO 8601 with ``Z``, or Salesforce's ``+0000``) as an aware datetime."""
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class Harness(abc.ABC):
    """A connector under test and a window onto its far side (read and changed without the connector)."""

    #: the connector under test
    connector: Connector
    #: the object the suite writes and reads
    object_name: str
    #: a field of the object holding a value the suite sets (upserts' external id, lookups)
    key_field: str
    #: how far before its watermark a change reading looks again: None, nothing is read again; else a
    #: record read again must be stamped within this of the watermark (``timedelta(0)``: records
    #: stamped at the watermark itself come again, as with whole-second stamps)
    change_overlap: dt.timedelta | None = None

    # -- records -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def new_fields(self, n: int) -> dict[str, Any]:
        """Valid fields of a new record, distinct for each ``n`` (``key_field`` holds :meth:`key`)."""

    @abc.abstractmethod
    def changed_fields(self, n: int) -> dict[str, Any]:
        """Valid fields changing a record (distinct for each ``n``)."""

    @abc.abstractmethod
    def refused_fields(self) -> dict[str, Any]:
        """Fields of a new record the far side refuses (a validation rule, a required field missing)."""

    def key(self, n: int) -> str:
        """The value of ``key_field`` in :meth:`new_fields` ``(n)``."""
        return f"contract-{n}"

    # -- the far side ------------------------------------------------------------------------------
    @abc.abstractmethod
    def far_get(self, record_id: str, object_name: str | None = None) -> Mapping[str, Any] | None:
        """The live record's fields as the far side holds them (None: absent or deleted)."""

    @abc.abstractmethod
    def far_ids(self, object_name: str | None = None) -> set[str]:
        """The ids of the object's live records."""

    @abc.abstractmethod
    def far_create(self, fields: Mapping[str, Any]) -> str:
        """Create a record as a user of the vendor would; its id."""

    @abc.abstractmethod
    def far_update(self, record_id: str, fields: Mapping[str, Any]) -> None:
        """Change a record as a user of the vendor would."""

    @abc.abstractmethod
    def far_delete(self, record_id: str) -> None:
        """Delete a record as a user of the vendor would."""

    def same(self, held: Mapping[str, Any], sent: Mapping[str, Any]) -> bool:
        """Does the far side's record hold the values sent (as the vendor shows them)?"""
        return all(held.get(k) == v for k, v in sent.items())

    def watermark_order(self, watermark: str) -> Any:
        """A value ordering watermarks as the far side moves on (default: a vendor's time stamp;
        a connector whose watermark is an event id says how its ids are ordered)."""
        return parse_stamp(watermark)

    # -- faults ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def fail_next_call(self) -> None:
        """Make the connector's next call fail transiently (the vendor down, a 503)."""

    @abc.abstractmethod
    def refused_connector(self) -> Connector:
        """A connector to the same far side whose credentials are refused."""

    # -- optional, by capability --------------------------------------------------------------------------
    def deliveries(self, record_id: str) -> tuple[Receiver, Delivery, list[Delivery]]:
        """WebhookSource: the receiver's state, a good delivery of a change of ``record_id``, and
        forged ones (wrong signature, wrong secret, no signature...)."""
        raise NotImplementedError

    def webhook_url(self) -> str:
        """WebhookSource: a callback URL subscriptions are made for."""
        raise NotImplementedError

    def condition(self, value: str) -> str:
        """Queryable: a condition (the vendor's language) true of records whose ``key_field`` is ``value``."""
        raise NotImplementedError

    def related_case(
        self, refused: bool
    ) -> tuple[str, Mapping[str, Any], list[tuple[str, Mapping[str, Any], Mapping[str, str]]]]:
        """RelatedCreator: ``(object, fields, related)`` to create together; with ``refused``, one of
        them is refused by the far side."""
        raise NotImplementedError

    def spend_budget(self) -> None:
        """Budgeted: use the budget up past the connector's guard."""
        raise NotImplementedError


# tests gated by a capability, or by a promise of the test class
_NEEDS: dict[str, str] = {
    "test_results_come_one_per_write_in_order": "Writable",
    "test_a_refused_record_is_fix_the_data_and_the_others_land": "Writable",
    "test_a_failed_call_raises_retry_later_and_the_batch_sent_again_lands_once": "Writable",
    "test_refused_credentials_on_a_write_are_fatal": "Writable",
    "test_an_update_and_a_delete_sent_twice_land_once": "Writable",
    "test_an_upsert_sent_twice_lands_once": "Writable",
    "test_a_create_sent_again_lands_once": "Writable",
    "test_a_create_that_may_have_landed_but_did_not_is_made": "Writable",
    "test_records_are_read_by_id_and_scanned": "Readable",
    "test_change_reading_misses_none_and_repeats_none_past_the_watermark": "PolledSource",
    "test_deletions_are_read_as_changes": "PolledSource",
    "test_a_good_delivery_is_parsed_and_forged_ones_are_refused": "WebhookSource",
    "test_subscriptions_are_made_once": "WebhookSource",
    "test_records_are_found_by_a_field_and_a_condition": "Queryable",
    "test_related_records_are_created_all_or_none": "RelatedCreator",
    "test_over_guard_is_false_with_budget_left": "Budgeted",
    "test_over_guard_once_the_budget_is_spent": "Budgeted",
}
_PROMISES: dict[str, str] = {
    "test_an_upsert_sent_twice_lands_once": "upserts",
    "test_a_create_sent_again_lands_once": "replays_creates",
    "test_deletions_are_read_as_changes": "polls_deletions",
    "test_over_guard_once_the_budget_is_spent": "guards_budget",
}


class ConnectorContract:
    """Subclass as ``Test<Connector>`` with ``connector_class`` and a ``harness`` fixture."""

    connector_class: ClassVar[type[Connector]]
    #: the connector upserts by an external-id field (``Write(operation="upsert")``)
    upserts: ClassVar[bool] = False
    #: a create sent again with the same key and fields, said to be ``maybe_applied`` (as the engine
    #: sends a retry), returns the first one's id
    replays_creates: ClassVar[bool] = False
    #: a change reading reports deleted records (``Record.deleted``)
    polls_deletions: ClassVar[bool] = False
    #: the budget is an allowance that runs out (a daily limit): ``over_guard`` turns true
    guards_budget: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "connector_class" not in cls.__dict__:
            return
        declared = capabilities_of(cls.connector_class)
        for name, capability in _NEEDS.items():
            promise = _PROMISES.get(name)
            if capability not in declared or (promise is not None and not getattr(cls, promise)):
                setattr(cls, name, None)  # not collected: the connector does not claim it

    # -- every connector ---------------------------------------------------------------------------
    def test_check_passes_and_refused_credentials_are_fatal(self, harness: Harness) -> None:
        harness.connector.check()
        refused = harness.refused_connector()
        try:
            with pytest.raises(Fatal):
                refused.check()
        finally:
            refused.close()

    # -- Writable ----------------------------------------------------------------------------------
    def test_results_come_one_per_write_in_order(self, harness: Harness) -> None:
        target = require(harness.connector, Writable)
        assert target.max_batch_size(harness.object_name) >= 1
        writes = [Write(f"k{n}", "create", harness.new_fields(n)) for n in range(3)]
        results = target.write_batch(harness.object_name, writes)
        assert [r.key for r in results] == ["k0", "k1", "k2"]
        assert all(r.ok and r.created and r.target_id for r in results), results
        assert len({r.target_id for r in results}) == 3
        for n, result in enumerate(results):
            held = harness.far_get(str(result.target_id))
            assert held is not None and harness.same(held, harness.new_fields(n)), held

    def test_a_refused_record_is_fix_the_data_and_the_others_land(self, harness: Harness) -> None:
        target = require(harness.connector, Writable)
        before = harness.far_ids()
        writes = [
            Write("good-1", "create", harness.new_fields(11)),
            Write("bad", "create", harness.refused_fields()),
            Write("good-2", "create", harness.new_fields(12)),
        ]
        results = target.write_batch(harness.object_name, writes)
        assert [r.key for r in results] == ["good-1", "bad", "good-2"]
        assert results[0].ok and results[2].ok
        assert not results[1].ok and isinstance(results[1].error, FixTheData), results[1]
        assert results[1].error.message  # the vendor's message travels with it
        assert harness.far_ids() - before == {results[0].target_id, results[2].target_id}

    def test_a_failed_call_raises_retry_later_and_the_batch_sent_again_lands_once(
        self, harness: Harness
    ) -> None:
        target = require(harness.connector, Writable)
        before = harness.far_ids()
        writes = [
            Write("r1", "create", harness.new_fields(21)),
            Write("r2", "create", harness.new_fields(22)),
        ]
        harness.fail_next_call()
        with pytest.raises(RetryLater):
            target.write_batch(harness.object_name, writes)
        assert harness.far_ids() == before  # a call refused as a whole wrote nothing
        results = target.write_batch(harness.object_name, writes)
        assert all(r.ok for r in results)
        assert harness.far_ids() - before == {r.target_id for r in results}

    def test_refused_credentials_on_a_write_are_fatal(self, harness: Harness) -> None:
        refused = harness.refused_connector()
        try:
            with pytest.raises(Fatal):
                require(refused, Writable).write_batch(
                    harness.object_name, [Write("x", "create", harness.new_fields(31))]
                )
        finally:
            refused.close()

    def test_an_update_and_a_delete_sent_twice_land_once(self, harness: Harness) -> None:
        target = require(harness.connector, Writable)
        rid = harness.far_create(harness.new_fields(41))
        update = Write("u", "update", harness.changed_fields(1), target_id=rid)
        for _ in range(2):
            [result] = target.write_batch(harness.object_name, [update])
            assert result.ok and result.target_id == rid, result
        held = harness.far_get(rid)
        assert held is not None and harness.same(held, harness.changed_fields(1))
        delete = Write("u", "delete", target_id=rid)
        for _ in range(2):  # deleting what is gone already succeeds: a retry after a lost answer
            [result] = target.write_batch(harness.object_name, [delete])
            assert result.ok, result
        assert harness.far_get(rid) is None

    def test_an_upsert_sent_twice_lands_once(self, harness: Harness) -> None:
        target = require(harness.connector, Writable)
        before = harness.far_ids()
        fields = {k: v for k, v in harness.new_fields(51).items() if k != harness.key_field}
        upsert = Write(
            "up", "upsert", fields, external_id_field=harness.key_field, external_id=harness.key(51)
        )
        [first] = target.write_batch(harness.object_name, [upsert])
        [second] = target.write_batch(harness.object_name, [upsert])
        assert first.ok and first.created is True, first
        assert second.ok and second.created is False and second.target_id == first.target_id, second
        assert harness.far_ids() - before == {first.target_id}

    def test_a_create_sent_again_lands_once(self, harness: Harness) -> None:
        target = require(harness.connector, Writable)
        before = harness.far_ids()
        create = Write("again", "create", harness.new_fields(61))
        [first] = target.write_batch(harness.object_name, [create])
        retried = Write("again", "create", harness.new_fields(61), maybe_applied=True)
        [second] = target.write_batch(harness.object_name, [retried])
        assert first.ok and second.ok and first.target_id == second.target_id
        assert harness.far_ids() - before == {first.target_id}

    def test_a_create_that_may_have_landed_but_did_not_is_made(self, harness: Harness) -> None:
        target = require(harness.connector, Writable)
        before = harness.far_ids()
        harness.fail_next_call()  # the first attempt's call failed: nothing landed
        first = Write("unsure", "create", harness.new_fields(62))
        with pytest.raises(RetryLater):
            target.write_batch(harness.object_name, [first])
        assert harness.far_ids() == before
        retried = Write("unsure", "create", harness.new_fields(62), maybe_applied=True)
        [result] = target.write_batch(harness.object_name, [retried])
        assert result.ok and result.created and result.target_id, result
        assert harness.far_ids() - before == {result.target_id}
        held = harness.far_get(str(result.target_id))
        assert held is not None and harness.same(held, harness.new_fields(62)), held

    # -- Readable ----------------------------------------------------------------------------------
    def test_records_are_read_by_id_and_scanned(self, harness: Harness) -> None:
        source = require(harness.connector, Readable)
        ids = [harness.far_create(harness.new_fields(n)) for n in (71, 72)]
        unknown = _unknown_id(harness, ids[0])
        read = {r.id: r for r in source.read_records(harness.object_name, [*ids, unknown])}
        assert {rid for rid, r in read.items() if not r.deleted} == set(ids)  # a deleted one is marked
        for n, rid in zip((71, 72), ids, strict=True):
            assert harness.same(read[rid].fields, harness.new_fields(n)), read[rid]
            assert read[rid].modified and not read[rid].deleted
        assert set(ids) <= {r.id for r in source.scan(harness.object_name)}

    # -- PolledSource ------------------------------------------------------------------------------
    def test_change_reading_misses_none_and_repeats_none_past_the_watermark(self, harness: Harness) -> None:
        source = require(harness.connector, PolledSource)
        _, mark = _drain(harness, source, None, {})  # where the far side is now
        a = harness.far_create(harness.new_fields(81))
        b = harness.far_create(harness.new_fields(82))
        harness.far_update(a, harness.changed_fields(2))
        seen: dict[str, Record] = {}
        news, mark = _drain(harness, source, mark, seen)
        assert {a, b} <= set(news), f"changes missed: {sorted({a, b} - set(news))}"
        assert harness.same(seen[a].fields, harness.changed_fields(2)), seen[a]  # the latest version
        assert mark is not None
        again = source.read_changes(harness.object_name, mark)
        _assert_no_repeats(harness, again, mark, seen)
        harness.far_update(b, harness.changed_fields(3))
        later, _ = _drain(harness, source, mark, seen)
        assert b in later and harness.same(seen[b].fields, harness.changed_fields(3))
        assert a not in later, "a record unchanged since the watermark came again as news"

    def test_deletions_are_read_as_changes(self, harness: Harness) -> None:
        source = require(harness.connector, PolledSource)
        rid = harness.far_create(harness.new_fields(91))
        _, mark = _drain(harness, source, None, {})
        harness.far_delete(rid)
        seen: dict[str, Record] = {}
        news, _ = _drain(harness, source, mark, seen)
        assert rid in news and seen[rid].deleted, seen.get(rid)

    # -- WebhookSource -----------------------------------------------------------------------------
    def test_a_good_delivery_is_parsed_and_forged_ones_are_refused(self, harness: Harness) -> None:
        hooks = require(harness.connector, WebhookSource)
        rid = harness.far_create(harness.new_fields(101))
        receiver, good, forged = harness.deliveries(rid)
        assert forged, "a harness must forge at least one delivery"
        for delivery in forged:
            with pytest.raises(WebhookRefused):
                hooks.authenticate(delivery, receiver)
        hooks.authenticate(good, receiver)
        events = hooks.parse(good.body)
        assert [e.record_id for e in events] == [rid], events
        assert events[0].delivery_id and events[0].operation == "upsert"

    def test_subscriptions_are_made_once(self, harness: Harness) -> None:
        hooks = require(harness.connector, WebhookSource)
        url = harness.webhook_url()
        first = hooks.ensure_subscriptions(harness.object_name, url, attempt="contract-1")
        second = hooks.ensure_subscriptions(harness.object_name, url, attempt="contract-2")
        assert first.created and not second.created
        assert {s.id for s in second.existing} == {s.id for s in first.created}
        listed = hooks.list_subscriptions(harness.object_name)
        assert {s.id for s in first.created} <= {s.id for s in listed}

    # -- Queryable ---------------------------------------------------------------------------------
    def test_records_are_found_by_a_field_and_a_condition(self, harness: Harness) -> None:
        queries = require(harness.connector, Queryable)
        rid = harness.far_create(harness.new_fields(111))
        other = harness.far_create(harness.new_fields(112))
        found = queries.find_by_field(harness.object_name, harness.key_field, [harness.key(111), "absent-0"])
        assert found == {harness.key(111): [rid]}
        matching = queries.matching(harness.object_name, [rid, other], harness.condition(harness.key(111)))
        assert matching == {rid}

    # -- RelatedCreator ----------------------------------------------------------------------------
    def test_related_records_are_created_all_or_none(self, harness: Harness) -> None:
        creator = require(harness.connector, RelatedCreator)
        obj, fields, related = harness.related_case(refused=True)
        objects = [obj, *(o for o, _, _ in related)]
        before = {o: harness.far_ids(o) for o in objects}
        with pytest.raises(FixTheData):
            creator.create_related(obj, fields, related)
        assert {o: harness.far_ids(o) for o in objects} == before, "a refused creation left records"
        obj, fields, related = harness.related_case(refused=False)
        ids = creator.create_related(obj, fields, related)
        assert set(ids) == {obj, *(o for o, _, _ in related)}
        for o, rid in ids.items():
            assert harness.far_get(rid, o) is not None

    # -- Budgeted ------------------------------------------------------------------------------------
    def test_over_guard_is_false_with_budget_left(self, harness: Harness) -> None:
        assert require(harness.connector, Budgeted).over_guard() is False

    def test_over_guard_once_the_budget_is_spent(self, harness: Harness) -> None:
        budget = require(harness.connector, Budgeted)
        harness.spend_budget()
        assert budget.over_guard() is True


def _unknown_id(harness: Harness, like: str) -> str:
    """An id shaped like ``like`` that no live record has (created and deleted on the far side)."""
    rid = harness.far_create(harness.new_fields(999))
    harness.far_delete(rid)
    assert rid != like
    return rid


def _same_version(held: Record | None, record: Record) -> bool:
    """Is ``record`` the version already ``held`` (whole-second stamps may not move on a change)?"""
    return held is not None and (held.modified, held.deleted, dict(held.fields)) == (
        record.modified,
        record.deleted,
        dict(record.fields),
    )


def _drain(
    harness: Harness, source: PolledSource, mark: str | None, seen: dict[str, Record]
) -> tuple[set[str], str | None]:
    """Read changes from ``mark`` until a reading brings no news; the records that were news (``seen``
    keeps the latest version of each) and the last watermark."""
    news: set[str] = set()
    for _ in range(MAX_READS):
        batch = source.read_changes(harness.object_name, mark)
        fresh = [r for r in batch.records if not _same_version(seen.get(r.id), r)]
        for record in fresh:
            seen[record.id] = record
            news.add(record.id)
        if mark is not None and batch.watermark is not None:
            moved = harness.watermark_order(batch.watermark) >= harness.watermark_order(mark)
            assert moved, "the watermark moved backwards"
        mark = batch.watermark
        if not fresh:
            return news, mark
    raise AssertionError(f"change reading still brings news after {MAX_READS} readings")


def _assert_no_repeats(harness: Harness, batch: ChangeBatch, mark: str, seen: Mapping[str, Record]) -> None:
    if harness.change_overlap is None:
        assert not batch.records, f"read again from watermark {mark}: {[r.id for r in batch.records]}"
        return
    floor = parse_stamp(mark) - harness.change_overlap
    for record in batch.records:
        assert _same_version(seen.get(record.id), record), f"{record.id} is news without a change"
        assert record.modified is not None and parse_stamp(record.modified) >= floor, (
            f"{record.id} (stamped {record.modified}) came again from watermark {mark}: past the "
            f"declared overlap of {harness.change_overlap}"
        )
