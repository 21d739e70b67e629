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
from crmsync.engine.runtime import Runtime
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
    webhook_secret: helpdesk-signing-secret
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

    def make(*, two_way: bool, policy: str = "owner_wins") -> Flows:
        left, right = f"crm-{uuid.uuid4().hex}", f"helpdesk-{uuid.uuid4().hex}"
        path = tmp_path / "crmsync.yaml"
        both = ", direction: both" if two_way else ""
        path.write_text(
            CONFIG.format(db=tmp_path / "crmsync.db", left=left, right=right, policy=policy, both=both)
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
    flows = flows_factory(two_way=True, policy=getattr(request, "param", "owner_wins"))
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
