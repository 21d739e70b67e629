"""``crmsync preview`` plans what the worker then does: on two in-memory connections, the preview's
plan of each record equals what ``crmsync sync`` (the worker) did with it — creates, counterparts
adopted by the match field, updates found by the worker's strict comparison, records left alone,
fields travelling back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync.config import load_config
from crmsync.connectors.memory import MemorySystem
from crmsync.engine.preview import Preview
from crmsync.engine.runtime import Runtime
from crmsync.engine.sync import InitialSync
from crmsync.store import links, synclog

CONFIG = """\
version: 1
store: {{url: "sqlite:///{db}"}}
connections:
  crm: {{type: memory, system: {left}}}
  helpdesk: {{type: memory, system: {right}}}
flows:
  customers:
    source: crm
    source_object: Contact
    target: helpdesk
    object: Customer
    key: id
    when: {{field: status, in: [customer]}}
    match: {{field: Email, source: email}}
    conflict: {{policy: source_wins}}
    fields:
      - {{source: name, target: FullName}}
      - {{source: email, target: Email, direction: both}}
"""


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    left, right = f"crm-{uuid.uuid4().hex}", f"helpdesk-{uuid.uuid4().hex}"
    path = tmp_path / "crmsync.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "c.db", left=left, right=right))
    rt = Runtime(load_config(path), upgrade=True)
    yield rt
    rt.close()
    MemorySystem.discard(left)
    MemorySystem.discard(right)


def systems(rt: Runtime) -> tuple[MemorySystem, MemorySystem]:
    return MemorySystem.named(rt.config.connections["crm"].system), MemorySystem.named(  # type: ignore[union-attr]
        rt.config.connections["helpdesk"].system  # type: ignore[union-attr]
    )


def test_the_preview_s_plan_is_what_the_worker_then_does(runtime: Runtime) -> None:
    crm, helpdesk = systems(runtime)
    contact = {"status": "customer"}
    cy = crm.insert("Contact", {**contact, "name": "Cy", "email": "cy@example.com"})
    di = crm.insert("Contact", {**contact, "name": "Di", "email": "di@example.com"})
    ed = crm.insert("Contact", {**contact, "name": "Ed", "email": "ed@example.com"})
    gil = crm.insert("Contact", {**contact, "name": "Gil", "email": "gil@example.com"})
    first = InitialSync(runtime, poll_interval=0.01).run("customers", wait=5)
    assert first.complete and first.to_target.created == 4
    target = {key: links.get_link(runtime.store, "customers", "crm", key) for key in (cy, di, ed, gil)}

    ada = crm.insert("Contact", {**contact, "name": "Ada", "email": "ada@example.com"})
    bob = crm.insert("Contact", {**contact, "name": "Bob", "email": "bob@example.com"})
    bobs = helpdesk.insert("Customer", {"FullName": "Robert", "Email": "bob@example.com"})
    fay = crm.insert("Contact", {"status": "lead", "name": "Fay", "email": "fay@example.com"})
    crm.update("Contact", cy, {"name": "Cyril"})
    crm.update("Contact", ed, {"name": "Ed "})  # a loose comparison calls it unchanged; the worker does not
    gils = target[gil]
    assert gils is not None
    helpdesk.update("Customer", gils.target_id, {"Email": "gil@new.example"})

    preview = Preview(runtime)
    try:
        shown = preview.run("customers")
    finally:
        preview.close()
    planned = {p.record: (p.action, p.target_id) for p in shown.records}
    assert planned == {
        ada: ("create", None),
        bob: ("update", bobs),  # adopted by the match field, not created
        cy: ("update", target[cy].target_id),  # type: ignore[union-attr]
        di: ("unchanged", target[di].target_id),  # type: ignore[union-attr]
        ed: ("update", target[ed].target_id),  # type: ignore[union-attr]
        fay: ("skipped", None),
        gil: ("update", gils.target_id),
    }
    back = {
        p.record: [(c.field, c.new) for c in p.fields if c.direction == "to_source"] for p in shown.records
    }
    assert back[gil] == [("email", "gil@new.example")]

    before = {line.id for line in synclog.query(runtime.store, "customers", limit=1000)}
    summary = InitialSync(runtime, poll_interval=0.01).run("customers", wait=5)

    # what the worker did with each record of the source, as its sync log and the links say
    done: dict[str, tuple[str, str | None]] = {}
    for line in synclog.query(runtime.store, "customers", limit=1000):
        if line.id not in before and line.outcome == "applied" and line.source == "crm":
            link = links.get_link(runtime.store, "customers", "crm", line.record_key)
            done[line.record_key] = (str(line.operation), link.target_id if link else None)
    writes = {
        key: action for key, action in planned.items() if action[0] in ("create", "update") and key != gil
    }
    assert done == {key: (action, target_id or done[key][1]) for key, (action, target_id) in writes.items()}
    assert summary.complete
    assert (summary.to_target.created, summary.to_target.updated, summary.to_target.skipped) == (1, 3, 2)
    assert summary.to_source.updated == 1 and crm.get("Contact", gil).fields["email"] == "gil@new.example"  # type: ignore[union-attr]
    eds = target[ed]
    assert eds is not None and helpdesk.get("Customer", eds.target_id).fields["FullName"] == "Ed "  # type: ignore[union-attr]
    assert len(helpdesk.records("Customer")) == 6  # Bob's counterpart adopted, not made twice
