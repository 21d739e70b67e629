"""W2, Monday.com ⇄ Salesforce: webhook → Salesforce latency, Salesforce poll → Monday latency, migration.

The two-way measurements run twice in the same run: as configured (a batch's writes of one object
in one call) and with ``worker.two_way_batch_size: 1`` (each record in its own call, the way two-way
changes were written before batching), for the write calls each change costs in either direction.

The emulators run in this process (a :class:`crmsync.sandbox.runner.Sandbox`, each on its own port)
because the benchmark drives their Python APIs: a person's edit on the board
(``MondayEmulator.ui_change_column``) and a user's edit in Salesforce (``SalesforceEmulator.update``).
crmsync runs in its own process (``crmsync run`` with the W2 recipe; ``crmsync migrate``).
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import ROOT, crmsync, crmsync_process, summary_ms, wait_for
from crmsync.sandbox.monday.seeds import API_USER
from crmsync.sandbox.monday.store import Board, Column, Group
from crmsync.sandbox.runner import Sandbox
from crmsync.store import schema

RECIPE = ROOT / "examples" / "monday-salesforce" / "crmsync.yaml"
EVENTS = ("create_item", "change_column_value", "change_name", "item_deleted", "item_archived")
WEBHOOK_RATE = 20.0  # Monday events per second
SF_EDIT_EVERY = 0.45  # seconds between two Salesforce edits (not a divisor of the 2 s poll interval)
QUALIFIED = 20  # leads qualified before the measurements (each is edited in turn)
MIGRATE_FLOW = "accounts_to_monday"
MIGRATE_CONFIG = """
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
    complexity_per_minute: 1000000000
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
PHONE = re.compile(r"1444\d{7}")  # the phone numbers the benchmark writes, one per edit
RECORD_ID = re.compile(r"/[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?(?=/|$)")
#: Monday's real per-minute complexity budget, to say what rate it would allow
REAL_BUDGET_PER_MINUTE = 10_000_000


def run(quick: bool = False) -> dict[str, Any]:
    alone = two_way(quick, two_way_batch_size=1)  # each record in its own call, as before batching
    out = two_way(quick)
    out["one_record_per_call"] = alone
    to_sf, to_monday = "monday_to_salesforce", "salesforce_to_monday"
    out["two_way_write_calls_per_change"] = {
        to_sf: {
            "one_record_per_call": alone[to_sf]["salesforce_writes_per_change"],
            "batched": out[to_sf]["salesforce_writes_per_change"],
            "latency_one_record_per_call": alone[to_sf]["webhook_to_salesforce"],
            "latency_batched": out[to_sf]["webhook_to_salesforce"],
            "queued_to_applied_one_record_per_call": alone[to_sf]["queued_to_applied"],
            "queued_to_applied_batched": out[to_sf]["queued_to_applied"],
            "bulk_one_record_per_call": alone["bulk_edits"]["salesforce_writes_per_change"],
            "bulk_batched": out["bulk_edits"]["salesforce_writes_per_change"],
        },
        to_monday: {
            "one_record_per_call": alone[to_monday]["monday_mutations_per_change"],
            "batched": out[to_monday]["monday_mutations_per_change"],
            "latency_one_record_per_call": alone[to_monday]["salesforce_to_monday"],
            "latency_batched": out[to_monday]["salesforce_to_monday"],
            "bulk_one_record_per_call": alone["bulk_edits"]["monday_mutations_per_change"],
            "bulk_batched": out["bulk_edits"]["monday_mutations_per_change"],
        },
    }
    out["migration"] = migration(quick)
    return out


@contextmanager
def in_process_sandbox(seed: str) -> Iterator[tuple[Sandbox, Path]]:
    """The emulators in this process, vendor rate limits lifted (a benchmark measures capacity)."""
    directory = Path(tempfile.mkdtemp(prefix="crmsync-bench-w2-"))
    box = Sandbox(
        ports={"salesforce": 0, "trello": 0, "monday": 0},
        seed=seed,
        directory=directory / "keys",
        options={
            "salesforce": {"daily_api_limit": 10**9},
            "trello": {"token_limit": 10**9, "key_limit": 10**9},
            "monday": {"complexity_per_minute": 1_000_000_000},  # GraphQL Int: below 2**31
        },
    )
    box.start()
    try:
        yield box, directory
    finally:
        box.stop()


def write_config(directory: Path, text: str, env: dict[str, str]) -> Path:
    path = directory / "crmsync.yaml"
    path.write_text(text)
    (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return path


def calls_by_endpoint(calls: list[Any]) -> dict[str, int]:
    counted = collections.Counter(f"{c.method} {RECORD_ID.sub('/{id}', c.path)}" for c in calls)
    return dict(counted.most_common())


def two_way(quick: bool, *, two_way_batch_size: int | None = None) -> dict[str, Any]:
    """The W2 recipe under ``crmsync run``; ``two_way_batch_size``: its ``worker.two_way_batch_size``."""
    with in_process_sandbox("demo") as (box, directory):
        sf: Any = box.salesforce
        monday: Any = box.monday
        db = directory / "crmsync.db"
        text = RECIPE.read_text().replace("sqlite:///crmsync.db", f"sqlite:///{db}")
        if two_way_batch_size is not None:
            text = text.replace("\nworker:\n", f"\nworker:\n  two_way_batch_size: {two_way_batch_size}\n", 1)
            assert f"two_way_batch_size: {two_way_batch_size}" in text
        config = write_config(directory, text, box.env())
        crmsync("db", "upgrade", "-c", str(config))
        board = monday.board_id("Leads")
        engine = sa.create_engine(f"sqlite:///{db}")
        try:
            with crmsync_process("run", config) as (_, port):
                url = f"http://127.0.0.1:{port}/webhooks/monday/monday"
                for event in EVENTS:
                    monday.add_webhook(board, url, event, app=True)
                leads = qualify(monday, board, engine)
                to_salesforce = monday_to_salesforce(sf, monday, engine, leads, quick)
                to_monday = salesforce_to_monday(sf, monday, engine, leads, quick)
                bulk = bulk_edits(sf, monday, engine, leads)
        finally:
            engine.dispose()
    return {
        "two_way_batch_size": two_way_batch_size,
        "monday_to_salesforce": to_salesforce,
        "salesforce_to_monday": to_monday,
        "bulk_edits": bulk,
    }


def bulk_edits(
    sf: Any, monday: Any, engine: sa.Engine, leads: list[tuple[str, str]], rounds: int = 3
) -> dict[str, Any]:
    """Every qualified lead edited at once, ``rounds`` times: on the board (a person's bulk edit),
    then in Salesforce (a mass update), each round applied before the next; the write calls each
    change costs when many arrive together."""
    quiet(sf, monday, engine)
    sf_before = len(sf.calls.calls())
    started = time.perf_counter()
    for r in range(rounds):
        phones = {lead: f"1555{r:02d}{n:05d}" for n, (_, lead) in enumerate(leads)}
        for item, lead in leads:
            monday.ui_change_column(item, "phone", f"+{phones[lead]}")
        wait_for(
            lambda phones=phones: all(
                d in ((sf.get("Lead", lead) or {}).get("Phone") or "") for lead, d in phones.items()
            ),
            120,
            "a bulk edit of the board in Salesforce",
        )
    to_salesforce_s = time.perf_counter() - started
    quiet(sf, monday, engine)
    to_salesforce = salesforce_writes(sf.calls.calls()[sf_before:])
    started = time.perf_counter()
    with counting_mutations(monday) as mutations:
        for r in range(rounds):
            values = {item: f"Bulk Company {r}-{n}" for n, (item, _) in enumerate(leads)}
            for item, lead in leads:
                sf.update("Lead", lead, {"Company": values[item]})
            wait_for(
                lambda values=values: all(
                    monday.item(i)["columns"].get("text") == v for i, v in values.items()
                ),
                120,
                "a Salesforce mass update on the board",
            )
        to_monday_s = time.perf_counter() - started
        quiet(sf, monday, engine)
    changes = rounds * len(leads)
    return {
        "rounds": rounds,
        "records_per_round": len(leads),
        "changes_each_way": changes,
        "salesforce_writes_per_change": round(to_salesforce / changes, 3),
        "monday_mutations_per_change": round(len(mutations) / changes, 3),
        "seconds_board_to_salesforce": round(to_salesforce_s, 2),
        "seconds_salesforce_to_board": round(to_monday_s, 2),
    }


@contextmanager
def counting_mutations(monday: Any) -> Iterator[list[int]]:
    """The GraphQL mutations the monday emulator serves meanwhile: the items each one writes."""
    documents = monday.documents
    get = documents.get
    mutations: list[int] = []

    def counting_get(query: str) -> Any:
        if query.lstrip().startswith("mutation"):
            mutations.append(query.count("create_item(") + query.count("change_multiple_column_values("))
        return get(query)

    documents.get = counting_get
    try:
        yield mutations
    finally:
        documents.get = get


def settled(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        waiting = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.changes)
            .where(schema.changes.c.state.in_(("pending", "leased")))
        ).scalar_one()
    return int(waiting) == 0


def quiet(sf: Any, monday: Any, engine: sa.Engine, seconds: float = 2.5) -> None:
    """Deliveries done, the queue empty and no write on either side for ``seconds``."""
    wait_for(lambda: bool(monday.dispatcher.wait_idle(10)) and settled(engine), 120, "queue settled")

    def writes() -> tuple[int, int]:
        return (salesforce_writes(sf.calls.calls()), len(monday.deliveries()))

    while True:
        before = writes()
        time.sleep(seconds)  # a quiet period is what is measured here: no condition to wait for
        if writes() == before and settled(engine):
            return


def salesforce_writes(calls: list[Any]) -> int:
    """Calls that write records (sObject REST and Collections; the poller reads through Composite)."""
    return sum(1 for c in calls if c.method in ("POST", "PATCH", "DELETE") and "/sobjects" in c.path)


def qualify(monday: Any, board: str, engine: sa.Engine) -> list[tuple[str, str]]:
    """New qualified leads on the board: (item id, Salesforce Lead id) once crmsync created them."""
    items = [
        monday.ui_create_item(
            board,
            f"Bench Lead{n:02d}",
            values={"status": "Qualified", "email": f"lead{n}@bench.example", "text": f"Bench {n}"},
        )
        for n in range(QUALIFIED)
    ]
    wait_for(
        lambda: all(monday.item(i)["columns"].get("text_mkr4oppt") for i in items), 120, "leads qualified"
    )
    return [(i, monday.item(i)["columns"]["text_mkr1lead"]) for i in items]


def applied_at(engine: sa.Engine) -> dict[int, float]:
    """When each change was applied: change id → the sync log's ``applied`` time."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.sync_log.c.change_ids, schema.sync_log.c.at).where(
                schema.sync_log.c.outcome == "applied"
            )
        ).all()
    out: dict[int, float] = {}
    for ids, at in rows:
        for change_id in ids or []:
            out.setdefault(int(change_id), at.timestamp())
    return out


def changes_since(engine: sa.Engine, first_id: int) -> list[tuple[int, str, float]]:
    """The changes queued after ``first_id``: id, payload (JSON text), when it was queued."""
    c = schema.changes.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.id, c.payload, c.created_at).where(c.id > first_id)).all()
    return [(int(r.id), json.dumps(r.payload), r.created_at.timestamp()) for r in rows]


def last_change_id(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.coalesce(sa.func.max(schema.changes.c.id), 0))).scalar_one()
        )


def monday_to_salesforce(
    sf: Any, monday: Any, engine: sa.Engine, leads: list[tuple[str, str]], quick: bool
) -> dict[str, Any]:
    """Phone edits on the board at a fixed rate, timed until the sync log says Salesforce has them."""
    seconds = 10.0 if quick else 30.0
    quiet(sf, monday, engine)
    first_change = last_change_id(engine)
    sf_before, monday_before = len(sf.calls.calls()), monday.calls.count()
    sent: dict[str, float] = {}  # phone digits → when the person changed the column
    total = int(WEBHOOK_RATE * seconds)
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / WEBHOOK_RATE - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # an open-loop schedule: each edit at its own time, whatever the latency
        item, _ = leads[i % len(leads)]
        digits = f"1444{i:07d}"
        sent[digits] = time.time()
        monday.ui_change_column(item, "phone", f"+{digits}")
    wait_for(lambda: bool(monday.dispatcher.wait_idle(10)), 120, "webhooks delivered")

    def matched() -> dict[str, tuple[float, float]]:
        """Phone digits → (when the change was queued, when it was applied)."""
        done = applied_at(engine)
        out: dict[str, tuple[float, float]] = {}
        for change_id, payload, queued in changes_since(engine, first_change):
            found = PHONE.search(payload)
            if found and found.group(0) in sent and change_id in done:
                out[found.group(0)] = (queued, done[change_id])
        return out

    wait_for(lambda: len(matched()) == total, 120, "every phone edit applied")
    done = matched()
    quiet(sf, monday, engine)
    sf_calls = sf.calls.calls()[sf_before:]
    monday_calls = monday.calls.count() - monday_before
    latencies = [done[d][1] - t for d, t in sent.items()]
    in_crmsync = [done[d][1] - done[d][0] for d in sent]  # from the queue to the sync log's `applied`
    writes = salesforce_writes(sf_calls)
    return {
        "rate_events_per_s": WEBHOOK_RATE,
        "qualified_leads": len(leads),
        "changes": len(latencies),
        "webhook_to_salesforce": summary_ms(latencies),
        "queued_to_applied": summary_ms(in_crmsync),
        "salesforce_calls": len(sf_calls),
        "salesforce_writes": writes,
        "salesforce_calls_per_change": round(len(sf_calls) / max(1, len(latencies)), 3),
        "salesforce_writes_per_change": round(writes / max(1, len(latencies)), 3),
        "salesforce_calls_by_endpoint": calls_by_endpoint(sf_calls),
        "monday_calls": monday_calls,
        "seconds": seconds,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def salesforce_to_monday(
    sf: Any, monday: Any, engine: sa.Engine, leads: list[tuple[str, str]], quick: bool
) -> dict[str, Any]:
    """Company edits made in Salesforce, timed until the board's item shows them (2 s poll interval)."""
    seconds = 15.0 if quick else 40.0
    quiet(sf, monday, engine)
    sf_before, monday_before = len(sf.calls.calls()), monday.calls.count()
    pending: dict[str, tuple[str, float]] = {}  # item id → (value, when Salesforce changed it)
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def watch() -> None:
        """Look at the items still waiting every 10 ms (in this process: a dictionary read)."""
        while not stop.is_set() or pending:
            with lock:
                waiting = list(pending.items())
            for item, (value, at) in waiting:
                if monday.item(item)["columns"].get("text") == value:
                    seen = time.time()
                    with lock:
                        del pending[item]
                    latencies.append(seen - at)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    edits = int(seconds / SF_EDIT_EVERY)
    start = time.perf_counter()
    with counting_mutations(monday) as mutations:
        for i in range(edits):
            delay = start + i * SF_EDIT_EVERY - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            item, lead = leads[i % len(leads)]
            value = f"Company {i}"
            with lock:
                pending[item] = (value, time.time())
            sf.update("Lead", lead, {"Company": value})
        wait_for(lambda: not pending, 120, "every Salesforce edit on the board")
        stop.set()
        watcher.join(10)
        quiet(sf, monday, engine)
    sf_calls = sf.calls.calls()[sf_before:]
    monday_calls = monday.calls.count() - monday_before
    return {
        "edits_per_s": round(1 / SF_EDIT_EVERY, 2),
        "poll_interval_s": 2.0,
        "changes": len(latencies),
        "salesforce_to_monday": summary_ms(latencies),
        "salesforce_calls": len(sf_calls),
        "salesforce_calls_per_change": round(len(sf_calls) / max(1, len(latencies)), 3),
        "salesforce_writes": salesforce_writes(sf_calls),
        "salesforce_calls_by_endpoint": calls_by_endpoint(sf_calls),
        "monday_calls": monday_calls,
        "monday_calls_per_change": round(monday_calls / max(1, len(latencies)), 3),
        "monday_mutations": len(mutations),
        "monday_mutations_per_change": round(len(mutations) / max(1, len(latencies)), 3),
        "items_per_mutation": round(sum(mutations) / max(1, len(mutations)), 2),
        "seconds": seconds,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def add_accounts_board(monday: Any) -> str:
    store = monday.store
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
    with monday.lock:
        store.boards[board.id] = board
    return str(board.id)


def migration(quick: bool) -> dict[str, Any]:
    """``crmsync migrate`` of N Salesforce Accounts to an empty board, the complexity budget lifted."""
    records = 1_000 if quick else 5_000
    industries = ("Banking", "Energy", "Retail", "Technology", None)
    with in_process_sandbox("empty") as (box, directory):
        sf: Any = box.salesforce
        monday: Any = box.monday
        for n in range(records):
            fields: dict[str, Any] = {"Name": f"Account {n:05d}", "NumberOfEmployees": n % 700}
            if industries[n % len(industries)]:
                fields["Industry"] = industries[n % len(industries)]
            sf.insert("Account", fields)
        board = add_accounts_board(monday)
        text = MIGRATE_CONFIG.format(db=directory / "crmsync.db", flow=MIGRATE_FLOW)
        config = write_config(directory, text, box.env())
        crmsync("db", "upgrade", "-c", str(config))

        requests: list[tuple[float, bool, int]] = []  # (when, mutation, items written by it)
        points = [0]
        documents, budget = monday.documents, monday.budget
        get, charge = documents.get, budget.charge

        def counting_get(query: str) -> Any:
            mutation = query.lstrip().startswith("mutation")
            items = query.count("create_item(") + query.count("change_multiple_column_values(")
            requests.append((time.time(), mutation, items))
            return get(query)

        def counting_charge(token: str, kind: str, cost: int) -> Any:
            points[0] += cost
            return charge(token, kind, cost)

        documents.get, budget.charge = counting_get, counting_charge
        sf_before = len(sf.calls.calls())
        started = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "crmsync", "migrate", MIGRATE_FLOW, "-c", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        seconds = time.time() - started
        if done.returncode != 0:
            raise RuntimeError(f"crmsync migrate failed: {done.stderr}")
        items = monday.items(board)
        refused = sum(1 for c in monday.calls.calls() if c.status != 200)
        sf_calls = sf.calls.calls()[sf_before:]
    if len(items) != records:
        raise RuntimeError(f"{len(items)} items on the board for {records} records")
    mutations = [r for r in requests if r[1]]
    writing = mutations[-1][0] - mutations[0][0] if len(mutations) > 1 else seconds
    per_record = points[0] / records
    return {
        "records": records,
        "seconds_including_process_start": round(seconds, 2),
        "records_per_s": round(records / seconds, 1),
        "seconds_writing": round(writing, 2),
        "records_per_s_writing": round(records / writing, 1) if writing > 0 else None,
        "graphql_requests": len(requests),
        "graphql_mutations": len(mutations),
        "items_per_mutation": round(sum(r[2] for r in mutations) / max(1, len(mutations)), 1),
        "smallest_mutation": min((r[2] for r in mutations), default=0),
        "refused_requests": refused,
        "complexity_points": points[0],
        "points_per_record": round(per_record, 1),
        "records_per_s_in_real_budget": round(REAL_BUDGET_PER_MINUTE / per_record / 60, 1),
        "salesforce_calls": len(sf_calls),
        "salesforce_calls_by_endpoint": calls_by_endpoint(sf_calls),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
