"""``crmsync migrate``: 5,000 Salesforce Accounts backfilled onto a monday board, against both emulators.

- inside the real per-minute complexity budget (the emulator's and the pacer's clocks are one fake
  clock, so five budget windows pass without waiting five minutes): ≥20 items per mutation
  request, no complexity error, exactly one item per Account; a rerun writes nothing;
- a dry run reads and maps everything and writes nothing;
- the command in a subprocess, SIGKILLed at a random point, then run again: exactly 5,000 items.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crmsync.config import load_config
from crmsync.engine.migrate import Migration
from crmsync.engine.runtime import Runtime
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.monday.seeds import API_USER, status_settings
from crmsync.sandbox.monday.store import Board, Column, Group
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.tls import Materials
from crmsync.store import schema as t
from crmsync.store.db import Store
from crmsync.store.synclog import query

from ..conftest import wait_until

ACCOUNTS = 5_000
INDUSTRIES = ("Banking", "Energy", "Retail", "Technology", None)
FLOW = "accounts_to_monday"
#: Accounts that already have an item on the board when the migration starts
PRESENT = 130

CONFIG = """
version: 1
store:
  url: sqlite:///{db}
connections:
  salesforce:
    type: salesforce
    auth: jwt
    login_url: ${{SALESFORCE_LOGIN_URL}}
    instance_url: ${{SALESFORCE_INSTANCE_URL}}
    client_id: ${{SALESFORCE_CLIENT_ID}}
    username: ${{SALESFORCE_USERNAME}}
    private_key_file: ${{SALESFORCE_JWT_KEY_FILE}}
    ca_file: ${{SALESFORCE_CA_FILE}}
  monday:
    type: monday
    api_url: ${{MONDAY_API_URL}}
    token: ${{MONDAY_TOKEN}}
    complexity_per_minute: {budget}
flows:
  {flow}:
    source: salesforce
    source_object: Account
    target: monday
    object: Accounts
    key: Id
    match: {{field: text_sfid}}
    fields:
      - {{source: Id, target: text_sfid}}
      - {{source: Name, target: name}}
      - {{source: Industry, target: text}}
      - {{source: NumberOfEmployees, target: numbers, transform: number}}
"""


class FakeClock:
    """Time that moves only when someone sleeps: the emulator's budget window and the pacer's."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def org(materials: Materials) -> Iterator[SalesforceEmulator]:
    """A Salesforce org holding exactly 5,000 Accounts (read only by the tests)."""
    emulator = SalesforceEmulator(materials=materials)
    emulator.seed("empty")
    for n in range(ACCOUNTS):
        fields: dict[str, Any] = {"Name": f"Account {n:04d}", "NumberOfEmployees": n % 700}
        if INDUSTRIES[n % len(INDUSTRIES)]:
            fields["Industry"] = INDUSTRIES[n % len(INDUSTRIES)]
        emulator.insert("Account", fields)
    with serve(emulator, materials=materials):
        yield emulator


def add_board(emulator: MondayEmulator) -> str:
    store = emulator.store
    board = Board(
        id=store.next_board_id(),
        name="Accounts",
        owner_id=API_USER.id,
        workspace_id=7_000_001,
        columns=[
            Column("name", "Name", "name"),
            Column("text", "Industry", "text"),
            Column("numbers", "Employees", "numbers"),
            Column("text_sfid", "Salesforce Id", "text"),
        ],
        groups=[Group("topics", "Accounts")],
    )
    store.boards[board.id] = board
    return str(board.id)


def write_config(tmp_path: Path, budget: int) -> Path:
    path = tmp_path / "crmsync.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "crmsync.db", budget=budget, flow=FLOW))
    return path


def environment(org: SalesforceEmulator, monday: MondayEmulator) -> dict[str, str]:
    return {**org.credentials(), **monday.credentials()}


def check_board(org: SalesforceEmulator, monday: MondayEmulator, board: str) -> None:
    """Exactly one item per Account, holding its id and fields."""
    items = monday.items(board)
    by_id = Counter(i["columns"].get("text_sfid") for i in items)
    assert len(items) == ACCOUNTS
    assert max(by_id.values()) == 1, [k for k, n in by_id.items() if n > 1][:5]
    accounts = {a["Id"]: a for a in org.records("Account")}
    assert set(by_id) == set(accounts)
    sample = next(i for i in items if i["columns"]["text_sfid"] == min(accounts))
    account = accounts[min(accounts)]
    assert sample["name"] == account["Name"]
    assert sample["columns"].get("text", "") == (account.get("Industry") or "")
    assert sample["columns"]["numbers"] == str(account["NumberOfEmployees"])


def links_count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.links)).scalar_one())


def test_migration_inside_the_complexity_budget_then_a_rerun_writes_nothing(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    clock = FakeClock()
    monday = MondayEmulator(clock=clock)  # the real per-minute budget: 10,000,000 points
    monday.seed("empty")
    board = add_board(monday)
    with serve(monday):
        cfg = load_config(write_config(tmp_path, 10_000_000), environ=environment(org, monday))
        runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
        try:
            # a dry run first: everything read and mapped, nothing written anywhere
            dry = Migration(runtime, FLOW, dry_run=True).run()
            assert (dry.created, dry.updated, dry.skipped, dry.failed) == (ACCOUNTS, 0, 0, 0)
            # read only: the board looked up by name, and its columns (to check status labels)
            assert monday.calls.count() == 2 and monday.items(board) == []
            assert links_count(runtime.store) == 0 and query(runtime.store, FLOW) == []
            assert dry.api_calls["monday"] == 2

            # items already on the board for some Accounts (e.g. written by a run killed before it
            # linked them): found by their Salesforce id and updated, never duplicated
            first = sorted(a["Id"] for a in org.records("Account"))[:PRESENT]
            for sfid in first:
                monday.ui_create_item(board, "stale name", values={"text_sfid": sfid})

            connector: Any = runtime.connector("monday")
            pacer = connector.client.pacer
            pacer.clock, pacer.sleep, connector.client.sleep = clock, clock.sleep, clock.sleep
            sizes: list[int] = []
            execute = connector.client.execute

            def counting(text: str, variables: Any = None, *, cost: int, key: str | None = None) -> Any:
                if text.lstrip().startswith("mutation"):
                    sizes.append(text.count("create_item(") + text.count("change_multiple_column_values("))
                return execute(text, variables, cost=cost, key=key)

            connector.client.execute = counting
            progress: list[int] = []
            started = clock.now

            migration = Migration(runtime, FLOW, progress=progress.append)
            waits: list[float | None] = []
            migration.waiting = waits.append
            summary = migration.run()
            # the budget's waits were told as they happened, second by second, and ended
            assert max(w for w in waits if w is not None) > 1 and waits[-1] is None

            created = ACCOUNTS - PRESENT
            assert (summary.created, summary.updated, summary.skipped, summary.failed) == (
                created,
                PRESENT,
                0,
                0,
            )
            check_board(org, monday, board)
            assert sum(progress) == ACCOUNTS
            assert sizes and min(sizes) >= 20, sizes
            assert sum(sizes) == ACCOUNTS
            refused = [c for c in monday.calls.calls() if c.status != 200]
            assert refused == []  # not one complexity error (nor any other)
            assert clock.now - started >= 4 * 60  # 50M points of mutations: the budget did hold them back
            assert summary.api_calls["monday"] == monday.calls.count() - dry.api_calls["monday"]
            assert summary.api_calls["salesforce"] <= 6  # count, bulk job, poll, one page (+ login)
            assert links_count(runtime.store) == ACCOUNTS
            for item in (monday.items(board)[0], monday.items(board)[-1]):
                [line] = query(runtime.store, FLOW, item["columns"]["text_sfid"])
                operation = "update" if item["columns"]["text_sfid"] in first else "create"
                assert (line.outcome, line.operation, line.target_id) == ("applied", operation, item["id"])

            calls = monday.calls.count()
            again = Migration(runtime, FLOW).run()
            assert (again.created, again.updated, again.skipped, again.failed) == (0, 0, ACCOUNTS, 0)
            assert monday.calls.count() == calls
        finally:
            runtime.close()


def test_killed_at_a_random_point_and_run_again_ends_with_one_item_per_record(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    # a separate process paces with the real clock: a budget large enough not to wait for a minute
    monday = MondayEmulator(complexity_per_minute=1_000_000_000)
    monday.seed("empty")
    board = add_board(monday)
    with serve(monday):
        path = write_config(tmp_path, 1_000_000_000)
        env = {**os.environ, **environment(org, monday)}
        command = [sys.executable, "-m", "crmsync", "migrate", FLOW, "-c", str(path)]
        kill_at = random.randint(200, ACCOUNTS - 500)
        with (tmp_path / "first.log").open("wb") as log:
            first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_until(
                    lambda: len(monday.items(board)) >= kill_at or first.poll() is not None, timeout=60
                )
            finally:
                first.send_signal(signal.SIGKILL)
                first.wait(10)
        output = (tmp_path / "first.log").read_text()
        assert first.returncode == -signal.SIGKILL, (kill_at, first.returncode, output[-2000:])
        written = len(monday.items(board))
        assert kill_at <= written < ACCOUNTS, (kill_at, written)

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 0, second.stderr
        check_board(org, monday, board)
        store = Store(f"sqlite:///{tmp_path / 'crmsync.db'}")
        try:
            assert links_count(store) == ACCOUNTS
        finally:
            store.dispose()
        shown = {
            k: int(v) for k, v in re.findall(r"│ (created|updated|skipped|failed) +│ (\d+)", second.stdout)
        }
        # what the killed run wrote is skipped (linked) or found by its Salesforce id and updated
        # (a request in flight when the process died may still have been applied: at least ``written``)
        assert shown["skipped"] + shown["updated"] >= written, (shown, written)
        assert sum(shown.values()) == ACCOUNTS and shown["failed"] == 0, (shown, written)


def test_a_dry_run_names_each_status_value_the_board_would_refuse(
    tmp_path: Path, org: SalesforceEmulator
) -> None:
    monday = MondayEmulator()
    monday.seed("empty")
    board = add_board(monday)
    monday.store.boards[int(board)].columns.append(
        Column("status", "Industry status", "status", status_settings({0: "Banking", 1: "Energy"}))
    )
    with serve(monday):
        path = write_config(tmp_path, 10_000_000)
        path.write_text(path.read_text() + "      - {source: Industry, target: status}\n")
        cfg = load_config(path, environ=environment(org, monday))
        runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
        try:
            dry = Migration(runtime, FLOW, dry_run=True)
            summary = dry.run()
        finally:
            runtime.close()
    per_industry = ACCOUNTS // len(INDUSTRIES)
    assert summary.failed == 2 * per_industry  # Retail and Technology; no industry sends nothing
    assert summary.created == ACCOUNTS - 2 * per_industry
    assert dict(dry.label_problems) == {
        ("status", "Industry status", "Retail", ("Banking", "Energy")): per_industry,
        ("status", "Industry status", "Technology", ("Banking", "Energy")): per_industry,
    }
    assert monday.items(board) == []
