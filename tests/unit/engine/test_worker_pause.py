"""A flow paused by an error that came after its write was sent gives its changes back as changes
that may have landed: when it resumes, their writes say so (``Write.maybe_applied``), and a vendor
without idempotency keys finds the record the first attempt made instead of making a second one."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from crmsync.config import load_config
from crmsync.connectors.base import Write, WriteResult
from crmsync.connectors.memory import MemorySystem
from crmsync.engine.queue import NewChange
from crmsync.engine.runtime import Runtime
from crmsync.engine.worker import Worker
from crmsync.errors import Fatal
from crmsync.store import pauses

CONFIG = """
version: 1
store: {url: "sqlite:///%(db)s"}
connections:
  shop: {type: app}
  crm: {type: memory, system: %(crm)s}
  board: {type: memory, system: %(board)s, replay_seconds: 0}
flows:
  orders:
    source: shop
    target: board
    object: Card
    key: id
    fields:
      - {source: id, target: OrderId}
      - {source: name, target: Name}
  contacts:
    source: crm
    source_object: Contact
    target: board
    object: Customer
    key: id
    fields:
      - {source: name, target: Name}
"""

MARKER = "Marker"


class LandsThenFatal:
    """A target without idempotency keys, like Trello: a create leaves a marker (its write's key) in
    the record it makes, and a create said to be maybe applied is first looked up by it. Its next
    call lands, then fails as a session revoked before the answer came does: Fatal."""

    def __init__(
        self, system: MemorySystem, write_batch: Callable[[str, Sequence[Write]], list[WriteResult]]
    ) -> None:
        self.system = system
        self.inner = write_batch
        self.sent: list[Write] = []
        self.fail = True

    def write_batch(self, object_name: str, writes: Sequence[Write]) -> list[WriteResult]:
        self.sent.extend(writes)
        results = [self._write(object_name, w) for w in writes]
        if self.fail:
            self.fail = False
            raise Fatal("the session was revoked before the answer came", status=401)
        return results

    def _write(self, object_name: str, w: Write) -> WriteResult:
        if w.operation != "create":
            [result] = self.inner(object_name, [w])
            return result
        if w.maybe_applied:
            found = self.system.find(object_name, MARKER, w.key)
            if found:
                return WriteResult(w.key, True, target_id=found[0].id, created=False)
        [result] = self.inner(object_name, [dataclasses.replace(w, fields={**w.fields, MARKER: w.key})])
        return result


@dataclasses.dataclass
class Setup:
    runtime: Runtime
    crm: MemorySystem
    board: LandsThenFatal


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    crm, board = f"crm-{uuid.uuid4().hex}", f"board-{uuid.uuid4().hex}"
    path = tmp_path / "crmsync.yaml"
    path.write_text(CONFIG % {"db": tmp_path / "c.db", "crm": crm, "board": board})
    rt = Runtime(load_config(path), upgrade=True)
    rt.health.probe_seconds = 0  # a paused flow's connection is probed at once: it resumes if it answers
    target = rt.connector("board")
    fake = LandsThenFatal(MemorySystem.named(board), target.write_batch)  # type: ignore[attr-defined]
    monkeypatch.setattr(target, "write_batch", fake.write_batch)
    yield Setup(rt, MemorySystem.named(crm), fake)
    rt.close()
    MemorySystem.discard(crm)
    MemorySystem.discard(board)


def paused(runtime: Runtime) -> list[str]:
    return [p.flow for p in pauses.list_pauses(runtime.store)]


def test_a_create_that_landed_before_a_fatal_is_found_not_made_again_when_the_flow_resumes(
    setup: Setup,
) -> None:
    runtime, board = setup.runtime, setup.board
    worker = Worker(runtime, owner="w")
    runtime.queue.enqueue([NewChange("shop", "orders", "o1", "upsert", {"id": "o1", "name": "First order"})])
    assert worker.run_once() == 1  # the card is made, then the session is refused: the flow pauses
    assert paused(runtime) == ["orders"]
    assert len(board.system.records("Card")) == 1
    assert worker.run_once() == 1  # the connection answers again: the flow resumes, the change is sent
    assert paused(runtime) == []
    [card] = board.system.records("Card")  # found by its marker, not made twice
    assert card.fields == {"OrderId": "o1", "Name": "First order", MARKER: "o1"}
    first, again = board.sent
    assert not first.maybe_applied and again.maybe_applied
    assert runtime.queue.stats().pending == 0


def test_a_two_way_flow_paused_mid_batch_flags_only_the_changes_it_began_to_write(
    setup: Setup,
) -> None:
    runtime, crm, board = setup.runtime, setup.crm, setup.board
    ada = crm.insert("Contact", {"name": "Ada"})
    bob = crm.insert("Contact", {"name": "Bob"})
    runtime.queue.enqueue([NewChange("crm", "contacts", key, "upsert", {}) for key in (ada, bob)])
    worker = Worker(runtime, owner="w")
    assert worker.run_once() == 2  # Ada's customer is made, then the flow pauses: Bob's is not begun
    assert paused(runtime) == ["contacts"]
    assert worker.run_once() == 2  # resumed: Ada's create may have landed, Bob's was never sent
    assert sorted(r.fields["Name"] for r in board.system.records("Customer")) == ["Ada", "Bob"]
    assert [(w.key, w.maybe_applied) for w in board.sent] == [(ada, False), (ada, True), (bob, False)]
