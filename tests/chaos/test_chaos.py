"""Chaos: W2 (monday ⇄ Salesforce) and W3 (usage billing) through real crmsync processes while
everything fails at random — nothing lost, nothing duplicated, no wrong value.

Two ``crmsync serve`` behind a load balancer and several ``crmsync worker`` share a store on a
PostgreSQL cluster of the test's own. While an application submits usage entries (through
``crmsync.client``, retrying with the same delivery ids) and people edit phones on the board and
companies in Salesforce, a monkey SIGKILLs workers and web processes (a supervisor restarts them),
stops the PostgreSQL server for a while, expires the Salesforce sessions; the sandbox answers 10 %
5xx, 5 % 429 and 5 % hangs, and drops, duplicates and reorders webhook deliveries. Then the faults
stop and the test waits for both sides to agree with what was sent, and reports how long that took.

Each workflow runs on its own (its own cluster, processes and sandbox), so a failure names the
workflow. One seed drives the monkey, the workload and the vendors' fault draws (printed; replay
with ``CRMSYNC_CHAOS_SEED``). ``CRMSYNC_CHAOS_SIZE=full`` (``make chaos``) runs 10,000 changes:
6,000 through W3, 4,000 through W2; ``make test`` 750.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from crmsync.client import Client
from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.errors import RetryLater
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.tls import ensure_materials
from crmsync.store import schema as t
from crmsync.store import tokens
from crmsync.store.db import Store

from .balancer import Balancer
from .cluster import PostgresCluster, free_port
from .fleet import Fleet

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results.json"
EVENTS = ("create_item", "change_column_value", "change_name", "item_deleted", "item_archived")
PREFIX = "chaos-"  # the Ad_Id__c of every usage entry the application sends
#: records Salesforce refuses on purpose (a contract that does not exist): the only dead letters allowed
PLANTED = tuple(f"{PREFIX}planted-{i}" for i in range(3))
MISSING_CONTRACT = "800000000000404AAA"


@dataclass(frozen=True)
class Plan:
    usage: int  # usage entries, corrections and deletions sent by the application (W3)
    edits: int  # phone edits on the board and company edits in Salesforce (W2)
    leads: int  # leads qualified before the chaos begins
    workers: int
    window: float  # the faults last at least this long (seconds)
    outage: float  # the store's PostgreSQL is down this long, once
    reconcile: float  # crmsync worker --reconcile-interval
    drain_limit: float  # everything agrees within this long after the faults stop


PLANS = {
    ("nightly", "w3"): Plan(
        usage=500, edits=0, leads=0, workers=2, window=30, outage=6, reconcile=4, drain_limit=90
    ),
    ("nightly", "w2"): Plan(
        usage=0, edits=250, leads=12, workers=2, window=30, outage=6, reconcile=4, drain_limit=90
    ),
    ("full", "w3"): Plan(
        usage=6000, edits=0, leads=0, workers=3, window=150, outage=30, reconcile=8, drain_limit=300
    ),
    ("full", "w2"): Plan(
        usage=0, edits=4000, leads=120, workers=3, window=150, outage=30, reconcile=8, drain_limit=300
    ),
}


def fault_mix(sandbox: SalesforceEmulator | MondayEmulator, api: str, unavailable: str) -> None:
    """10 % 5xx, 5 % 429 asking for 2 s, 5 % hangs; rules are tried in order, so each probability is
    of the calls the rules before it let through."""
    sandbox.faults.add(path=api, error=unavailable, probability=0.10)
    sandbox.faults.add(path=api, status=429, retry_after=2, probability=0.05 / 0.90)
    sandbox.faults.add(path=api, hang=True, probability=0.05 / 0.85)


def webhook_mix(monday: MondayEmulator) -> None:
    monday.faults.add(webhook="drop", probability=0.03)
    monday.faults.add(webhook="duplicate", probability=0.05)
    monday.faults.add(webhook="reorder", probability=0.05)


def write_config(directory: Path, store_url: str, env: dict[str, str]) -> Path:
    """The usage-billing and monday-salesforce recipes in one file, on ``store_url``, with the
    settings a user living with these faults would choose: short HTTP timeouts (a hung call is given
    up after 3 s), short leases (a killed worker's changes are taken over after 5 s)."""
    usage = yaml.safe_load((ROOT / "examples" / "usage-billing" / "crmsync.yaml").read_text())
    leads = yaml.safe_load((ROOT / "examples" / "monday-salesforce" / "crmsync.yaml").read_text())
    connections = {**usage["connections"], **leads["connections"]}
    connections["salesforce"]["timeout_seconds"] = 3
    connections["monday"]["timeout_seconds"] = 3
    flows = {**usage["flows"], **leads["flows"]}
    flows["leads"]["initial_sync"] = False  # the board's earlier items stay as they are
    config = {
        "version": 1,
        "store": {"url": store_url},
        "web": {"host": "127.0.0.1"},
        "worker": {
            "concurrency": 4,
            "lease_seconds": 5,
            "poll_interval_seconds": 0.1,
            "batch_size": 200,
            "backoff": {"initial_seconds": 0.5, "factor": 2, "max_seconds": 4, "jitter": 0.2},
        },
        "connections": connections,
        "flows": flows,
        "views": usage["views"],
    }
    path = directory / "crmsync.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return path


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


@dataclass
class Run:
    """What was sent, what happened, and what the test expects to find."""

    plan: Plan
    seed: int
    contracts: list[str]  # the activated contracts usage entries are for
    usage: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # key -> fields, None: deleted
    phones: dict[str, str] = field(default_factory=dict)  # monday item id -> phone
    companies: dict[str, str] = field(default_factory=dict)  # monday item id -> company
    lead_ids: dict[str, str] = field(default_factory=dict)  # monday item id -> Salesforce Lead id
    events: list[str] = field(default_factory=list)
    edits: list[str] = field(default_factory=list)  # people's W2 edits: when (UTC), where, what
    submit_retries: int = 0
    errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.started:7.1f} s  {what}"
        self.events.append(line)
        print(line, flush=True)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[SalesforceEmulator, MondayEmulator]]:
    materials = ensure_materials(tmp_path / "keys")
    sf = SalesforceEmulator(materials=materials)
    sf.seed("demo")
    # monday resends a delivery that was not answered 2xx (once a minute for 30 minutes; sooner here)
    monday = MondayEmulator(retry_delays=(1, 2, 4, 8, 15, 30, 30, 30))
    monday.seed("demo")
    with serve(sf, materials=materials), serve(monday):
        yield sf, monday


@pytest.mark.chaos
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("workflow", ["w3", "w2"])
def test_under_chaos_nothing_is_lost_duplicated_or_wrong(
    workflow: str,
    postgres: PostgresCluster,
    sandbox: tuple[SalesforceEmulator, MondayEmulator],
    tmp_path: Path,
    size: str,
    seed: int,
) -> None:
    sf, monday = sandbox
    plan = PLANS[size, workflow]
    run = Run(plan, seed, [c["Id"] for c in sf.records("Contract") if c.get("Status") == "Activated"])
    sf.faults.seed(f"{seed}:salesforce")
    monday.faults.seed(f"{seed}:monday")
    env = {**sf.credentials(), **monday.credentials()}
    config = write_config(tmp_path, postgres.url, env)
    subprocess.run(
        [sys.executable, "-m", "crmsync", "db", "upgrade", "-c", str(config)], check=True, capture_output=True
    )
    store = Store(postgres.url)
    token = tokens.create_token(store, "chaos-app")
    fleet = Fleet(config, tmp_path, env)
    with ExitStack() as stack:
        stack.callback(store.dispose)
        web_ports = [free_port(), free_port()]
        for port in web_ports:
            fleet.add("serve", port=port)
        for _ in range(plan.workers):
            fleet.add("worker", "--reconcile-interval", str(plan.reconcile))
        stack.callback(fleet.stop)
        balancer = Balancer(web_ports)
        stack.callback(balancer.close)
        wait_until(fleet.ready, 60, "every crmsync process answers")
        fleet.supervise()
        board = monday.board_id("Leads")
        for event in EVENTS:
            monday.add_webhook(board, f"{balancer.url}/webhooks/monday/monday", event, app=True)

        if plan.leads:
            qualify_leads(run, sf, monday, board)
        plant_dead_letters(run, store, sf)
        chaos(run, fleet, postgres, sf, monday, balancer.url, token)
        faults_stopped = time.monotonic()
        run.note("faults stopped")

        queue = ChangeQueue(store)
        try:
            wait_until(
                lambda: settled(queue) and not differences(run, sf, monday, board),
                plan.drain_limit,
                "both sides agree with what was sent",
                interval=0.5,
            )
        except AssertionError as exc:
            found = differences(run, sf, monday, board)
            where = diagnose(
                run, store, sf, found, Path(tempfile.gettempdir()) / f"crmsync-chaos-{workflow}-{seed}.txt"
            )
            raise AssertionError(
                f"{exc} (seed {seed}; queue {queue.stats()}); {len(found)} differences: {found[:20]}"
                f"; each wrong lead's history: {where}"
            ) from None
        drain = time.monotonic() - faults_stopped
        run.note(f"drained {drain:.1f} s after the faults stopped")
        assert fleet.ready(), "a crmsync process is not running"
        exits = fleet.unexpected_exits()
        dead = queue.dead_letters(limit=1000)
        figures = report(run, f"{size} {workflow}", drain, fleet, sf, monday, exits, len(dead))

    assert not run.errors, run.errors
    assert not differences(run, sf, monday, board)
    assert sorted(d.record_key for d in dead) == sorted(PLANTED), [
        (d.flow, d.record_key, d.error) for d in dead
    ]
    assert not exits, "crmsync processes exited that nobody killed:\n" + "\n\n".join(exits)
    save(size, workflow, figures)


def qualify_leads(run: Run, sf: SalesforceEmulator, monday: MondayEmulator, board: str) -> None:
    """Leads qualified on the board before the chaos begins, each with its Salesforce records."""
    for i in range(run.plan.leads):
        phone, company = f"+1{3000000000 + i}", f"Chaos Co {i}"
        item = monday.ui_create_item(
            board,
            f"Lead{i} Chaos",
            values={
                "status": "Qualified",
                "email": f"lead{i}@chaos.example",
                "text": company,
                "phone": phone,
            },
        )
        run.phones[item], run.companies[item] = phone, company

    def written_back() -> bool:
        for item in run.phones:
            lead = monday.item(item)["columns"].get("text_mkr1lead")
            if lead:
                run.lead_ids[item] = lead
        return len(run.lead_ids) == len(run.phones)

    wait_until(written_back, 120, f"{run.plan.leads} leads qualified and linked")
    run.note(f"{run.plan.leads} leads qualified")


def plant_dead_letters(run: Run, store: Store, sf: SalesforceEmulator) -> None:
    """Usage entries for a contract that does not exist, queued as an application would (the door's
    lock check cannot refuse what it cannot find): Salesforce refuses them at write time."""
    ChangeQueue(store).enqueue(
        [
            NewChange(
                source="service_app",
                flow="usage",
                record_key=key,
                operation="upsert",
                fields={"contract_id": MISSING_CONTRACT, "product": "Banner", "quantity": 1},
            )
            for key in PLANTED
        ]
    )


def chaos(
    run: Run,
    fleet: Fleet,
    postgres: PostgresCluster,
    sf: SalesforceEmulator,
    monday: MondayEmulator,
    url: str,
    token: str,
) -> None:
    plan = run.plan
    fault_mix(sf, "^/services/data", "unavailable")
    fault_mix(monday, "^/v2", "server_error")
    webhook_mix(monday)
    run.started = time.monotonic()  # the window, and the times noted, run from here
    run.note("faults on")
    stop = threading.Event()
    threads = [
        threading.Thread(target=application, args=(run, url, token, random.Random(f"{run.seed}:app"))),
        threading.Thread(target=people, args=(run, sf, monday, random.Random(f"{run.seed}:people"))),
    ]
    monkey_thread = threading.Thread(
        target=monkey, args=(run, fleet, postgres, sf, stop, random.Random(f"{run.seed}:monkey"))
    )
    for thread in threads:
        thread.start()
    monkey_thread.start()
    for thread in threads:
        thread.join()
    run.note("everything sent")
    wait_until(lambda: time.monotonic() - run.started >= plan.window, plan.window, "the chaos window")
    stop.set()
    monkey_thread.join()
    sf.faults.clear()
    monday.faults.clear()
    wait_until(fleet.ready, 60, "every crmsync process answers again")


def application(run: Run, url: str, token: str, rnd: random.Random) -> None:
    """W3: usage entries, corrections and deletions in requests of 1 to 20 records, paced over the
    window; a request that fails is sent again with the same delivery ids until it is taken."""
    plan = run.plan
    live: list[str] = []
    sent = 0
    pause = plan.window * 0.8 / max(1.0, plan.usage / 10.5)
    with Client(url, token, timeout=10) as client:
        while sent < plan.usage:
            batch: list[Any] = []
            for _ in range(min(rnd.randint(1, 20), plan.usage - sent)):
                roll = rnd.random()
                if live and roll < 0.12:
                    key = rnd.choice(live)
                    fields: dict[str, Any] = {"quantity": rnd.randint(2, 99)}
                    run.usage[key] = {**(run.usage[key] or {}), **fields}
                    batch.append({"key": key, "fields": fields})
                elif live and roll < 0.2:
                    key = live.pop(rnd.randrange(len(live)))
                    run.usage[key] = None
                    batch.append({"key": key, "operation": "delete"})
                else:
                    key = f"{PREFIX}{sent}"
                    fields = {
                        "contract_id": rnd.choice(run.contracts),
                        "product": rnd.choice("SMLX"),
                        "quantity": 1,
                    }
                    run.usage[key] = fields
                    live.append(key)
                    batch.append({"key": key, "fields": fields})
                batch[-1]["delivery_id"] = f"{run.seed}-{sent}"
                sent += 1
            while True:
                try:
                    client.submit("usage", batch)
                    break
                except RetryLater:
                    run.submit_retries += 1
                    time.sleep(rnd.uniform(0.2, 1.0))
                except Exception as exc:  # a refusal: the test fails with it
                    run.errors.append(f"usage request refused: {exc!r}")
                    return
            time.sleep(pause * rnd.uniform(0.5, 1.5))


def people(run: Run, sf: SalesforceEmulator, monday: MondayEmulator, rnd: random.Random) -> None:
    """W2: phone edits on the board (70 %) and company edits in Salesforce (30 %), paced over the
    window; nobody edits one lead twice within 1.5 s (monday stamps changes to the second)."""
    plan = run.plan
    items = sorted(run.phones)
    last: dict[str, float] = {}
    pause = plan.window * 0.8 / max(1, plan.edits)
    for n in range(plan.edits):
        item = rnd.choice(items)
        while time.monotonic() - last.get(item, -10.0) < 1.5:
            item = rnd.choice(items)
            time.sleep(0.01)
        last[item] = time.monotonic()
        if rnd.random() < 0.7:
            phone = f"+1{4000000000 + n}"
            monday.ui_change_column(item, "phone", phone)
            run.phones[item] = phone
            run.edits.append(f"edit {datetime.now(UTC).isoformat()} item {item} phone on monday: {phone}")
        else:
            company = f"Chaos Co {item} v{n}"
            sf.update("Lead", run.lead_ids[item], {"Company": company})
            run.companies[item] = company
            run.edits.append(
                f"edit {datetime.now(UTC).isoformat()} item {item} Company in Salesforce: {company}"
            )
        time.sleep(pause * rnd.uniform(0.5, 1.5))


def monkey(
    run: Run,
    fleet: Fleet,
    postgres: PostgresCluster,
    sf: SalesforceEmulator,
    stop: threading.Event,
    rnd: random.Random,
) -> None:
    plan = run.plan
    outage_at = run.started + rnd.uniform(0.25, 0.5) * plan.window
    outage_done = False
    workers = [m for m in fleet.members if m.name.startswith("worker")]
    webs = [m for m in fleet.members if m.name.startswith("serve")]
    while not stop.wait(rnd.uniform(1.0, 4.0)):
        if not outage_done and time.monotonic() >= outage_at:
            run.note(f"PostgreSQL stopped for {plan.outage:g} s")
            postgres.stop("fast")
            time.sleep(plan.outage)
            postgres.start()
            run.note("PostgreSQL started")
            outage_done = True
            continue
        roll = rnd.random()
        if roll < 0.4:
            victim = rnd.choice(workers)
        elif roll < 0.65:
            victim = rnd.choice(webs)
        elif roll < 0.85:
            sf.expire_sessions()
            run.note("Salesforce sessions expired")
            continue
        else:
            continue
        down = rnd.uniform(0.0, 3.0)
        fleet.kill(victim, down)
        run.note(f"SIGKILL {victim.name} (back in {down:.1f} s)")
    if not outage_done:  # a window too short for the draw: the outage still happens, at the end
        postgres.stop("fast")
        time.sleep(plan.outage)
        postgres.start()
        run.note(f"PostgreSQL stopped for {plan.outage:g} s (at the end)")


def settled(queue: ChangeQueue) -> bool:
    s = queue.stats()
    return s.pending == 0 and s.leased == 0 and s.retrying == 0


def differences(run: Run, sf: SalesforceEmulator, monday: MondayEmulator, board: str) -> list[str]:
    """The reconcile diff: every value sent against what each side holds (empty when they agree)."""
    out: list[str] = []
    records: dict[str, list[dict[str, Any]]] = {}
    for r in sf.records("Usage__c", include_deleted=True):
        key = str(r.get("Ad_Id__c"))
        if key.startswith(PREFIX) and key not in PLANTED:
            records.setdefault(key, []).append(r)
    for key, want in run.usage.items():
        got = records.get(key, [])
        live = [r for r in got if not r.get("IsDeleted")]
        if len(got) > 1:
            out.append(f"usage {key}: {len(got)} records")
        if want is None:
            if live:
                out.append(f"usage {key}: deleted, still there")
        elif not live:
            out.append(f"usage {key}: missing")
        else:
            r = live[0]
            held = (r.get("Contract__c"), r.get("Product__c"), float(r.get("Quantity__c") or 0))
            if held != (want["contract_id"], want["product"], float(want["quantity"])):
                out.append(f"usage {key}: {held} != {want}")
    out += [f"usage {k}: never sent" for k in records if k not in run.usage]
    for item, lead_id in run.lead_ids.items():
        lead = sf.get("Lead", lead_id) or {}
        columns = monday.item(item)["columns"]
        for side, phone in (("Salesforce", lead.get("Phone")), ("monday", columns.get("phone"))):
            if phone != run.phones[item]:
                out.append(f"lead {item} phone on {side}: {phone!r} != {run.phones[item]!r}")
        for side, company in (("Salesforce", lead.get("Company")), ("monday", columns.get("text"))):
            if company != run.companies[item]:
                out.append(f"lead {item} company on {side}: {company!r} != {run.companies[item]!r}")
    for obj in ("Lead", "Account", "Contact", "Opportunity"):
        made = [c for c in sf.changes(obj, client="crmsync") if c["operation"] == "create"]
        if len(made) != run.plan.leads:
            out.append(f"{len(made)} {obj} records created for {run.plan.leads} leads")
    ours = [i for i in monday.items(board) if i["name"].endswith(" Chaos")]
    if len(ours) != run.plan.leads:
        out.append(f"{len(ours)} lead items on the board for {run.plan.leads}")
    return out


def diagnose(run: Run, store: Store, sf: SalesforceEmulator, found: list[str], out: Path) -> Path:
    """Write what crmsync queued, logged and remembered for each wrong lead, beside Salesforce's
    write journal of it and the edits people made, oldest first: a failing seed explains itself."""
    wrong = {line.split()[1] for line in found if line.startswith("lead ")}
    lines: list[str] = []
    for item in sorted(wrong):
        lead_id = run.lead_ids[item]
        keys = [item, lead_id]
        lines.append(f"== item {item} / Lead {lead_id}")
        with store.read() as conn:
            for r in conn.execute(
                sa.select(t.changes).where(t.changes.c.record_key.in_(keys)).order_by(t.changes.c.id)
            ).mappings():
                lines.append(
                    f"change {r['id']} {r['source']} {r['operation']} {r['state']} queued {r['created_at']}"
                    f" attempts {r['attempts']} payload {json.dumps(r['payload'], default=str)}"
                )
            for r in conn.execute(
                sa.select(t.sync_log).where(t.sync_log.c.record_key.in_(keys)).order_by(t.sync_log.c.id)
            ).mappings():
                lines.append(f"log {r['at']} {r['outcome']} {r['change_ids']} {r['message']}")
            for r in conn.execute(sa.select(t.shadow).where(t.shadow.c.record_id.in_(keys))).mappings():
                lines.append(f"shadow {r['object_name']} {json.dumps(r['fields'], default=str)}")
        for c in sf.changes("Lead", lead_id):
            lines.append(f"salesforce {c['at']} {c['operation']} by {c['client']}: {c['fields']}")
        lines += [line for line in run.edits if f"item {item} " in line]
    out.write_text("\n".join(lines) + "\n")
    return out


def report(
    run: Run,
    size: str,
    drain: float,
    fleet: Fleet,
    sf: SalesforceEmulator,
    monday: MondayEmulator,
    exits: list[str],
    dead: int,
) -> dict[str, Any]:
    sf_calls = [c for c in sf.calls.calls() if c.path.startswith("/services/data")]
    figures = {
        "size": size,
        "seed": run.seed,
        "changes": run.plan.usage + run.plan.edits,
        "usage_changes_w3": run.plan.usage,
        "edits_w2": run.plan.edits,
        "leads_w2": run.plan.leads,
        "worker_processes": run.plan.workers,
        "web_processes": 2,
        "sigkills": fleet.kills,
        "postgresql_outage_seconds": run.plan.outage,
        "submit_retries": run.submit_retries,
        "salesforce_data_calls": len(sf_calls),
        "salesforce_429": sum(1 for c in sf_calls if c.status == 429),
        "salesforce_5xx": sum(1 for c in sf_calls if c.status >= 500),
        "webhook_deliveries": len(monday.deliveries()),
        "unexpected_exits": len(exits),
        "exits_store_unreachable_at_start": fleet.store_down_exits(),
        "dead_letters": dead,
        "planted_dead_letters": len(PLANTED),
        "drain_seconds_after_faults_stop": round(drain, 1),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(figures, indent=2))
    return figures


def save(size: str, workflow: str, figures: dict[str, Any]) -> None:
    """A passing run's figures go to bench/results.json (``chaos``), which docs/performance.md shows."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("chaos", {}).setdefault(size, {})[workflow] = figures
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
