"""``crmsync sync FLOW`` through the real command: a board with items and an org with records
brought in step, both sides counted from the emulators; a second run changes nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.scheduler import runs
from crmsync.store.db import Store

from ..conftest import ROOT, wait_until

RECIPE = ROOT / "examples" / "monday-salesforce" / "crmsync.yaml"
QUALIFYING = ("Follow-up", "Qualified", "Quote", "MOU")


@dataclass
class Org:
    config: Path
    sf: SalesforceEmulator
    monday: MondayEmulator
    board: str

    def items(self) -> list[dict[str, Any]]:
        return list(self.monday.items(self.board))

    def status(self, item: dict[str, Any]) -> str:
        return str(self.monday.item(item["id"])["columns"].get("status") or "")

    def sync(self) -> tuple[int, dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, "-m", "crmsync", "sync", "leads", "-c", str(self.config), "--json"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)


@pytest.fixture
def org(tmp_path: Path, salesforce: SalesforceEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    """The demo board (two qualified leads among five) and an org that has one of them already."""
    monday = MondayEmulator()
    monday.seed("demo")
    salesforce.insert(
        "Lead", {"LastName": "Williamson", "Company": "Umbrella", "Email": "cameron@umbrella.example"}
    )
    with serve(monday):
        for key, value in {**salesforce.credentials(), **monday.credentials()}.items():
            monkeypatch.setenv(key, value)
        recipe = re.sub(
            r"(\n    key: id[^\n]*\n)", r"\1    match: {field: Email, source: email}\n", RECIPE.read_text()
        )
        path = tmp_path / "crmsync.yaml"
        path.write_text(recipe.replace("sqlite:///crmsync.db", f"sqlite:///{tmp_path / 'c.db'}"))
        yield Org(path, salesforce, monday, str(monday.board_id("Leads")))


def recorded_runs(org: Org) -> list[runs.JobRun]:
    store = Store(f"sqlite:///{org.config.parent / 'c.db'}")
    try:
        return runs.recent(store, job="sync:leads")
    finally:
        store.dispose()


def leads_by_email(sf: SalesforceEmulator) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for lead in sf.records("Lead"):
        found.setdefault(str(lead.get("Email")), []).append(str(lead["Id"]))
    return found


def test_sync_brings_both_sides_in_step_and_a_second_run_changes_nothing(org: Org) -> None:
    leads_before = len(org.sf.records("Lead"))
    items = org.items()
    qualifying = [i for i in items if i["columns"].get("status") in QUALIFYING]
    assert len(qualifying) == 2  # Esther Howard (Follow-up) and Cameron Williamson (Qualified)

    code, first = org.sync()

    assert code == 0, first
    assert first["to_target"] == {"created": 1, "updated": 1, "skipped": 3, "failed": 0, "waiting": 0}
    assert first["complete"] is True
    (run,) = recorded_runs(org)  # what the dashboard's Jobs page shows of it
    assert run.status == "succeeded" and run.finished_at is not None
    assert (run.progress_done, run.progress_total) == (2, 2)
    assert run.message is not None and run.message.startswith(
        "to the target: created 1, updated 1, skipped 3, failed 0, waiting 0; back to the source: "
    )
    assert len(org.sf.records("Lead")) == leads_before + 1  # Cameron's Lead was matched, not copied
    by_email = leads_by_email(org.sf)
    for item in org.items():
        lead = item["columns"].get("text_mkr1lead")
        email = item["columns"].get("email")
        if item["columns"].get("status") in QUALIFYING:
            assert by_email[str(email)] == [lead], item["name"]  # one Lead per qualified item, linked
            opportunity = org.sf.get("Opportunity", item["columns"]["text_mkr4oppt"]) or {}
            assert opportunity.get("CloseDate"), item["name"]
        else:
            assert str(email) not in by_email, item["name"]
    board, journal = org.items(), len(org.sf.changes())

    code, second = org.sync()

    assert code == 0, second
    assert second["queued"] == 0
    assert second["to_target"] == {"created": 0, "updated": 0, "skipped": 5, "failed": 0, "waiting": 0}
    assert second["to_source"] == {"created": 0, "updated": 0, "skipped": 0, "failed": 0, "waiting": 0}
    assert org.items() == board and len(org.sf.changes()) == journal


def test_sync_brings_an_edit_made_in_salesforce_back_to_the_board(org: Org) -> None:
    code, _ = org.sync()
    assert code == 0
    esther = next(i for i in org.items() if i["name"] == "Esther Howard")
    org.sf.update("Lead", esther["columns"]["text_mkr1lead"], {"Company": "Initech Global"})

    code, again = org.sync()

    assert code == 0, again
    assert again["to_source"]["updated"] == 1 and again["to_target"]["created"] == 0
    assert org.monday.item(esther["id"])["columns"]["text"] == "Initech Global"


def test_crmsync_run_syncs_a_flow_that_never_synced_once(org: Org, tmp_path: Path) -> None:
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crmsync", "run", "-c", str(org.config), "--port", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        esther = next(i for i in org.items() if i["name"] == "Esther Howard")
        wait_until(lambda: bool(org.monday.item(esther["id"])["columns"].get("text_mkr4oppt")), timeout=60)
        wait_until(
            lambda: "sync leads: to the target: 1 created, 1 updated" in (tmp_path / "run.log").read_text()
        )
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert len(leads_by_email(org.sf)["esther@initech.example"]) == 1

    code, again = org.sync()  # the flow is noted as synced; nothing is left to do
    assert code == 0 and again["queued"] == 0
