"""The generic poller: any polled source's changes queued per flow, the watermark stored with them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crmsync.connectors import registry
from crmsync.connectors.memory import MemorySystem
from crmsync.connectors.memory.settings import MemoryConnection
from crmsync.connectors.polling import PollTarget
from crmsync.engine.poller import WatermarkPoller, poller_for
from crmsync.engine.queue import ChangeQueue
from crmsync.store import watermarks
from crmsync.store.db import Store
from crmsync.store.schema import changes as t_changes


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[MemorySystem, Store, ChangeQueue, Any]]:
    name = f"poll-{uuid.uuid4().hex}"
    store = Store(f"sqlite:///{tmp_path / 'poll.db'}")
    store.upgrade()
    connector = registry.create("crm", MemoryConnection(type="memory", system=name))
    yield MemorySystem.named(name), store, ChangeQueue(store), connector
    connector.close()
    store.dispose()
    MemorySystem.discard(name)


def rows(store: Store) -> list[tuple[str, str, str, dict[str, Any]]]:
    c = t_changes.c
    with store.read() as conn:
        found = conn.execute(sa.select(c.flow, c.record_key, c.operation, c.payload).order_by(c.id)).all()
    return [(r.flow, r.record_key, r.operation, dict(r.payload or {})) for r in found]


def test_a_polled_source_without_its_own_cycle_gets_the_watermark_poller(rig: Any) -> None:
    system, store, queue, connector = rig
    poller = poller_for(connector, [PollTarget("contacts", "crm", "Contact", ("name",))], queue, store)
    assert isinstance(poller, WatermarkPoller)
    ada = system.insert("Contact", {"name": "Ada", "email": "ada@example.com"})

    first = poller.poll_once()
    assert (first.changes, first.calls) == (1, 1)
    assert rows(store) == [("contacts", ada, "upsert", {"name": "Ada"})]  # only the fields the flow reads
    assert poller.poll_once().changes == 0  # nothing new: nothing queued, the watermark held

    system.update("Contact", ada, {"name": "Ada Lovelace"})
    system.delete("Contact", system.insert("Contact", {"name": "Grace"}))
    assert poller.poll_once().changes == 2  # each record's latest version: Grace is read deleted
    assert [(r[2], r[3]) for r in rows(store)][-2:] == [("upsert", {"name": "Ada Lovelace"}), ("delete", {})]
    assert watermarks.get(store, "crm", "Contact") is not None


def test_flows_sharing_an_object_each_get_the_change_and_stamps_travel_when_asked(rig: Any) -> None:
    system, store, queue, connector = rig
    targets = [
        PollTarget("names", "crm", "Contact", ("name",)),
        PollTarget("emails", "crm", "Contact", ("email",), stamped=True),
    ]
    system.insert("Contact", {"name": "Ada", "email": "ada@example.com"})
    result = poller_for(connector, targets, queue, store).poll_once()
    assert result.per_target == {targets[0]: 1, targets[1]: 1}
    by_flow = {r[0]: r[3] for r in rows(store)}
    assert by_flow["names"] == {"name": "Ada"}
    assert by_flow["emails"]["email"] == "ada@example.com" and by_flow["emails"]["_at"]


def test_a_failed_call_skips_the_cycle_and_the_next_one_loses_nothing(rig: Any) -> None:
    system, store, queue, connector = rig
    poller = poller_for(connector, [PollTarget("contacts", "crm", "Contact", ("name",))], queue, store)
    system.insert("Contact", {"name": "Ada"})
    system.fail_next(1)
    assert poller.poll_once().skipped
    assert rows(store) == [] and watermarks.get(store, "crm", "Contact") is None
    assert poller.poll_once().changes == 1


def test_a_poller_reads_only_its_own_connection(rig: Any) -> None:
    _, store, queue, connector = rig
    with pytest.raises(ValueError, match="targets name other"):
        poller_for(connector, [PollTarget("f", "other", "Contact", ())], queue, store)
