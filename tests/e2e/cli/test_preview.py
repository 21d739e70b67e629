"""``crmsync preview FLOW`` against the Salesforce and monday sandboxes: what a sync would change,
and proof that nothing was written (emulators' write journals, the store's rows)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from crmsync.cli import preview as preview_cmd
from crmsync.config import load_config
from crmsync.engine.queue import NewChange
from crmsync.engine.runtime import Runtime
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.service.process import Process
from crmsync.store import schema as t
from crmsync.store.db import Store

from ..conftest import ROOT, wait_until, write_config

RECIPE = ROOT / "examples" / "monday-salesforce" / "crmsync.yaml"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    preview_cmd.register(app)
    return app


def store_rows(url: str) -> dict[str, int]:
    store = Store(url)
    try:
        with store.read() as conn:
            return {
                table.name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                for table in t.metadata.sorted_tables
            }
    finally:
        store.dispose()


def sf_writes(sf: SalesforceEmulator) -> tuple[int, int]:
    """The org's write journal, and calls that can only write (PATCH, DELETE)."""
    return len(sf.changes()), sum(1 for c in sf.calls.calls() if c.method in ("PATCH", "DELETE"))


def run_json(app: typer.Typer, config: Path, flow: str, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["preview", flow, "-c", str(config), "--json", *extra])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def by_label(data: dict[str, Any], label: str) -> dict[str, Any]:
    return next(r for r in data["records"] if r["label"] == label)


def changed(record: dict[str, Any]) -> dict[str, tuple[Any, Any, str]]:
    return {f["field"]: (f["current"], f["new"], f["direction"]) for f in record["fields"]}


@dataclass
class Synced:
    config: Path
    store_url: str
    sf: SalesforceEmulator
    monday: MondayEmulator
    board: str

    def item(self, name: str) -> dict[str, Any]:
        return next(i for i in self.monday.items(self.board) if i["name"] == name)


@pytest.fixture
def synced(
    tmp_path: Path, salesforce: SalesforceEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Synced]:
    """The W2 recipe after one qualified lead (Jane Cooper) was synced; crmsync is stopped again."""
    monday = MondayEmulator(retry_delays=(0.2, 0.5))
    monday.seed("demo")
    with serve(monday):
        for key, value in {**salesforce.credentials(), **monday.credentials()}.items():
            monkeypatch.setenv(key, value)
        path = tmp_path / "crmsync.yaml"
        url = f"sqlite:///{tmp_path / 'c.db'}"
        path.write_text(RECIPE.read_text().replace("sqlite:///crmsync.db", url))
        cfg = load_config(path)
        runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
        proc = Process(runtime, web=True, workers=1, host="127.0.0.1", port=0, poll_interval=0.2)
        proc.bind()
        thread = threading.Thread(target=proc.run, daemon=True)
        thread.start()
        board = monday.board_id("Leads")
        for event in ("create_item", "change_column_value", "change_name"):
            monday.add_webhook(
                board, f"http://127.0.0.1:{proc.bound_port}/webhooks/monday/monday", event, app=True
            )
        state = Synced(path, url, salesforce, monday, str(board))
        try:
            monday.ui_change_column(state.item("Jane Cooper")["id"], "status", "Qualified")
            wait_until(lambda: bool(state.item("Jane Cooper")["columns"].get("text_mkr4oppt")))
            assert monday.dispatcher.wait_idle(10)
            s = runtime.queue.stats
            wait_until(lambda: s().pending == 0 and s().leased == 0 and s().retrying == 0)
        finally:
            proc.stop()
            thread.join(10)
            runtime.close()
        yield state


def test_two_way_preview_shows_creates_updates_unchanged_and_skipped_and_writes_nothing(
    app: typer.Typer, synced: Synced
) -> None:
    jane = synced.item("Jane Cooper")
    lead_id = jane["columns"]["text_mkr1lead"]
    data = run_json(app, synced.config, "leads")
    assert data["kind"] == "two_way" and data["object_name"] == "Lead"
    assert by_label(data, "Jane Cooper")["action"] == "unchanged"  # just synced: nothing to do
    assert by_label(data, "Jane Cooper")["target_id"] == lead_id

    # edits made while crmsync is not running: one on each side, and a newly qualified lead
    synced.monday.ui_change_column(jane["id"], "email", "jane.cooper@acme.example")
    synced.sf.update("Lead", lead_id, {"Company": "Acme Holdings"})
    wade = synced.item("Wade Warren")
    synced.monday.ui_change_column(wade["id"], "status", "Qualified")
    before = (synced.monday.dump_state(), sf_writes(synced.sf), store_rows(synced.store_url))

    data = run_json(app, synced.config, "leads")
    jane_p = by_label(data, "Jane Cooper")
    assert jane_p["action"] == "update"
    assert changed(jane_p) == {
        "Email": ("jane@acme.example", "jane.cooper@acme.example", "to_target"),
        "text": ("Acme Corp", "Acme Holdings", "to_source"),  # only Salesforce changed it: it goes back
    }
    contact = next(r for r in jane_p["related"] if r["object_name"] == "Contact")
    assert contact["action"] == "update"
    assert [(f["field"], f["new"]) for f in contact["fields"]] == [("Email", "jane.cooper@acme.example")]
    assert {r["object_name"]: r["action"] for r in jane_p["related"]} == {
        "Account": "unchanged",
        "Contact": "update",
        "Opportunity": "unchanged",
    }

    wade_p = by_label(data, "Wade Warren")
    assert wade_p["action"] == "create" and wade_p["target_id"] is None
    assert changed(wade_p)["LastName"] == (None, "Warren", "to_target")
    assert changed(wade_p)["Company"] == (None, "Globex", "to_target")
    assert [r["object_name"] for r in wade_p["related"]] == ["Account", "Contact", "Opportunity"]
    assert all(r["action"] == "create" for r in wade_p["related"])

    when = ("Qualified", "Follow-up", "Quote", "MOU")
    others = {i["name"]: i["columns"]["status"] for i in synced.monday.items(synced.board)}
    others.pop("Jane Cooper")
    expected = {name: "create" if status in when else "skipped" for name, status in others.items()}
    assert {r["label"]: r["action"] for r in data["records"]} == {**expected, "Jane Cooper": "update"}
    assert "skipped" in expected.values() and list(expected.values()).count("create") >= 2
    skipped = [r for r in data["records"] if r["action"] == "skipped"]
    assert all("does not match the flow's when" in r["reason"] for r in skipped)
    assert data["counts"] == {
        "update": 1,
        "create": list(expected.values()).count("create"),
        "skipped": len(skipped),
    }

    # the table too, and nothing was written by either run
    result = CliRunner().invoke(app, ["preview", "leads", "-c", str(synced.config)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Wade Warren" in result.output and "create" in result.output
    assert "'jane@acme.example' → 'jane.cooper@acme.example'" in result.output
    assert "Nothing was written." in result.output
    after = (synced.monday.dump_state(), sf_writes(synced.sf), store_rows(synced.store_url))
    assert after == before
    assert not [c for c in synced.sf.changes() if c["client"] == "crmsync" and c["id"] not in _linked(synced)]


def _linked(synced: Synced) -> set[str]:
    columns = synced.item("Jane Cooper")["columns"]
    return {columns[c] for c in ("text_mkr1lead", "text_mkr2acct", "text_mkr3cont", "text_mkr4oppt")}


def test_two_way_preview_limit_looks_at_n_records(app: typer.Typer, synced: Synced) -> None:
    data = run_json(app, synced.config, "leads", "--limit", "1")
    assert len(data["records"]) == 1 and data["limited"] is True


def test_unknown_flow_lists_the_valid_ones(app: typer.Typer, synced: Synced) -> None:
    result = CliRunner().invoke(app, ["preview", "nope", "-c", str(synced.config)])
    assert result.exit_code == 1
    assert "unknown flow 'nope'; valid: leads" in result.output


def test_application_preview_shows_queued_changes_mapped_locked_and_writes_nothing(
    app: typer.Typer, tmp_path: Path, salesforce: SalesforceEmulator
) -> None:
    path = write_config(tmp_path, salesforce)
    cfg = load_config(path)
    contracts = {c["Status"]: c["Id"] for c in salesforce.records("Contract")}
    runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
    try:
        runtime.queue.enqueue(
            [
                NewChange("service_app", "usage", "ad-1", "upsert", {"contract_id": contracts["Activated"],
                          "product": "Banner", "quantity": "2"}),
                NewChange("service_app", "usage", "ad-1", "upsert", {"quantity": "5"}),
                NewChange("service_app", "usage", "ad-2", "upsert", {"contract_id": contracts["Fulfilled"],
                          "product": "Video", "quantity": 1}),
                NewChange("service_app", "usage", "ad-3", "delete", {}),
            ]
        )  # fmt: skip
    finally:
        runtime.close()
    before = (sf_writes(salesforce), store_rows(cfg.store.url))

    data = run_json(app, path, "usage")
    assert data["kind"] == "application"
    records = {r["record"]: r for r in data["records"]}
    assert list(records) == ["ad-1", "ad-2", "ad-3"]
    assert records["ad-1"]["action"] == "upsert"
    assert changed(records["ad-1"]) == {
        "Ad_Id__c": (None, "ad-1", "to_target"),
        "Contract__c": (None, contracts["Activated"], "to_target"),
        "Product__c": (None, "Banner", "to_target"),
        "Quantity__c": (None, 5, "to_target"),  # two queued changes folded, as a worker folds them
    }
    assert records["ad-2"]["action"] == "locked"
    assert (
        records["ad-2"]["reason"]
        == f"contract {contracts['Fulfilled']} is fulfilled; its usage entries are locked"
    )
    assert records["ad-3"]["action"] == "delete"
    assert data["counts"] == {"upsert": 1, "locked": 1, "delete": 1}
    assert (sf_writes(salesforce), store_rows(cfg.store.url)) == before
