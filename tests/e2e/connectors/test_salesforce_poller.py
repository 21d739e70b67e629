"""The Salesforce poller against the Salesforce emulator: changes become change rows exactly once."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crmsync.connectors.salesforce import SalesforceConnector, SalesforceSettings
from crmsync.connectors.salesforce.connector import parse_stamp
from crmsync.connectors.salesforce.poll_plan import format_stamp
from crmsync.connectors.salesforce.poller import PollTarget, SalesforcePoller
from crmsync.engine.poller import QueueSink
from crmsync.engine.queue import ChangeQueue
from crmsync.errors import Fatal
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.tls import Materials
from crmsync.store import watermarks
from crmsync.store.db import Store
from crmsync.store.schema import changes as t_changes

from ..conftest import wait_until

CONNECTION = "sf"
ACCOUNTS = PollTarget("accounts", CONNECTION, "Account", ("Name", "Industry"))
CONTACTS = PollTarget("contacts", CONNECTION, "Contact", ("LastName", "Email", "Account.Name"))


def settings_for(emu: SalesforceEmulator) -> SalesforceSettings:
    env = emu.credentials()
    return SalesforceSettings(
        auth="jwt",
        login_url=env["SALESFORCE_LOGIN_URL"],
        client_id=env["SALESFORCE_CLIENT_ID"],
        username=env["SALESFORCE_USERNAME"],
        private_key_file=Path(env["SALESFORCE_JWT_KEY_FILE"]),
        ca_file=Path(env["SALESFORCE_CA_FILE"]),
        timeout_seconds=5.0,
        client_name="crmsync-e2e",
    )


def org_clock(emu: SalesforceEmulator) -> Callable[[], dt.datetime]:
    """The poller's clock, following the org's (which tests move with ``advance_clock``)."""
    return lambda: dt.datetime.now(dt.UTC) + dt.timedelta(seconds=emu.clock_offset)


class Rig:
    """A store on a SQLite file, its queue, and pollers for the org."""

    def __init__(self, emu: SalesforceEmulator, path: Path) -> None:
        self.emu = emu
        emu.advance_clock(2)  # the seed is older than any poller's start (stamps have whole seconds)
        self.store = Store(f"sqlite:///{path}")
        self.store.upgrade()
        self.queue = ChangeQueue(self.store)
        self.connectors: list[SalesforceConnector] = []

    def poller(self, targets: list[PollTarget], **kw: Any) -> SalesforcePoller:
        connector = SalesforceConnector(CONNECTION, settings=settings_for(self.emu))
        self.connectors.append(connector)
        kw.setdefault("clock", org_clock(self.emu))
        return SalesforcePoller(connector, QueueSink(self.queue), self.store, targets, **kw)

    def rows(self) -> list[dict[str, Any]]:
        c = t_changes.c
        query = sa.select(c.source, c.flow, c.record_key, c.operation, c.payload, c.delivery_id).order_by(
            c.id
        )
        with self.store.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def composite_calls(self) -> int:
        return self.emu.calls.count("POST", "/composite")

    def close(self) -> None:
        for connector in self.connectors:
            connector.close()
        self.store.dispose()


@pytest.fixture
def rig(salesforce: SalesforceEmulator, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(salesforce, tmp_path / "crmsync.db")
    yield r
    r.close()


def hard_delete(emu: SalesforceEmulator, object_name: str, record_id: str) -> None:
    """Delete past the recycle bin (as a Bulk ``hardDelete`` does): only ``/deleted`` still lists it."""
    with emu.lock:
        obj = emu.org.schema.get(object_name)
        assert obj is not None
        emu.org.store.delete(obj, record_id, hard=True)


def ops(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["record_key"], r["operation"]) for r in rows]


def test_inserts_updates_and_deletes_become_changes_once(rig: Rig, salesforce: SalesforceEmulator) -> None:
    poller = rig.poller([ACCOUNTS, CONTACTS])
    first = poller.poll_once()  # no watermark: starts now; the billing seed is not replayed
    assert (first.changes, first.calls) == (0, 1)

    salesforce.advance_clock(5)
    a1 = salesforce.insert("Account", {"Name": "Initech", "Industry": "Technology"})
    a2 = salesforce.insert("Account", {"Name": "Hooli"})
    c1 = salesforce.insert("Contact", {"LastName": "Lumbergh", "Email": "bill@initech.test", "AccountId": a1})
    result = poller.poll_once()
    assert result.changes == 3 and result.calls == 1
    assert result.per_target == {ACCOUNTS: 2, CONTACTS: 1}
    rows = rig.rows()
    assert {r["record_key"]: r["payload"] for r in rows} == {
        a1: {"Name": "Initech", "Industry": "Technology"},
        a2: {"Name": "Hooli", "Industry": None},
        c1: {"LastName": "Lumbergh", "Email": "bill@initech.test", "Account.Name": "Initech"},
    }
    assert all(len(r["record_key"]) == 18 and r["source"] == CONNECTION for r in rows)
    assert {r["flow"] for r in rows if r["record_key"] == c1} == {"contacts"}
    assert all(r["delivery_id"].startswith(f"sf:{r['record_key']}:") for r in rows)

    again = poller.poll_once()  # the overlap reads them again: nothing new
    assert again.changes == 0 and again.duplicates == 3

    salesforce.advance_clock(5)
    salesforce.update("Account", a1, {"Industry": "Banking"})
    salesforce.delete("Account", a2)
    result = poller.poll_once()
    assert result.changes == 2
    assert ops(rig.rows()[3:]) == [(a1, "upsert"), (a2, "delete")]
    assert rig.rows()[3]["payload"] == {"Name": "Initech", "Industry": "Banking"}
    assert rig.rows()[4]["delivery_id"] == f"sf-del:{a2}"

    # a minute later the /deleted window is due: it lists a2 again (no new row) and a hard delete
    a3 = salesforce.insert("Account", {"Name": "Vandelay"})
    assert poller.poll_once().changes == 1
    hard_delete(salesforce, "Account", a3)
    salesforce.advance_clock(125)
    calls_before = rig.composite_calls()
    result = poller.poll_once()
    assert result.calls == 1 and rig.composite_calls() - calls_before == 1  # deletions ride along
    assert result.changes == 1
    assert ops(rig.rows()[6:]) == [(a3, "delete")]
    assert poller.poll_once().changes == 0

    # exactly once: every (record, operation, payload) appears once
    rows = rig.rows()
    assert len({r["delivery_id"] for r in rows}) == len(rows) == 7
    assert ops(rows) == [
        (a1, "upsert"),
        (a2, "upsert"),
        (c1, "upsert"),
        (a1, "upsert"),
        (a2, "delete"),
        (a3, "upsert"),
        (a3, "delete"),
    ]


def test_two_edits_within_one_second_are_two_changes(rig: Rig, salesforce: SalesforceEmulator) -> None:
    poller = rig.poller([ACCOUNTS])
    poller.poll_once()
    stamp = format_stamp(org_clock(salesforce)() + dt.timedelta(seconds=3))
    a1 = salesforce.insert("Account", {"Name": "Same second", "SystemModstamp": stamp})
    assert poller.poll_once().changes == 1
    salesforce.update("Account", a1, {"Industry": "Energy", "SystemModstamp": stamp})
    assert poller.poll_once().changes == 1  # the same (Id, SystemModstamp), other values
    assert [r["payload"]["Industry"] for r in rig.rows()] == [None, "Energy"]


def test_thirty_objects_take_six_composite_calls_per_cycle(rig: Rig, salesforce: SalesforceEmulator) -> None:
    names = [f"Poll{i:02d}__c" for i in range(30)]
    for name in names:
        salesforce.define_object(name, {"label": name, "fields": {"Code__c": {"type": "string"}}})
    targets = [PollTarget(f"flow-{name}", CONNECTION, name, ("Code__c",)) for name in names]
    poller = rig.poller(targets)

    before = rig.composite_calls()
    assert poller.poll_once().calls == 6  # 5 query subrequests per Composite call (Salesforce's limit)
    assert rig.composite_calls() - before == 6

    salesforce.advance_clock(5)
    ids = {name: salesforce.insert(name, {"Code__c": f"code-{name}"}) for name in names}
    before = rig.composite_calls()
    result = poller.poll_once()
    assert result.calls == 6 and rig.composite_calls() - before == 6
    assert result.changes == 30 and set(result.per_target.values()) == {1}
    assert {(r["flow"], r["record_key"]) for r in rig.rows()} == {(f"flow-{n}", ids[n]) for n in names}

    # with every /deleted window due, the 30 checks fit in the free slots of the same 6 calls
    salesforce.advance_clock(125)
    before = rig.composite_calls()
    assert poller.poll_once().calls == 6
    assert rig.composite_calls() - before == 6
    assert rig.composite_calls() == salesforce.calls.count(None, "/services/data/")  # nothing else


def test_watermark_survives_a_restart(rig: Rig, salesforce: SalesforceEmulator) -> None:
    poller = rig.poller([ACCOUNTS])
    poller.poll_once()
    salesforce.advance_clock(5)
    a1 = salesforce.insert("Account", {"Name": "Before the restart"})
    assert poller.poll_once().changes == 1
    mark = watermarks.get(rig.store, CONNECTION, "Account")
    assert mark == salesforce.get("Account", a1)["SystemModstamp"]  # type: ignore[index]

    salesforce.advance_clock(30)  # the poller is down for a while; the org changes meanwhile
    a2 = salesforce.insert("Account", {"Name": "While stopped"})
    restarted = rig.poller([ACCOUNTS])  # start="now" does not move a stored watermark
    result = restarted.poll_once()
    assert result.changes == 1
    assert ops(rig.rows()) == [(a1, "upsert"), (a2, "upsert")]
    assert watermarks.get(rig.store, CONNECTION, "Account") == salesforce.get("Account", a2)["SystemModstamp"]  # type: ignore[index]


def test_start_from_the_beginning_reads_every_record_once(rig: Rig, salesforce: SalesforceEmulator) -> None:
    existing = {r["Id"] for r in salesforce.records("Account")}
    assert existing  # the billing seed
    poller = rig.poller([ACCOUNTS], start="beginning")
    assert poller.poll_once().changes == len(existing)
    assert poller.poll_once().changes == 0
    assert {r["record_key"] for r in rig.rows()} == existing


def test_a_503_skips_the_cycle_and_loses_nothing(
    rig: Rig, salesforce: SalesforceEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    poller = rig.poller([ACCOUNTS])
    poller.poll_once()
    mark = watermarks.get(rig.store, CONNECTION, "Account")
    salesforce.advance_clock(5)
    a1 = salesforce.insert("Account", {"Name": "During the outage"})
    salesforce.faults.add(
        method="POST", path="^/services/data/v[0-9.]+/composite$", error="unavailable", count=1
    )
    skipped = poller.poll_once()
    assert skipped.skipped and skipped.changes == 0 and skipped.calls == 0
    assert watermarks.get(rig.store, CONNECTION, "Account") == mark
    result = poller.poll_once()
    assert not result.skipped and result.changes == 1
    assert ops(rig.rows()) == [(a1, "upsert")]

    # the loop: three failing cycles log one warning, then one notice when polling resumes
    caplog.set_level(logging.INFO, logger="crmsync.connectors.salesforce.poller")
    caplog.clear()
    salesforce.faults.add(method="POST", path="/composite", error="unavailable", count=3)
    a2 = salesforce.insert("Account", {"Name": "After three failures"})
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop, 0.02), daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(rig.rows()) == 2, timeout=10)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert ops(rig.rows()) == [(a1, "upsert"), (a2, "upsert")]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("paused" in m for m in messages) == 1
    assert sum("resumed after 3 skipped cycles" in m for m in messages) == 1


def test_full_pages_continue_after_the_last_row_even_within_one_stamp(
    rig: Rig, salesforce: SalesforceEmulator
) -> None:
    poller = rig.poller([ACCOUNTS], page_limit=5)
    poller.poll_once()
    stamp = format_stamp(org_clock(salesforce)() + dt.timedelta(seconds=3))
    ids = {salesforce.insert("Account", {"Name": f"Bulk {i}", "SystemModstamp": stamp}) for i in range(12)}
    result = poller.poll_once()
    assert result.changes == 12 and result.calls == 3  # 5 + 5 + 2 rows, one round each
    assert {r["record_key"] for r in rig.rows()} == ids
    assert poller.poll_once().changes == 0


@pytest.fixture
def paged_org(materials: Materials) -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator(materials=materials, page_size=40)
    emulator.seed("billing")
    with serve(emulator, materials=materials):
        yield emulator


def test_next_pages_are_followed_through_composite(paged_org: SalesforceEmulator, tmp_path: Path) -> None:
    r = Rig(paged_org, tmp_path / "paged.db")
    try:
        poller = r.poller([ACCOUNTS])
        poller.poll_once()
        paged_org.advance_clock(5)
        ids = {paged_org.insert("Account", {"Name": f"Paged {i}"}) for i in range(100)}
        result = poller.poll_once()
        assert result.changes == 100 and result.calls == 3  # pages of 40, 40 and 20
        assert paged_org.calls.count("GET") == 0  # every page came through Composite
        assert {row["record_key"] for row in r.rows()} == ids
    finally:
        r.close()


def test_flows_sharing_an_object_share_one_query(rig: Rig, salesforce: SalesforceEmulator) -> None:
    names = PollTarget("names", CONNECTION, "Account", ("Name",))
    industries = PollTarget("industries", CONNECTION, "Account", ("Industry", "name"))
    poller = rig.poller([names, industries])
    poller.poll_once()
    salesforce.advance_clock(5)
    a1 = salesforce.insert("Account", {"Name": "Shared", "Industry": "Retail"})
    result = poller.poll_once()
    assert result.calls == 1 and result.per_target == {names: 1, industries: 1}
    salesforce.delete("Account", a1)
    assert poller.poll_once().changes == 2
    by_flow = {(r["flow"], r["operation"]): r for r in rig.rows()}
    assert by_flow["names", "upsert"]["payload"] == {"Name": "Shared"}
    assert by_flow["industries", "upsert"]["payload"] == {"Industry": "Retail", "name": "Shared"}
    assert by_flow["industries", "delete"]["delivery_id"] == f"sf-del:{a1}:industries"


def test_a_refused_query_is_fatal_after_the_other_objects_are_stored(
    rig: Rig, salesforce: SalesforceEmulator
) -> None:
    broken = PollTarget("broken", CONNECTION, "Contact", ("No_Such_Field__c",))
    poller = rig.poller([broken, ACCOUNTS])
    salesforce.advance_clock(5)
    with pytest.raises(Fatal, match="No_Such_Field__c") as info:
        poller.poll_once()
    assert info.value.object_name == "Contact"
    a1 = salesforce.insert("Account", {"Name": "Still polled"})
    with pytest.raises(Fatal):
        poller.poll_once()
    assert ops(rig.rows()) == [(a1, "upsert")]


def test_deletions_past_the_retention_are_reported(
    rig: Rig, salesforce: SalesforceEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    poller = rig.poller([ACCOUNTS])
    poller.poll_once()
    old = parse_stamp(watermarks.get(rig.store, CONNECTION, "Account/deleted") or "") - dt.timedelta(days=20)
    watermarks.put(rig.store, CONNECTION, "Account/deleted", format_stamp(old))
    caplog.set_level(logging.WARNING, logger="crmsync.connectors.salesforce.poller")
    result = poller.poll_once()
    assert not result.skipped
    assert any(
        "deletions may be lost" in r.getMessage() and "accounts" in r.getMessage() for r in caplog.records
    )
    new_mark = parse_stamp(watermarks.get(rig.store, CONNECTION, "Account/deleted") or "")
    assert new_mark > old + dt.timedelta(days=14)
