"""W2 end to end: a Monday.com lead board with Salesforce as the system of record, both ways."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from crmsync.config import load_config
from crmsync.connectors.salesforce.poller import SalesforcePoller
from crmsync.engine.poller import QueueSink
from crmsync.engine.reconcile import BoardReconciler
from crmsync.engine.runtime import Runtime
from crmsync.engine.worker import Worker
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.monday.store import iso_now
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.service.process import Process
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
    url: str

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
                f"a write bounced back: (Salesforce writes, monday deliveries) {before} -> {now}; "
                f"last delivery: {self.monday.deliveries()[-1]}; "
                f"sync log: {[(h['source'], h['message']) for h in self.runtime.ledger.history(limit=5)]}"
            )
            time.sleep(0.05)


@pytest.fixture
def w2(tmp_path: Path, salesforce: SalesforceEmulator) -> Iterator[W2]:
    yield from start_w2(tmp_path, salesforce, workers=2)


@pytest.fixture
def w2_by_hand(tmp_path: Path, salesforce: SalesforceEmulator) -> Iterator[W2]:
    """Webhooks are received, but nothing is applied or polled until the test says so."""
    yield from start_w2(tmp_path, salesforce, workers=0)


def start_w2(
    tmp_path: Path,
    salesforce: SalesforceEmulator,
    *,
    workers: int,
    recipe: str | None = None,
    initial_sync: bool = False,
) -> Iterator[W2]:
    """crmsync on the demo board. By default the board's earlier items stay as they are
    (``initial_sync: false``): the tests create and edit the items they look at."""
    monday = MondayEmulator(retry_delays=(0.2, 0.5))
    monday.seed("demo")
    seeded = iso_now()
    wait_until(lambda: iso_now() > seeded)  # what crmsync hears of is later than the seed (whole seconds)
    with serve(monday):
        env = {**salesforce.credentials(), **monday.credentials()}
        path = tmp_path / "crmsync.yaml"
        text = recipe if recipe is not None else RECIPE.read_text()
        text = with_initial_sync(text, initial_sync)
        path.write_text(text.replace("sqlite:///crmsync.db", f"sqlite:///{tmp_path / 'c.db'}"))
        cfg = load_config(path, environ=env)
        runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
        proc = Process(
            runtime,
            web=True,
            workers=workers,
            host="127.0.0.1",
            port=0,
            poll_interval=0.2,
            reconcile_interval=0.5,
        )
        proc.bind()
        thread = threading.Thread(target=proc.run, daemon=True)
        thread.start()
        board = monday.board_id("Leads")
        wait_until(lambda: serving(f"http://127.0.0.1:{proc.bound_port}/healthz"))
        for event in EVENTS:
            monday.add_webhook(
                board, f"http://127.0.0.1:{proc.bound_port}/webhooks/monday/monday", event, app=True
            )
        try:
            yield W2(runtime, salesforce, monday, str(board), f"http://127.0.0.1:{proc.bound_port}")
        finally:
            proc.stop()
            thread.join(10)
            runtime.close()


def with_initial_sync(recipe: str, initial_sync: bool) -> str:
    """The recipe with the leads flow's ``initial_sync`` set."""
    text, n = re.subn(
        r"(\n    key: id[^\n]*\n)", rf"\1    initial_sync: {str(initial_sync).lower()}\n", recipe, count=1
    )
    assert n == 1
    return text


def serving(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


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


def qualify(w2: W2, name: str) -> dict[str, str]:
    """Qualify a lead and wait for its Salesforce records; their ids by object."""
    item = w2.item(name)
    w2.monday.ui_change_column(item["id"], "status", "Qualified")
    wait_until(lambda: bool(w2.item(name)["columns"].get("text_mkr4oppt")))
    w2.quiet()
    columns = w2.item(name)["columns"]
    return {
        "item": str(item["id"]),
        "Lead": columns["text_mkr1lead"],
        "Account": columns["text_mkr2acct"],
        "Opportunity": columns["text_mkr4oppt"],
    }


def test_a_new_qualified_item_a_rename_and_a_deletion_reach_salesforce(w2: W2) -> None:
    item = w2.monday.ui_create_item(
        w2.board,
        "Ada Lovelace",
        values={"status": "Qualified", "email": "ada@engines.example", "text": "Engines"},
    )
    wait_until(lambda: bool(w2.monday.item(item)["columns"].get("text_mkr1lead")))
    lead_id = w2.monday.item(item)["columns"]["text_mkr1lead"]
    lead = w2.sf.get("Lead", lead_id) or {}
    assert (lead.get("FirstName"), lead.get("LastName"), lead.get("Company")) == (
        "Ada",
        "Lovelace",
        "Engines",
    )

    w2.monday.ui_rename_item(item, "Ada King Lovelace")  # update_name
    wait_until(lambda: (w2.sf.get("Lead", lead_id) or {}).get("FirstName") == "Ada King")

    w2.monday.ui_delete_item(item)  # delete_pulse
    wait_until(
        lambda: w2.sf.get("Lead", lead_id) is None or bool(w2.sf.get("Lead", lead_id).get("IsDeleted"))
    )


def test_the_seed_payload_shape_of_update_column_value_is_understood(w2: W2) -> None:
    """The seed's handler read boardId, pulseId, columnId and value.label.text of a status change."""
    ids = qualify(w2, "Jane Cooper")
    w2.monday.ui_change_column(ids["item"], "status", "MOU")
    wait_until(
        lambda: (w2.sf.get("Opportunity", ids["Opportunity"]) or {}).get("StageName") == "Negotiation/Review"
    )
    delivery = next(
        d["event"] for d in reversed(w2.monday.deliveries()) if d["event"].get("columnId") == "status"
    )
    assert (
        delivery["value"]["label"]["text"] == "MOU"
        and delivery["previousValue"]["label"]["text"] == "Qualified"
    )


def test_duplicated_and_reordered_deliveries_neither_duplicate_nor_roll_back(w2: W2) -> None:
    ids = qualify(w2, "Jane Cooper")
    w2.monday.faults.add(webhook="duplicate", count=2)
    w2.monday.ui_change_column(ids["item"], "status", "Follow-up")
    wait_until(
        lambda: (w2.sf.get("Opportunity", ids["Opportunity"]) or {}).get("StageName") == "Needs Analysis"
    )
    w2.monday.faults.add(webhook="reorder", count=1)
    w2.monday.ui_change_column(ids["item"], "phone", "+15550000001")  # held back by the fault...
    w2.monday.ui_change_column(ids["item"], "phone", "+15550000002")  # ...and delivered after this one
    w2.quiet()
    assert "5550000002" in ((w2.sf.get("Lead", ids["Lead"]) or {}).get("Phone") or "")
    assert all(
        len(created_by_crmsync(w2.sf, obj)) == 1 for obj in ("Lead", "Account", "Contact", "Opportunity")
    )


def test_a_dropped_delivery_is_caught_by_the_next_reconcile(w2: W2) -> None:
    ids = qualify(w2, "Jane Cooper")
    w2.monday.faults.add(webhook="drop", count=1)
    w2.monday.ui_change_column(ids["item"], "phone", "+15550009999")
    assert w2.monday.dispatcher.wait_idle(10) and w2.monday.deliveries()[-1]["status"] is None  # lost
    wait_until(lambda: "5550009999" in ((w2.sf.get("Lead", ids["Lead"]) or {}).get("Phone") or ""))


def test_an_edit_on_both_sides_between_two_syncs_is_settled_by_the_policy_and_logged(w2_by_hand: W2) -> None:
    w2 = w2_by_hand
    worker = Worker(w2.runtime, owner="test", batch_size=50)
    [targets] = w2.runtime.poll_targets().values()
    poller = SalesforcePoller(
        w2.runtime.connector("salesforce"), QueueSink(w2.runtime.queue), w2.runtime.store, targets
    )  # type: ignore[arg-type]

    def sync() -> None:
        """What the workers and the poller would do, until nothing is left."""
        assert w2.monday.dispatcher.wait_idle(10)
        poller.poll_once()
        while worker.run_once():
            assert w2.monday.dispatcher.wait_idle(10)

    item = w2.item("Jane Cooper")
    poller.poll_once()  # the watermark starts now
    w2.monday.ui_change_column(item["id"], "status", "Qualified")
    wait_until(lambda: w2.runtime.queue.stats().pending > 0)
    sync()
    lead_id = w2.item("Jane Cooper")["columns"]["text_mkr1lead"]
    sync()

    w2.sf.update("Lead", lead_id, {"Company": "Acme (Salesforce)"})  # an edit in Salesforce...
    w2.sf.advance_clock(1)
    poller.poll_once()
    w2.monday.ui_change_column(item["id"], "text", "Acme (Monday)")  # ...and a later one on the board
    wait_until(lambda: w2.runtime.queue.stats().pending >= 2)
    sync()

    conflicts = [h for h in w2.runtime.ledger.history(flow="leads", limit=50) if h["outcome"] == "conflict"]
    history = [
        (h["source"], h["outcome"], h["message"]) for h in w2.runtime.ledger.history(flow="leads", limit=12)
    ]
    assert len(conflicts) == 1 and "newest_wins" in conflicts[0]["message"], history
    assert (w2.sf.get("Lead", lead_id) or {}).get("Company") == "Acme (Monday)"
    assert w2.item("Jane Cooper")["columns"]["text"] == "Acme (Monday)"


def test_a_lead_deleted_in_salesforce_deletes_its_item(w2: W2) -> None:
    ids = qualify(w2, "Jane Cooper")
    w2.sf.delete("Lead", ids["Lead"])
    wait_until(lambda: all(i["name"] != "Jane Cooper" for i in w2.monday.items(w2.board)))
    wait_until(  # the log line is written once the item is gone
        lambda: any(
            h["outcome"] == "applied" and "deleted" in (h["message"] or "")
            for h in w2.runtime.ledger.history(flow="leads", key=ids["Lead"])
        )
    )


def test_a_lead_already_in_salesforce_is_matched_by_email_not_duplicated(
    tmp_path: Path, salesforce: SalesforceEmulator
) -> None:
    existing = salesforce.insert(
        "Lead", {"LastName": "Warren", "Company": "Globex", "Email": "wade@globex.example"}
    )
    recipe = re.sub(
        r"(\n    key: id[^\n]*\n)", r"\1    match: {field: Email, source: email}\n", RECIPE.read_text()
    )
    assert "match: {field: Email" in recipe
    for board in start_w2(tmp_path, salesforce, workers=2, recipe=recipe):

        def columns(board: W2 = board) -> dict[str, Any]:
            return dict(board.item("Wade Warren")["columns"])

        board.monday.ui_change_column(board.item("Wade Warren")["id"], "status", "Qualified")
        wait_until(lambda: bool(columns().get("text_mkr4oppt")))
        assert columns()["text_mkr1lead"] == existing
        assert created_by_crmsync(board.sf, "Lead") == []
        opportunity = board.sf.get("Opportunity", columns()["text_mkr4oppt"]) or {}
        account = board.sf.get("Account", columns()["text_mkr2acct"]) or {}
        assert opportunity.get("AccountId") == account.get("Id") and account.get("Name") == "Globex"


def test_the_webhook_answers_the_challenge_and_refuses_a_bad_signature_storing_nothing(w2: W2) -> None:
    hook = f"{w2.url}/webhooks/monday/monday"
    signed = w2.monday.hub.sign(hook, 1)  # as monday signs an app webhook's challenge
    reply = httpx.post(hook, json={"challenge": "abc123"}, headers={"Authorization": signed})
    assert reply.json() == {"challenge": "abc123"}
    assert httpx.post(hook, json={"challenge": "abc123"}).status_code == 401  # unsigned: refused
    event = {
        "event": {
            "type": "update_column_value",
            "boardId": int(w2.board),
            "pulseId": 1,
            "columnId": "phone",
            "value": {"phone": "+1555"},
            "triggerUuid": "forged-1",
        }
    }
    forged = jwt.encode({"exp": int(time.time()) + 60}, "a-wrong-secret-but-long-enough-for-hs256", "HS256")
    for headers in ({}, {"Authorization": forged}):
        reply = httpx.post(hook, json=event, headers=headers)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "bad_signature"
    assert w2.runtime.queue.stats().pending == 0
    assert httpx.post(f"{w2.url}/webhooks/monday/nope", json=event).status_code == 404


def close_dates(days: int) -> set[str]:
    """Today plus ``days`` (UTC), and the day after in case the test runs across midnight."""
    today = dt.datetime.now(dt.UTC).date()
    return {(today + dt.timedelta(days=days + n)).isoformat() for n in (0, 1)}


def test_a_new_lead_with_its_columns_filled_but_no_close_date_lands_with_the_default_close_date(
    w2: W2,
) -> None:
    """The create webhook carries every column of the Lead, none of the Opportunity's close date."""
    expected = close_dates(30)
    item = w2.monday.ui_create_item(
        w2.board,
        "Grace Hopper",
        values={
            "status": "Qualified",
            "email": "grace@navy.example",
            "phone": "+15550004444",
            "text": "Navy",
            "numbers": "7000",
        },
    )
    wait_until(lambda: bool(w2.monday.item(item)["columns"].get("text_mkr4oppt")))
    opportunity = w2.sf.get("Opportunity", w2.monday.item(item)["columns"]["text_mkr4oppt"]) or {}
    assert opportunity.get("CloseDate") in expected and opportunity.get("Name") == "Navy"
    assert w2.runtime.queue.dead_letters(flow="leads") == []


def test_a_lead_salesforce_refuses_is_a_dead_letter_with_salesforces_message_not_retried(
    tmp_path: Path, salesforce: SalesforceEmulator
) -> None:
    recipe = RECIPE.read_text().replace(", args: {default_days: 30}", "")
    assert "default_days" not in recipe
    for w2 in start_w2(tmp_path, salesforce, workers=2, recipe=recipe):
        item = w2.monday.ui_create_item(
            w2.board,
            "Grace Hopper",
            values={"status": "Qualified", "email": "grace@navy.example", "text": "Navy"},
        )
        wait_until(lambda w2=w2: bool(w2.runtime.queue.dead_letters(flow="leads")))
        [dead] = w2.runtime.queue.dead_letters(flow="leads")
        assert dead.record_key == str(item) and dead.attempts <= 1
        assert dead.error["kind"] == "FixTheData" and dead.error["vendor_code"] == "REQUIRED_FIELD_MISSING"
        assert "CloseDate" in dead.error["message"] and dead.error["object"] == "Opportunity"
        assert w2.runtime.queue.stats().retrying == 0
        assert not created_by_crmsync(w2.sf, "Lead")  # all or none: nothing was created


def drain(w2: W2, worker: Worker) -> None:
    """Apply what is queued until nothing is left (and the write-backs' webhooks are in)."""
    assert w2.monday.dispatcher.wait_idle(10)
    while worker.run_once():
        assert w2.monday.dispatcher.wait_idle(10)


def test_a_delivery_lost_before_the_first_reconcile_is_caught_by_it(w2_by_hand: W2) -> None:
    w2 = w2_by_hand
    reconciler = BoardReconciler(w2.runtime, "monday", ["leads"])  # crmsync starts listening
    jane = w2.item("Jane Cooper")
    w2.monday.faults.add(webhook="drop", count=1)
    w2.monday.ui_change_column(jane["id"], "status", "Qualified")  # in crmsync's first minute...
    assert w2.monday.dispatcher.wait_idle(10) and w2.monday.deliveries()[-1]["status"] is None  # ...lost

    assert reconciler.reconcile_once() >= 1  # the first pass
    drain(w2, Worker(w2.runtime, owner="test", batch_size=50))
    lead = one(w2.sf, "Lead", Email="jane@acme.example")
    assert w2.item("Jane Cooper")["columns"]["text_mkr1lead"] == lead["Id"]
    assert created_by_crmsync(w2.sf, "Lead") == [lead["Id"]]  # the board's earlier items stay as they are


def test_a_delivery_lost_before_crmsync_first_reconciled_the_board_is_caught_by_the_first_pass(
    tmp_path: Path, salesforce: SalesforceEmulator
) -> None:
    for w2 in start_w2(tmp_path, salesforce, workers=0, initial_sync=True):
        jane = w2.item("Jane Cooper")
        w2.monday.faults.add(webhook="drop", count=1)
        w2.monday.ui_change_column(jane["id"], "status", "Qualified")
        assert w2.monday.dispatcher.wait_idle(10) and w2.monday.deliveries()[-1]["status"] is None

        reconciler = BoardReconciler(w2.runtime, "monday", ["leads"])  # started after the loss
        assert reconciler.reconcile_once() >= 1
        drain(w2, Worker(w2.runtime, owner="test", batch_size=50))
        lead = one(w2.sf, "Lead", Email="jane@acme.example")
        assert w2.item("Jane Cooper")["columns"]["text_mkr1lead"] == lead["Id"]
        assert reconciler.reconcile_once() == 0  # the next pass finds nothing new


def test_deliveries_of_one_field_queued_newest_first_never_roll_salesforce_back(w2_by_hand: W2) -> None:
    """Both deliveries wait in the queue before a worker applies them, newest first: the older one
    is dropped by its change time (``changedAt``), not applied over the newer."""
    w2 = w2_by_hand
    worker = Worker(w2.runtime, owner="test", batch_size=50)
    jane = w2.item("Jane Cooper")
    w2.monday.ui_change_column(jane["id"], "status", "Qualified")
    wait_until(lambda: w2.runtime.queue.stats().pending > 0)
    drain(w2, worker)
    lead = w2.item("Jane Cooper")["columns"]["text_mkr1lead"]
    drain(w2, worker)
    w2.monday.faults.add(webhook="reorder", count=1)
    w2.monday.ui_change_column(jane["id"], "phone", "+15550000001")  # held back by the fault...
    w2.monday.ui_change_column(jane["id"], "phone", "+15550000002")  # ...delivered after this one
    assert w2.monday.dispatcher.wait_idle(10)
    sent = [d["event"]["value"] for d in w2.monday.deliveries() if d["event"].get("columnId") == "phone"]
    assert [v["phone"] for v in sent][-2:] == ["+15550000002", "+15550000001"]  # newest first
    drain(w2, worker)
    assert "5550000002" in ((w2.sf.get("Lead", lead) or {}).get("Phone") or "")


def test_edits_of_several_leads_are_one_call_each_way_and_their_echoes_are_dropped(w2_by_hand: W2) -> None:
    """Changes claimed together are written together: one sObject Collections call to Salesforce,
    one aliased mutation to monday, and the echo of each write is still recognised."""
    w2 = w2_by_hand
    worker = Worker(w2.runtime, owner="test", batch_size=50)
    [targets] = w2.runtime.poll_targets().values()
    poller = SalesforcePoller(
        w2.runtime.connector("salesforce"), QueueSink(w2.runtime.queue), w2.runtime.store, targets
    )  # type: ignore[arg-type]
    poller.poll_once()  # the watermark starts now
    items = [
        w2.monday.ui_create_item(
            w2.board,
            f"Batch Lead{n}",
            values={"status": "Qualified", "email": f"b{n}@batch.example", "text": f"Batch {n}"},
        )
        for n in range(3)
    ]
    wait_until(lambda: w2.runtime.queue.stats().pending >= 3)
    drain(w2, worker)
    leads = [w2.monday.item(i)["columns"]["text_mkr1lead"] for i in items]
    poller.poll_once()
    drain(w2, worker)

    writes, deliveries = w2.sf_writes(), w2.monday_deliveries()
    for n, item in enumerate(items):
        w2.monday.ui_change_column(item, "phone", f"+1555000777{n}")
    assert w2.monday.dispatcher.wait_idle(10)
    assert worker.run_once() == 3
    assert w2.sf_writes() == writes + 1  # three Lead updates, one Collections call
    assert [(w2.sf.get("Lead", lead) or {}).get("Phone") for lead in leads] == [
        f"+1555000777{n}" for n in range(3)
    ]
    poller.poll_once()  # crmsync's own writes come back from Salesforce...
    drain(w2, worker)
    assert w2.monday_deliveries() == deliveries + 3  # ...and are dropped: nothing written to the board

    for n, lead in enumerate(leads):
        w2.sf.update("Lead", lead, {"Company": f"Batch Company {n}"})
    poller.poll_once()
    assert w2.runtime.queue.stats().pending == 3
    monday_calls, writes = w2.monday.calls.count(), w2.sf_writes()
    assert worker.run_once() == 3
    assert w2.monday.calls.count() == monday_calls + 1  # three items, one aliased mutation
    assert [w2.monday.item(i)["columns"].get("text") for i in items] == [
        f"Batch Company {n}" for n in range(3)
    ]
    drain(w2, worker)  # the board's webhooks for crmsync's writes are echoes
    poller.poll_once()
    drain(w2, worker)
    assert w2.sf_writes() == writes  # nothing went back to Salesforce
    assert w2.monday_deliveries() == deliveries + 6
