"""Flows between two in-memory connections, built from ``crmsync.yaml`` alone: one-way by polling,
two-way by webhooks, echoes suppressed and conflicts settled by the flow's policy.

Nothing here is particular to the in-memory connector in the engine: the same configuration with
two other connectors of the same capabilities would run the same way.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from crmsync.cli.main import app as cli
from crmsync.config import load_config
from crmsync.connectors.memory import MemorySystem
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.queue import ClaimedChange
from crmsync.engine.runtime import Runtime
from crmsync.engine.twoway import Plan
from crmsync.engine.worker import Worker
from crmsync.service.process import Process
from crmsync.store import synclog

from ..conftest import wait_until

CONFIG = """\
version: 1
store:
  url: sqlite:///{db}
web:
  port: 0
worker:
  lease_seconds: 5
  poll_interval_seconds: 0.05
  backoff: {{initial_seconds: 0.05, factor: 2, max_seconds: 0.2, jitter: 0.1}}
connections:
  crm:
    type: memory
    system: {left}
    webhook_secret: crm-signing-secret
  helpdesk:
    type: memory
    system: {right}
    webhook_secret: helpdesk-signing-secret{refuse}
flows:
  customers:
    source: crm
    source_object: Contact
    target: helpdesk
    object: Customer
    key: id
    conflict: {{policy: {policy}}}
    fields:
      - {{source: name, target: FullName{both}}}
      - {{source: email, target: Email{both}}}
"""


@dataclass
class Flows:
    runtime: Runtime
    crm: MemorySystem
    helpdesk: MemorySystem
    config: Path

    def settled(self) -> bool:
        stats = self.runtime.queue.stats()
        return stats.pending == 0 and stats.leased == 0 and stats.retrying == 0

    def writes(self, system: MemorySystem, by: str) -> int:
        return sum(1 for e in system.journal if e.by == by)


@pytest.fixture
def flows_factory(tmp_path: Path) -> Iterator[Callable[..., Flows]]:
    made: list[tuple[Runtime, str, str]] = []

    def make(*, two_way: bool, policy: str = "owner_wins", refuse: str = "") -> Flows:
        left, right = f"crm-{uuid.uuid4().hex}", f"helpdesk-{uuid.uuid4().hex}"
        path = tmp_path / "crmsync.yaml"
        both = ", direction: both" if two_way else ""
        path.write_text(
            CONFIG.format(
                db=tmp_path / "crmsync.db", left=left, right=right, policy=policy, both=both, refuse=refuse
            )
        )
        runtime = Runtime(load_config(path), upgrade=True)
        made.append((runtime, left, right))
        return Flows(runtime, MemorySystem.named(left), MemorySystem.named(right), path)

    yield make
    for runtime, left, right in made:
        runtime.close()
        MemorySystem.discard(left)
        MemorySystem.discard(right)


def records(system: MemorySystem, object_name: str) -> list[Mapping[str, object]]:
    return [r.fields for r in system.records(object_name)]


def test_a_one_way_flow_polls_the_source_and_writes_the_target(flows_factory: Callable[..., Flows]) -> None:
    flows = flows_factory(two_way=False)
    process = Process(flows.runtime, web=False, workers=1, reconcile_interval=0.1, watchdog_interval=60)
    thread = threading.Thread(target=process.run, daemon=True)
    thread.start()
    try:
        ada = flows.crm.insert("Contact", {"name": "Ada", "email": "ada@example.com"})
        wait_until(
            lambda: records(flows.helpdesk, "Customer") == [{"FullName": "Ada", "Email": "ada@example.com"}]
        )
        flows.crm.update("Contact", ada, {"email": "ada@lovelace.example"})
        wait_until(lambda: records(flows.helpdesk, "Customer")[0]["Email"] == "ada@lovelace.example")
        flows.helpdesk.update("Customer", flows.helpdesk.records("Customer")[0].id, {"Email": "typo@example"})
        reads = flows.crm.calls["crm"]
        wait_until(lambda: flows.crm.calls["crm"] >= reads + 3 and flows.settled())  # polled again, and again
    finally:
        process.stop()
        thread.join(10)
    assert records(flows.crm, "Contact") == [{"name": "Ada", "email": "ada@lovelace.example"}]  # nothing back
    assert flows.writes(flows.helpdesk, "helpdesk") == 2  # one create, one update: each change once
    assert flows.writes(flows.crm, "crm") == 0


@pytest.fixture
def two_way(
    flows_factory: Callable[..., Flows], request: pytest.FixtureRequest
) -> Iterator[tuple[Flows, Worker]]:
    """A two-way flow: its web app receives both sides' webhooks (``crmsync webhooks ensure`` made
    them); a worker is run by hand, so a test decides what is in the queue when it runs."""
    param = getattr(request, "param", "owner_wins")
    policy, refuse = (param, "") if isinstance(param, str) else param
    flows = flows_factory(two_way=True, policy=policy, refuse=refuse)
    process = Process(flows.runtime, web=True, workers=0, host="127.0.0.1", port=0)
    process.bind()
    thread = threading.Thread(target=process.run, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{process.bound_port}"
        ensured = CliRunner().invoke(
            cli, ["webhooks", "ensure", "--config", str(flows.config), "--url", base]
        )
        assert ensured.exit_code == 0, ensured.output
        assert len(flows.crm.subscriptions("Contact")) == len(flows.helpdesk.subscriptions("Customer")) == 1
        yield flows, Worker(flows.runtime, owner="test-worker", batch_size=50)
    finally:
        process.stop()
        thread.join(10)


def deliver(*systems: MemorySystem) -> None:
    for system in systems:
        assert all(status == 200 for status in system.flush(_post)), "a delivery was refused"


def _post(url: str, headers: Mapping[str, str], body: bytes) -> int:
    return httpx.post(url, headers=dict(headers), content=body, timeout=10).status_code


def settle(flows: Flows, worker: Worker) -> None:
    """Deliver and apply until nothing is left: every echo has come back and been dropped."""

    def done() -> bool:
        deliver(flows.crm, flows.helpdesk)
        worker.run_once()
        return flows.settled() and not flows.crm.outbox() and not flows.helpdesk.outbox()

    wait_until(done)


def test_a_two_way_flow_carries_changes_both_ways_and_drops_its_echoes(two_way: tuple[Flows, Worker]) -> None:
    flows, worker = two_way
    ada = flows.crm.insert("Contact", {"name": "Ada", "email": "ada@example.com"})
    settle(flows, worker)
    [customer] = flows.helpdesk.records("Customer")
    assert customer.fields == {"FullName": "Ada", "Email": "ada@example.com"}

    flows.helpdesk.update("Customer", customer.id, {"Email": "ada@lovelace.example"})
    settle(flows, worker)
    assert records(flows.crm, "Contact") == [{"name": "Ada", "email": "ada@lovelace.example"}]

    flows.crm.update("Contact", ada, {"name": "Ada Lovelace"})
    settle(flows, worker)
    assert records(flows.helpdesk, "Customer") == [
        {"FullName": "Ada Lovelace", "Email": "ada@lovelace.example"}
    ]
    # each change was written once on the other side; the echo of each write was dropped, not sent back
    assert flows.writes(flows.helpdesk, "helpdesk") == 2
    assert flows.writes(flows.crm, "crm") == 1
    echoes = synclog.query(flows.runtime.store, "customers", outcome="skipped")
    assert sorted(str(e.source) for e in echoes) == ["crm", "helpdesk", "helpdesk"]  # one per write
    assert all("echo" in str(e.message) for e in echoes)


@pytest.mark.parametrize(
    ("two_way", "winner"), [("source_wins", "crm"), ("target_wins", "helpdesk")], indirect=["two_way"]
)
def test_a_conflict_is_settled_by_the_flow_policy(two_way: tuple[Flows, Worker], winner: str) -> None:
    flows, worker = two_way
    ada = flows.crm.insert("Contact", {"name": "Ada", "email": "ada@example.com"})
    settle(flows, worker)
    [customer] = flows.helpdesk.records("Customer")
    # both sides change the e-mail before crmsync applies either change
    flows.crm.update("Contact", ada, {"email": "crm@example.com"})
    flows.helpdesk.update("Customer", customer.id, {"Email": "helpdesk@example.com"})
    deliver(flows.crm, flows.helpdesk)
    settle(flows, worker)
    expected = f"{winner}@example.com"
    assert records(flows.crm, "Contact")[0]["email"] == expected
    assert records(flows.helpdesk, "Customer")[0]["Email"] == expected
    conflicts = synclog.query(flows.runtime.store, "customers", outcome="conflict")
    assert conflicts and f"the {'source' if winner == 'crm' else 'target'} wins" in str(conflicts[0].message)
    # the winner's value is written once on the loser's side; the loser's value is never written
    if winner == "crm":
        assert (flows.writes(flows.helpdesk, "helpdesk"), flows.writes(flows.crm, "crm")) == (2, 0)
    else:
        assert (flows.writes(flows.helpdesk, "helpdesk"), flows.writes(flows.crm, "crm")) == (1, 1)


#: the helpdesk refuses a customer whose e-mail starts with "refused@" (a FixTheData result)
REFUSE = """
    refuse: [{field: Email, matches: "^refused@", message: "this address is refused"}]"""
BATCH = 6


def customers(flows: Flows) -> dict[str, str]:
    """The helpdesk's customer ids by e-mail."""
    return {str(r.fields["Email"]): r.id for r in flows.helpdesk.records("Customer")}


def email_of(flows: Flows, contact: str) -> object:
    found = flows.crm.get("Contact", contact)
    return found.fields["email"] if found is not None else None


def contacts_made(flows: Flows, worker: Worker, n: int = BATCH) -> list[str]:
    ids = [flows.crm.insert("Contact", {"name": f"C{i}", "email": f"c{i}@example.com"}) for i in range(n)]
    settle(flows, worker)
    assert len(customers(flows)) == n
    return ids


def test_a_batch_of_two_way_updates_is_one_call_each_way_and_their_echoes_are_dropped(
    two_way: tuple[Flows, Worker],
) -> None:
    flows, worker = two_way
    ids = contacts_made(flows, worker)
    crm_calls, helpdesk_calls = flows.crm.calls["crm"], flows.helpdesk.calls["helpdesk"]
    for i, contact in enumerate(ids):
        flows.crm.update("Contact", contact, {"name": f"C{i} renamed"})
    deliver(flows.crm)
    assert worker.run_once() == BATCH
    assert flows.helpdesk.calls["helpdesk"] == helpdesk_calls + 1  # six updates, one call
    assert sorted(str(r["FullName"]) for r in records(flows.helpdesk, "Customer")) == [
        f"C{i} renamed" for i in range(BATCH)
    ]
    skipped = len(synclog.query(flows.runtime.store, "customers", outcome="skipped"))
    settle(flows, worker)  # the six echoes come back from the helpdesk...
    echoes = synclog.query(flows.runtime.store, "customers", outcome="skipped")
    assert len(echoes) == skipped + BATCH and all("echo" in str(e.message) for e in echoes[:BATCH])
    assert flows.crm.calls["crm"] == crm_calls  # ...and are dropped: nothing is written back

    helpdesk_calls = flows.helpdesk.calls["helpdesk"]
    for email, customer in customers(flows).items():
        flows.helpdesk.update("Customer", customer, {"Email": email.replace("@", "+new@")})
    deliver(flows.helpdesk)
    assert worker.run_once() == BATCH
    assert flows.crm.calls["crm"] == crm_calls + 1  # six updates the other way, one call
    assert sorted(str(r["email"]) for r in records(flows.crm, "Contact")) == [
        f"c{i}+new@example.com" for i in range(BATCH)
    ]
    settle(flows, worker)
    assert flows.helpdesk.calls["helpdesk"] == helpdesk_calls  # their echoes are dropped too
    assert flows.writes(flows.crm, "crm") == BATCH
    assert flows.writes(flows.helpdesk, "helpdesk") == 2 * BATCH  # each created, then updated once


@pytest.mark.parametrize("two_way", [("owner_wins", REFUSE)], indirect=True)
def test_a_record_refused_in_a_batch_is_a_dead_letter_and_the_others_land(
    two_way: tuple[Flows, Worker],
) -> None:
    flows, worker = two_way
    ids = contacts_made(flows, worker)
    helpdesk_calls = flows.helpdesk.calls["helpdesk"]
    for i, contact in enumerate(ids):
        email = "refused@example.com" if i == 2 else f"c{i}@new.example"
        flows.crm.update("Contact", contact, {"email": email})
    deliver(flows.crm)
    assert worker.run_once() == BATCH
    assert flows.helpdesk.calls["helpdesk"] == helpdesk_calls + 1
    [dead] = flows.runtime.queue.dead_letters(flow="customers")
    assert dead.record_key == ids[2] and dead.error["kind"] == "FixTheData" and dead.attempts <= 1
    assert "this address is refused" in dead.error["message"]
    emails = sorted(str(r["Email"]) for r in records(flows.helpdesk, "Customer"))
    assert emails == sorted(["c2@example.com", *(f"c{i}@new.example" for i in range(BATCH) if i != 2)])
    settle(flows, worker)  # the five echoes are dropped; the refused value is not remembered as synced
    assert flows.writes(flows.crm, "crm") == 0
    assert flows.runtime.queue.stats().retrying == 0
    flows.crm.update("Contact", ids[2], {"email": "c2@fixed.example"})  # fixed at its source: it lands
    settle(flows, worker)
    assert customers(flows).get("c2@fixed.example")


@pytest.mark.parametrize(
    ("two_way", "winner"), [("source_wins", "crm"), ("target_wins", "helpdesk")], indirect=["two_way"]
)
def test_a_conflict_inside_one_claimed_batch_is_settled_by_the_policy(
    two_way: tuple[Flows, Worker], winner: str
) -> None:
    flows, worker = two_way
    ids = contacts_made(flows, worker)
    crm_calls, helpdesk_calls = flows.crm.calls["crm"], flows.helpdesk.calls["helpdesk"]
    for i, contact in enumerate(ids):  # a batch of renames; the first contact's e-mail changes too...
        flows.crm.update(
            "Contact", contact, {"name": f"C{i} renamed", **({"email": "crm@x.example"} if i == 0 else {})}
        )
    flows.helpdesk.update("Customer", customers(flows)["c0@example.com"], {"Email": "helpdesk@x.example"})
    deliver(flows.crm, flows.helpdesk)  # ...and so does its customer's, before crmsync applies either
    assert worker.run_once() == BATCH + 1  # all claimed together
    expected = f"{winner}@x.example"
    assert email_of(flows, ids[0]) == expected
    assert sorted(customers(flows)) == sorted([expected, *(f"c{i}@example.com" for i in range(1, BATCH))])
    conflicts = synclog.query(flows.runtime.store, "customers", outcome="conflict")
    assert len(conflicts) == 1 and f"the {'source' if winner == 'crm' else 'target'} wins" in str(
        conflicts[0].message
    )
    # the renames (with the winning e-mail, if the crm's) are one call; the helpdesk's winning e-mail one more
    assert flows.helpdesk.calls["helpdesk"] == helpdesk_calls + 1
    assert flows.crm.calls["crm"] == crm_calls + (0 if winner == "crm" else 1)
    settle(flows, worker)
    assert email_of(flows, ids[0]) == expected
    assert customers(flows).get(expected)
    assert flows.writes(flows.crm, "crm") == (0 if winner == "crm" else 1)


def test_an_unexpected_error_planning_one_change_of_a_batch_fails_that_change_alone(
    two_way: tuple[Flows, Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    flows, worker = two_way
    ids = contacts_made(flows, worker)
    twoway = flows.runtime.twoway
    plan = twoway.plan

    def failing(flow: FlowRuntime, change: ClaimedChange) -> Plan:
        if change.record_key == ids[3]:
            raise ValueError("a value nobody foresaw")
        return plan(flow, change)

    monkeypatch.setattr(twoway, "plan", failing)
    helpdesk_calls = flows.helpdesk.calls["helpdesk"]
    for i, contact in enumerate(ids):
        flows.crm.update("Contact", contact, {"name": f"C{i} renamed"})
    deliver(flows.crm)
    assert worker.run_once() == BATCH
    assert flows.helpdesk.calls["helpdesk"] == helpdesk_calls + 1  # the five others, in one call
    names = {str(r["Email"]): r["FullName"] for r in records(flows.helpdesk, "Customer")}
    assert names == {f"c{i}@example.com": f"C{i}" if i == 3 else f"C{i} renamed" for i in range(BATCH)}
    stats = flows.runtime.queue.stats()
    assert (stats.retrying, stats.dead) == (1, 0)  # retried after a back-off, counted as an attempt
    monkeypatch.setattr(twoway, "plan", plan)
    settle(flows, worker)  # its retry lands
    assert sorted(str(r["FullName"]) for r in records(flows.helpdesk, "Customer")) == [
        f"C{i} renamed" for i in range(BATCH)
    ]


def test_a_batch_whose_call_fails_transiently_is_retried_whole_and_lands(
    two_way: tuple[Flows, Worker],
) -> None:
    flows, worker = two_way
    ids = contacts_made(flows, worker)
    for i, contact in enumerate(ids):
        flows.crm.update("Contact", contact, {"name": f"C{i} renamed"})
    deliver(flows.crm)
    writes = flows.writes(flows.helpdesk, "helpdesk")
    flows.helpdesk.fail_next(1, "retry")  # the vendor is down for the batch's call
    assert worker.run_once() == BATCH
    assert flows.writes(flows.helpdesk, "helpdesk") == writes  # nothing written
    assert flows.runtime.queue.stats().retrying == BATCH
    settle(flows, worker)
    assert flows.writes(flows.helpdesk, "helpdesk") == writes + BATCH  # each once, when it answers again
    assert sorted(str(r["FullName"]) for r in records(flows.helpdesk, "Customer")) == [
        f"C{i} renamed" for i in range(BATCH)
    ]
    assert flows.runtime.queue.dead_letters(flow="customers") == []


def test_deletes_on_both_sides_are_one_call_each_way(two_way: tuple[Flows, Worker]) -> None:
    flows, worker = two_way
    ids = contacts_made(flows, worker)
    by_email = customers(flows)
    crm_calls, helpdesk_calls = flows.crm.calls["crm"], flows.helpdesk.calls["helpdesk"]
    for contact in ids[:3]:
        flows.crm.delete("Contact", contact)
    for i in range(3, BATCH):
        flows.helpdesk.delete("Customer", by_email[f"c{i}@example.com"])
    deliver(flows.crm, flows.helpdesk)
    assert worker.run_once() == BATCH
    assert flows.helpdesk.calls["helpdesk"] == helpdesk_calls + 1  # three deletes, one call
    assert flows.crm.calls["crm"] == crm_calls + 1  # and three the other way
    assert records(flows.crm, "Contact") == records(flows.helpdesk, "Customer") == []
    settle(flows, worker)  # the deletions' own webhooks find nothing linked any more
    assert flows.helpdesk.calls["helpdesk"] == helpdesk_calls + 1
    assert flows.crm.calls["crm"] == crm_calls + 1
    assert flows.runtime.queue.dead_letters(flow="customers") == []


def test_a_change_whose_lease_is_lost_before_its_batch_is_sent_is_not_written(
    two_way: tuple[Flows, Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    flows, worker = two_way
    ids = contacts_made(flows, worker)
    for i, contact in enumerate(ids):
        flows.crm.update("Contact", contact, {"name": f"C{i} renamed"})
    deliver(flows.crm)
    asked: list[str] = []

    def lost(change: ClaimedChange) -> bool:
        """Another worker takes ``ids[1]`` over once it is planned (its lease ran out meanwhile)."""
        asked.append(change.record_key)
        return change.record_key == ids[1] and asked.count(ids[1]) > 1

    monkeypatch.setattr(worker, "_lost", lost)
    helpdesk_calls = flows.helpdesk.calls["helpdesk"]
    assert worker.run_once() == BATCH
    assert asked.count(ids[1]) == 2  # before planning it, and before sending its batch
    assert flows.helpdesk.calls["helpdesk"] == helpdesk_calls + 1
    names = {str(r["Email"]): r["FullName"] for r in records(flows.helpdesk, "Customer")}
    assert names == {f"c{i}@example.com": f"C{i}" if i == 1 else f"C{i} renamed" for i in range(BATCH)}
    assert flows.runtime.queue.stats().leased == 1  # left to the worker that holds it now


def test_a_batch_refused_for_its_credentials_pauses_the_flow_and_waits_whole(
    two_way: tuple[Flows, Worker],
) -> None:
    flows, worker = two_way
    ids = contacts_made(flows, worker)
    for i, contact in enumerate(ids):
        flows.crm.update("Contact", contact, {"name": f"C{i} renamed"})
    deliver(flows.crm)
    writes = flows.writes(flows.helpdesk, "helpdesk")
    flows.helpdesk.fail_next(1, "fatal")  # the helpdesk refuses crmsync's credentials
    assert worker.run_once() == BATCH
    assert flows.writes(flows.helpdesk, "helpdesk") == writes
    assert flows.runtime.health.active_flows() == []  # the flow is paused...
    stats = flows.runtime.queue.stats()
    assert (stats.pending, stats.leased, stats.dead, stats.retrying) == (
        BATCH,
        0,
        0,
        0,
    )  # ...its changes wait
    assert worker.run_once() == 0
