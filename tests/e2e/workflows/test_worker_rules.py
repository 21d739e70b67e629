"""The worker's rules against the Salesforce sandbox: one record's failure never holds back another's.

Each test starts crmsync on the usage-billing recipe and puts changes straight into the queue where
the point is what the worker does with a value the ingest API would refuse today (a change accepted
by an older version, or by another trigger, must not stall its batch either).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from crmsync.connectors.base import Connector, WriteResult
from crmsync.engine.queue import NewChange
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.store import pauses

from ..conftest import Crmsync, wait_until


def open_contract(sf: SalesforceEmulator) -> str:
    return next(c["Id"] for c in sf.records("Contract") if c.get("Status") == "Activated")


def landed(sf: SalesforceEmulator) -> dict[str, dict[str, Any]]:
    return {r["Ad_Id__c"]: r for r in sf.records("Usage__c") if not r.get("IsDeleted")}


def enqueue(crm: Crmsync, records: dict[str, dict[str, Any]]) -> None:
    crm.runtime.queue.enqueue(
        [
            NewChange("service_app", "usage", key, "upsert", {"ad_id": key, **fields})
            for key, fields in records.items()
        ]
    )


def start_worker(crm: Crmsync) -> None:
    """A worker thread inside ``crm``'s own process (so that it sees the connector a test patched)."""
    assert crm.process is not None
    crm.process.workers = 1
    crm.process.start_workers()


def test_an_unexpected_error_is_pinned_on_its_record_and_ends_as_a_dead_letter(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=0, max_attempts=3)
    contract = open_contract(salesforce)
    good = {f"ok-{i}": {"contract_id": contract, "quantity": 1} for i in range(19)}
    # a value accepted before values were bounded at ingest: a 5,001-digit number once converted
    enqueue(crm, {**good, "bad": {"contract_id": contract, "quantity": "1e5000"}})
    crmsync_factory(workers=1, web=False, max_attempts=3)

    wait_until(lambda: set(good) <= set(landed(salesforce)), timeout=30)
    wait_until(lambda: bool(crm.runtime.queue.dead_letters(flow="usage")), timeout=30)
    [dead] = crm.runtime.queue.dead_letters(flow="usage")
    assert dead.record_key == "bad"
    assert dead.attempts <= 3  # refused data at once; anything unforeseen after max_attempts
    assert "bad" not in landed(salesforce)
    wait_until(crm.settled, timeout=10)


def test_a_keyerror_in_a_connector_fails_only_the_record_that_raises_it(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync], monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = crmsync_factory(workers=0, max_attempts=2)
    target: Connector = crm.runtime.connector("salesforce")
    original = target.write_batch

    def write_batch(object_name: str, writes: Any) -> list[WriteResult]:
        if any(w.key == "poison" for w in writes):
            raise KeyError("Quantity__c")
        result: list[WriteResult] = original(object_name, writes)
        return result

    monkeypatch.setattr(target, "write_batch", write_batch)
    contract = open_contract(salesforce)
    good = {f"ok-{i}": {"contract_id": contract, "quantity": 2} for i in range(9)}
    enqueue(crm, {"poison": {"contract_id": contract, "quantity": 1}, **good})
    start_worker(crm)

    wait_until(lambda: set(good) <= set(landed(salesforce)), timeout=30)
    wait_until(lambda: bool(crm.runtime.queue.dead_letters(flow="usage")), timeout=30)
    [dead] = crm.runtime.queue.dead_letters(flow="usage")
    assert (dead.record_key, dead.error["kind"]) == ("poison", "Unexpected")
    assert "KeyError" in dead.error["message"]


def test_a_reference_the_vendor_refuses_becomes_a_dead_letter_and_the_rest_lands(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=0)
    contract = open_contract(salesforce)
    good = {f"ok-{i}": {"contract_id": contract, "quantity": 1} for i in range(30)}
    enqueue(crm, {"x": {"contract_id": "not-an-id", "quantity": 1}, **good})
    start_worker(crm)

    wait_until(lambda: set(good) <= set(landed(salesforce)), timeout=30)
    wait_until(lambda: bool(crm.runtime.queue.dead_letters(flow="usage")), timeout=30)
    [dead] = crm.runtime.queue.dead_letters(flow="usage")
    assert dead.record_key == "x"
    assert dead.error["kind"] == "FixTheData"
    assert "not-an-id" in dead.error["message"]
    assert dead.error["vendor_code"]  # Salesforce's own code travels with it
    assert dead.attempts == 1  # refused data is not retried
    wait_until(crm.settled, timeout=10)


def test_refused_credentials_pause_the_flow_until_the_connection_accepts_crmsync_again(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=1, pause_probe_seconds=0.5)
    contract = open_contract(salesforce)
    sessions = salesforce.org.sessions
    app = sessions.app
    sessions.app = dataclasses.replace(app, username="someone-else@example.com")  # the user was removed
    salesforce.expire_sessions()
    enqueue(crm, {"a-1": {"contract_id": contract, "quantity": 1}})

    wait_until(lambda: [p.flow for p in pauses.list_pauses(crm.runtime.store)] == ["usage"], timeout=30)
    [paused] = pauses.list_pauses(crm.runtime.store)
    assert paused.connection == "salesforce"
    assert "invalid_grant" in paused.reason or "refused" in paused.reason
    time.sleep(1.0)  # a paused flow is not retried: its change keeps its attempts
    stats = crm.runtime.queue.stats()
    assert stats.pending == 1 and "a-1" not in landed(salesforce)

    sessions.app = app  # an administrator fixed the user
    wait_until(lambda: "a-1" in landed(salesforce), timeout=30)
    assert pauses.list_pauses(crm.runtime.store) == []


def test_a_heartbeat_keeps_a_slow_batch_leased_and_a_lost_lease_stops_the_write(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync], monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = crmsync_factory(workers=0, lease_seconds=0.6)
    target: Connector = crm.runtime.connector("salesforce")
    original = target.write_batch
    writes_seen: list[str] = []
    gate = threading.Event()

    def slow(object_name: str, writes: Any) -> list[WriteResult]:
        writes_seen.extend(w.key for w in writes)
        gate.wait(3.0)  # five leases long; another worker polls meanwhile
        result: list[WriteResult] = original(object_name, writes)
        return result

    monkeypatch.setattr(target, "write_batch", slow)
    enqueue(crm, {"slow-1": {"contract_id": open_contract(salesforce), "quantity": 1}})
    start_worker(crm)
    other = crmsync_factory(workers=1, web=False, lease_seconds=0.6)
    wait_until(lambda: "slow-1" in landed(salesforce), timeout=30)
    wait_until(crm.settled, timeout=10)
    assert writes_seen == ["slow-1"], "the other worker took the change over while it was being written"
    assert other.runtime.queue.stats().pending == 0


def test_a_worker_whose_lease_was_taken_over_does_not_write(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    from crmsync.engine.worker import Worker

    crm = crmsync_factory(workers=0, lease_seconds=0.3)
    enqueue(crm, {"late-1": {"contract_id": open_contract(salesforce), "quantity": 1}})
    rt = crm.runtime
    worker = Worker(rt, owner="stalled", batch_size=10)
    [change] = rt.queue.claim("stalled", 10)
    time.sleep(0.4)  # the lease runs out while "stalled" is paused (e.g. a long GC, a frozen VM)
    [taken] = rt.queue.claim("other", 10)
    assert taken.record_key == "late-1"

    flow = rt.flows["usage"]
    from crmsync.engine.worker import Heartbeat

    with Heartbeat(rt.queue, lambda: [change], 0.3) as beat:
        wait_until(lambda: beat.lost(change), timeout=5)
        worker._beat = beat
        worker.process(flow, [change])
    assert "late-1" not in landed(salesforce)
    assert salesforce.calls.count(path_contains="/composite/sobjects/Usage__c") == 0


def test_changes_waiting_on_a_vendor_are_retried_as_soon_as_it_answers_again(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    # a long back-off: without the prompt retry, the first entry would wait a minute
    crm = crmsync_factory(workers=1, backoff="{initial_seconds: 60, factor: 2, max_seconds: 600, jitter: 0}")
    contract = open_contract(salesforce)
    rule = salesforce.faults.add(path="/composite/sobjects", status=503)
    enqueue(crm, {"first": {"contract_id": contract, "quantity": 1}})
    wait_until(lambda: crm.runtime.queue.stats().retrying == 1, timeout=30)
    salesforce.faults.remove(rule.id)

    started = time.monotonic()
    enqueue(crm, {"second": {"contract_id": contract, "quantity": 1}})
    wait_until(lambda: {"first", "second"} <= set(landed(salesforce)), timeout=30)
    assert time.monotonic() - started < 15


def test_a_vendor_that_comes_back_is_noticed_by_a_probe_when_nothing_else_is_due(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=1, backoff="{initial_seconds: 120, factor: 2, max_seconds: 600, jitter: 0}")
    rule = salesforce.faults.add(path="/composite/sobjects", status=503)
    enqueue(crm, {"only": {"contract_id": open_contract(salesforce), "quantity": 1}})
    wait_until(lambda: crm.runtime.queue.stats().retrying == 1, timeout=30)
    salesforce.faults.remove(rule.id)
    wait_until(lambda: "only" in landed(salesforce), timeout=40)  # a probe every 10 s, not the 120 s back-off
