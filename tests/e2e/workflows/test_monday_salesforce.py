"""W2 end to end: a Monday.com lead board with Salesforce as the system of record, both ways."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crmsync.config import load_config
from crmsync.engine.process import Process
from crmsync.engine.runtime import Runtime
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.store.db import Store

from ..conftest import ROOT, wait_until

RECIPE = ROOT / "examples" / "monday-salesforce" / "crmsync.yaml"
EVENTS = ("create_item", "change_column_value", "change_name", "item_deleted", "item_archived")


@dataclass
class W2:
    runtime: Runtime
    sf: SalesforceEmulator
    monday: MondayEmulator
    board: str

    def item(self, name: str) -> dict[str, Any]:
        return next(i for i in self.monday.items(self.board) if i["name"] == name)

    def settled(self) -> bool:
        s = self.runtime.queue.stats()
        return s.pending == 0 and s.leased == 0 and s.retrying == 0

    def sf_writes(self) -> int:
        """Calls that write records: sObject REST and Collections. (The poller's reads go through
        plain Composite, and so does the all-or-none creation, which the tests check apart.)"""
        return sum(
            1
            for c in self.sf.calls.calls()
            if c.method in ("POST", "PATCH", "DELETE") and "/sobjects" in c.path
        )

    def monday_deliveries(self) -> int:
        return len(self.monday.deliveries())

    def quiet(self, seconds: float = 1.5) -> None:
        """Nothing more is written on either side for ``seconds`` (a few poll intervals)."""
        assert self.monday.dispatcher.wait_idle(10)
        wait_until(self.settled)
        before = (self.sf_writes(), self.monday_deliveries())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = (self.sf_writes(), self.monday_deliveries())
            assert now == before, (
                f"a write bounced back: (Salesforce writes, monday deliveries) {before} -> {now}"
            )
            time.sleep(0.05)


@pytest.fixture
def w2(tmp_path: Path, salesforce: SalesforceEmulator) -> Iterator[W2]:
    monday = MondayEmulator(retry_delays=(0.2, 0.5))
    monday.seed("demo")
    with serve(monday):
        env = {**salesforce.credentials(), **monday.credentials()}
        path = tmp_path / "crmsync.yaml"
        path.write_text(RECIPE.read_text().replace("sqlite:///crmsync.db", f"sqlite:///{tmp_path / 'c.db'}"))
        cfg = load_config(path, environ=env)
        runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
        proc = Process(runtime, web=True, workers=2, host="127.0.0.1", port=0, poll_interval=0.2)
        proc.bind()
        thread = threading.Thread(target=proc.run, daemon=True)
        thread.start()
        board = monday.board_id("Leads")
        for event in EVENTS:
            monday.add_webhook(
                board, f"http://127.0.0.1:{proc.bound_port}/webhooks/monday/monday", event, app=True
            )
        try:
            yield W2(runtime, salesforce, monday, str(board))
        finally:
            proc.stop()
            thread.join(10)
            runtime.close()


def one(sf: SalesforceEmulator, obj: str, **match: Any) -> dict[str, Any]:
    rows = [r for r in sf.records(obj) if all(r.get(k) == v for k, v in match.items())]
    assert len(rows) == 1, f"{len(rows)} {obj} records match {match}"
    return rows[0]


def found(sf: SalesforceEmulator, obj: str, **match: Any) -> Callable[[], bool]:
    return lambda: any(all(r.get(k) == v for k, v in match.items()) for r in sf.records(obj))


def created_by_crmsync(sf: SalesforceEmulator, obj: str) -> list[str]:
    """Ids of the ``obj`` records crmsync created (the org's change journal, by client name)."""
    return [c["id"] for c in sf.changes(obj, client="crmsync") if c["operation"] == "create"]


def test_a_qualified_lead_creates_lead_account_contact_opportunity_linked_with_ids_written_back(
    w2: W2,
) -> None:
    jane = w2.item("Jane Cooper")
    w2.monday.ui_change_column(jane["id"], "status", "Qualified")
    wait_until(lambda: bool(w2.item("Jane Cooper")["columns"].get("text_mkr4oppt")))
    wait_until(w2.settled)
    made = {obj: created_by_crmsync(w2.sf, obj) for obj in ("Lead", "Account", "Contact", "Opportunity")}
    assert all(len(ids) == 1 for ids in made.values()), made
    lead, account, contact, opportunity = (w2.sf.get(obj, ids[0]) for obj, ids in made.items())
    assert lead and account and contact and opportunity
    assert (lead["FirstName"], lead["LastName"], lead["Company"]) == ("Jane", "Cooper", "Acme Corp")
    assert (lead["Email"], account["Name"], contact["Email"]) == (
        "jane@acme.example",
        "Acme Corp",
        "jane@acme.example",
    )
    assert contact["AccountId"] == account["Id"] and opportunity["AccountId"] == account["Id"]
    assert opportunity["StageName"] == "Qualification" and float(opportunity["Amount"]) == 12000
    columns = w2.item("Jane Cooper")["columns"]
    written_back = [columns[c] for c in ("text_mkr1lead", "text_mkr2acct", "text_mkr3cont", "text_mkr4oppt")]
    assert written_back == [lead["Id"], account["Id"], contact["Id"], opportunity["Id"]]

    w2.monday.ui_change_column(jane["id"], "status", "Quote")  # the lifecycle moves on
    wait_until(
        lambda: (w2.sf.get("Opportunity", opportunity["Id"]) or {}).get("StageName") == "Proposal/Price Quote"
    )
    wait_until(w2.settled)
    assert all(len(created_by_crmsync(w2.sf, obj)) == 1 for obj in made)


def test_a_lead_that_is_not_qualified_stays_out_of_salesforce(w2: W2) -> None:
    wade = w2.item("Wade Warren")
    w2.monday.ui_change_column(wade["id"], "phone", "+15550001111")
    wait_until(lambda: bool(w2.runtime.ledger.history(flow="leads", key=str(wade["id"]))))
    history = w2.runtime.ledger.history(flow="leads", key=str(wade["id"]))
    assert history[0]["outcome"] == "skipped" and "does not match" in history[0]["message"]
    assert not found(w2.sf, "Lead", Email="wade@globex.example")()


def test_an_edit_on_either_side_is_written_once_to_the_other_and_nothing_bounces(w2: W2) -> None:
    jane = w2.item("Jane Cooper")
    w2.monday.ui_change_column(jane["id"], "status", "Qualified")
    wait_until(lambda: bool(w2.item("Jane Cooper")["columns"].get("text_mkr4oppt")))
    wait_until(
        lambda: all(
            len(created_by_crmsync(w2.sf, o)) == 1 for o in ("Lead", "Account", "Contact", "Opportunity")
        )
    )
    w2.quiet()
    [lead_id] = created_by_crmsync(w2.sf, "Lead")

    writes, deliveries = w2.sf_writes(), w2.monday_deliveries()
    w2.monday.ui_change_column(jane["id"], "phone", "+15550002222")  # Monday → Salesforce
    wait_until(lambda: "5550002222" in ((w2.sf.get("Lead", lead_id) or {}).get("Phone") or ""))
    w2.quiet()
    assert w2.sf_writes() == writes + 1  # one update of the Lead
    assert w2.monday_deliveries() == deliveries + 1  # the person's edit; nothing written back

    writes, deliveries = w2.sf_writes(), w2.monday_deliveries()
    w2.sf.update("Lead", lead_id, {"Company": "Acme Holdings"})  # Salesforce → Monday, found by the poller
    wait_until(lambda: w2.item("Jane Cooper")["columns"].get("text") == "Acme Holdings")
    w2.quiet()
    assert w2.monday_deliveries() == deliveries + 1  # crmsync's one write; its echo is recognised
    assert w2.sf_writes() == writes  # and nothing went back to Salesforce
