"""Two-way sync between a write and its note: the window in which a worker has written a value to
one side but not yet noted it as synced (another worker reads the record meanwhile, or the writer
is killed). A read of that side showing the value is crmsync's own echo, not an edit to copy back
over a newer one."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from crmsync.connectors.capabilities import Writable, require
from crmsync.engine.decide import news
from crmsync.engine.worker import Worker
from crmsync.store import shadow, synclog

from .test_memory_flows import Flows, deliver, flows_factory, records, settle, two_way

__all__ = ["flows_factory", "two_way"]  # the fixtures, shared with the in-memory flows' tests


def test_an_echo_read_before_the_writer_noted_its_write_is_not_copied_back(
    two_way: tuple[Flows, Worker],
) -> None:
    flows, worker = two_way
    runtime = flows.runtime
    flows.crm.insert("Contact", {"name": "Ada", "email": "ada@example.com"})
    settle(flows, worker)
    [customer] = flows.helpdesk.records("Customer")

    # a person changes the e-mail in the CRM; a worker plans and makes the write to the helpdesk,
    # then dies before noting it as synced (its lease still holds the change)
    contact = flows.crm.records("Contact")[0].id
    flows.crm.update("Contact", contact, {"email": "ada@new.example"})
    deliver(flows.crm)
    [change] = runtime.queue.claim("worker-that-dies", 10)
    flow = runtime.flows["customers"]
    plan = runtime.twoway.plan(flow, change)
    for step in plan.writes:
        [result] = require(runtime.connector(step.connection), Writable).write_batch(
            step.object_name, [step.write]
        )
        assert result.ok
    assert flows.helpdesk.records("Customer")[0].fields["Email"] == "ada@new.example"

    # the helpdesk's webhook of that write arrives; the person edits the e-mail again meanwhile
    deliver(flows.helpdesk)
    flows.crm.update("Contact", contact, {"email": "ada@newer.example"})
    deliver(flows.crm)
    worker.run_once()  # the echo: the CRM's change is still leased by the dead worker

    # the dead worker's lease runs out; its change and the newer edit are applied together
    time.sleep(runtime.config.worker.lease_seconds + 0.2)
    settle(flows, worker)
    assert records(flows.crm, "Contact") == [{"name": "Ada", "email": "ada@newer.example"}]
    assert flows.helpdesk.records("Customer")[0].fields["Email"] == "ada@newer.example"
    assert flows.writes(flows.crm, "crm") == 0  # nothing was ever copied back to where it came from
    assert not synclog.query(runtime.store, "customers", outcome="conflict")
    skipped = synclog.query(runtime.store, "customers", outcome="skipped")
    assert any(e.record_key == customer.id and "echo" in str(e.message) for e in skipped)


def test_a_value_crmsync_set_out_to_write_stays_known_after_a_newer_one_is_synced(
    two_way: tuple[Flows, Worker],
) -> None:
    flows, _ = two_way
    runtime, twoway = flows.runtime, flows.runtime.twoway
    flow = runtime.flows["customers"]
    start = datetime.now(UTC)
    twoway.remember(flow, "target", "T1", {"Email": "a@example.com"}, start - timedelta(minutes=1))
    twoway.intend(flow, "target", "T1", {"Email": "b@example.com"})  # its write hangs: landed or not?
    # a person's "c" (made at start) is written over it 2 s later
    twoway.remember(
        flow, "target", "T1", {"Email": "c@example.com"}, start, written_at=start + timedelta(seconds=2)
    )
    known = shadow.get_shadow(runtime.store, flow.target, "customers:target", "T1") or {}
    # a read stamped before "c" was written there, showing "b": the hung write had landed; no edit
    assert news(known, {"Email": "b@example.com"}, start + timedelta(seconds=1)).fields == {}
    # "b" seen well after "c" was written is somebody's edit
    late = start + timedelta(seconds=30)
    assert news(known, {"Email": "b@example.com"}, late).fields == {"Email": "b@example.com"}
    # and "c", noted as synced, holds: the same value again is no news
    assert news(known, {"Email": "c@example.com"}, late).fields == {}
