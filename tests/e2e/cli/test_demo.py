"""``crmsync demo --once``: the workflows against the sandbox (usage billing, leads, Salesforce Tasks on a
Trello board with its reporting database and daily jobs), verified at the end."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import httpx
import sqlalchemy as sa
from rich.console import Console

from crmsync.cli.demo import _explain_dead_letters
from crmsync.errors import LockedRecord
from crmsync.store import schema as t
from crmsync.store.db import Store

from ..conftest import RECIPE, wait_until

W1_JOBS = {
    "import-opportunities": "salesforce-report-import",
    "refresh-cards": "trello-refresh",
    "win-loss": "win-loss-mover",
    "nudge": "update-status-nudge",
    "snapshot": "workload-snapshot",
}


def test_demo_runs_the_three_workflows_through_an_outage_and_verifies_salesforce(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "crmsync", "demo", "--once",
            "--recipe", str(RECIPE), "--workdir", str(tmp_path),
            "--leads-recipe", str(RECIPE.parents[1] / "monday-salesforce" / "crmsync.yaml"),
            "--trello-recipe", str(RECIPE.parents[1] / "sales-to-trello" / "crmsync.yaml"),
            "--entries", "80", "--rate", "80", "--outage-seconds", "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Salesforce holds exactly the" in out
    assert "two qualified leads in Salesforce with their records" in out
    assert "Where to look" in out
    # W1: the Task became a card carrying the Salesforce ids and its opportunity's data
    card = re.search(
        r"card (\w+) in Backlog: Salesforce Task Id = (00T\w+), Salesforce Opportunity Id = (006\w+), "
        r"Stage = Needs Analysis, Amount = 22000, Account = Stark Retail",
        out,
    )
    assert card, out
    card_id, task = card.group(1), card.group(2)
    # the card's move on the board reached the Task in Salesforce
    assert f"Salesforce: Task {task} Status Not Started → In Progress" in out, out
    for name, job in W1_JOBS.items():
        assert re.search(rf"job {name} \({job}\) succeeded: \S", out), out
    assert f"Salesforce: Task {task} Status Completed" in out, out  # the win-loss mover's move too
    assert "the five daily jobs ran" in out
    # the reporting database holds the card's current state and its history
    reporting = sa.create_engine(f"sqlite:///{tmp_path / 'db' / 'reporting.db'}")
    with reporting.connect() as conn:
        [row] = conn.execute(
            sa.text("SELECT list_name, task_id, stage FROM crm_card WHERE source_id = :id"), {"id": card_id}
        ).all()
        events = conn.execute(
            sa.text("SELECT who, action, new_values FROM crm_events WHERE source_id = :id ORDER BY id"),
            {"id": card_id},
        ).all()
        opportunities = conn.execute(sa.text("SELECT COUNT(*) FROM crm_opportunity")).scalar()
        snapshot = conn.execute(sa.text("SELECT SUM(card_count) FROM crm_workload_snapshot")).scalar()
    reporting.dispose()
    assert tuple(row) == ("Won", task, "Closed Won")
    assert events[0].action == "createCard"
    moves = [(e.who, json.loads(e.new_values)) for e in events if e.action == "updateCard"]
    assert ("alice", {"list_name": "In progress"}) in moves, events
    assert any(new.get("list_name") == "Won" for _, new in moves), events
    assert opportunities and opportunities >= 10 and snapshot and snapshot >= 5
    # each job's run is recorded in crmsync's store
    store = Store(f"sqlite:///{tmp_path / 'db' / 'trello.db'}")
    with store.read() as conn:
        ran = conn.execute(sa.select(t.job_runs.c.job, t.job_runs.c.status)).all()
    store.dispose()
    assert sorted(ran) == sorted((name, "succeeded") for name in W1_JOBS)


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR) ")


def test_demo_runs_on_the_ports_asked_keeps_log_lines_out_of_its_table_and_prints_a_usable_token(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "demo.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "crmsync", "demo",
                "--recipe", str(RECIPE), "--workdir", str(tmp_path / "w"), "--leads-recipe", "",
                "--trello-recipe", "",
                "--entries", "40", "--rate", "80", "--outage-seconds", "0.3",
                "--port", str(port), "--salesforce-port", "0", "--trello-port", "0", "--monday-port", "0",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        wait_until(lambda: "demo running; Ctrl-C to stop" in out.read_text() or proc.poll() is not None, 120)
        printed = out.read_text()
        assert proc.poll() is None, printed
        assert not LOG_LINE.search(printed), printed
        assert LOG_LINE.search((tmp_path / "w" / "crmsync.log").read_text())
        assert f"ingest API      POST http://127.0.0.1:{port}/api/v1/flows/usage/records" in printed
        token = re.search(r"export TOKEN=(\S+)", printed)
        curl = re.search(r"curl -X POST (\S+) .* -d '(.+)'", printed)
        assert token and curl, printed
        reply = httpx.post(
            curl.group(1),
            content=curl.group(2),
            headers={"Authorization": f"Bearer {token.group(1)}", "Content-Type": "application/json"},
        )
        assert reply.status_code == 202, reply.text
        dashboard = re.search(r"Dashboard: (\S+)  log in as admin / (\S+)", printed)
        assert dashboard, printed
        with httpx.Client(base_url=dashboard.group(1)) as browser:  # the dashboard shows the demo's flow
            form = browser.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert csrf, form.text
            login = {
                "csrf_token": csrf.group(1),
                "username": "admin",
                "password": dashboard.group(2),
                "next": "/",
            }
            assert browser.post("/login", data=login).status_code == 303
            flows = browser.get("/api/v1/dashboard/overview").json()["flows"]
        assert [f["name"] for f in flows] == ["usage"] and flows[0]["applied_last_hour"] > 0, flows
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0 and "Traceback" not in out.read_text()


def test_the_demo_says_why_its_dead_letters_exist(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'demo.db'}")
    store.upgrade()
    error = LockedRecord("contract 800X is fulfilled; its usage entries are locked").to_dict()
    with store.begin() as conn:
        conn.execute(
            sa.insert(t.dead_letters).values(
                change_ids=[1], source="app", flow="usage", record_key="late-75", operation="upsert",
                payload={}, error=error, attempts=1, created_at=datetime.now(UTC),
            )
        )  # fmt: skip
    console = Console(record=True, width=200)
    _explain_dead_letters(SimpleNamespace(store=store), console)  # type: ignore[arg-type]
    text = console.export_text()
    assert "1 dead letter(s) on purpose" in text and "Fulfilled contract" in text
    assert "contract 800X is fulfilled" in text and "did not expect" not in text
    assert "crmsync dead-letters list --url sqlite:///" in text
    store.dispose()
