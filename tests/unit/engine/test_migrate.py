"""The migration engine with in-memory connectors: batches, links, resume, limits, errors, dry runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crmsync.config import load_config
from crmsync.connectors.base import Write, WriteResult
from crmsync.connectors.capabilities import ChoiceFields, Choices, PacedBudget, Writable, countdown
from crmsync.connectors.memory.system import MemorySystem
from crmsync.connectors.monday.catalog import choices_of
from crmsync.connectors.salesforce.export import BULK_THRESHOLD, SalesforceExports
from crmsync.engine import migrate as m
from crmsync.engine.migrate import Migration
from crmsync.engine.runtime import Runtime
from crmsync.errors import BudgetExhausted, ConfigError, Fatal, FixTheData, RetryLater
from crmsync.store import schema as t
from crmsync.store.db import Store
from crmsync.store.shadow import get_shadow
from crmsync.store.synclog import query

CONFIG = """
version: 1
store: {{url: "sqlite:///{db}"}}
connections:
  salesforce: {{type: salesforce, auth: client_credentials, client_id: cid, client_secret: s,
               login_url: "https://acme.my.salesforce.com"}}
  monday: {{type: monday, token: t, api_url: "http://127.0.0.1:9/v2"}}
flows:
  accounts:
    source: salesforce
    source_object: Account
    target: monday
    object: "4242"
    key: Id
    match: {{field: text_sfid}}
{extra}    fields:
      - {{source: Id, target: text_sfid}}
      - {{source: Name, target: name}}
      - {{source: Owner.Name, target: text_owner}}
      - {{source: NumberOfEmployees, target: numbers, transform: number}}
  back:
    source: monday
    source_object: "4242"
    target: salesforce
    object: Account
    key: id
    fields:
      - {{source: name, target: Name}}
"""


def account(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "attributes": {"type": "Account"},
        "Id": f"001{n:015d}",
        "Name": f"Account {n}",
        "Owner": {"attributes": {"type": "User"}, "Name": "Ada"},
        "NumberOfEmployees": n,
        "SystemModstamp": "2026-03-01T10:00:00.000+0000",
        **fields,
    }


class FakeClient:
    def __init__(self, rows: list[dict[str, Any]], count: int | None = None) -> None:
        self.rows = rows
        self.counted = count
        self.used: list[str] = []
        self.soql: list[str] = []

    def count(self, soql: str) -> int:
        self.soql.append(soql)
        return len(self.rows) if self.counted is None else self.counted

    def query_iter(self, soql: str) -> Iterator[dict[str, Any]]:
        self.used.append("rest")
        self.soql.append(soql)
        yield from self.rows

    def bulk_query(self, soql: str) -> Iterator[dict[str, Any]]:
        self.used.append("bulk")
        self.soql.append(soql)
        for row in self.rows:  # as the Bulk API gives them: flat, text
            yield {
                "Id": row["Id"],
                "Name": row["Name"],
                "Owner.Name": row["Owner"]["Name"],
                "NumberOfEmployees": str(row["NumberOfEmployees"]),
                "SystemModstamp": row["SystemModstamp"],
            }


class FakeSalesforce(SalesforceExports):
    """The Salesforce connector's exports over a scripted client (the query text is the connector's)."""

    calls_made = 0

    def __init__(self, rows: list[dict[str, Any]], count: int | None = None) -> None:
        self.client = FakeClient(rows, count)  # type: ignore[assignment]


class FakeMonday:
    """A board keyed by the match column (its columns as monday describes them); scripted failures;
    a pacer whose waits for the budget are told to whoever asked (``on_wait``)."""

    def __init__(self, per_request: int = 3) -> None:
        self.slept: list[float] = []
        self.columns: list[dict[str, Any]] = []
        self.report: Callable[[float | None], None] | None = None
        self.per_request = per_request
        self.items: dict[str, str] = {}  # Salesforce id -> item id
        self.values: dict[str, dict[str, Any]] = {}
        self.raises: list[Exception] = []
        self.refuse: dict[str, Exception] = {}
        self.refuse_request_with: str | None = None
        self.batches: list[list[str]] = []
        self.calls_made = 0

    def max_batch_size(self, board: str) -> int:
        return self.per_request

    def budget_name(self) -> str:
        return "monday's complexity budget"

    def on_wait(self, report: Callable[[float | None], None] | None) -> None:
        self.report = report

    def wait_for_budget(self, seconds: float) -> None:
        """What the pacer does when the window is full."""
        if self.report is None:
            self.slept.append(seconds)
        else:
            countdown(seconds, self.slept.append, self.report)

    def choice_fields(self, board: str) -> dict[str, Choices]:
        assert board == "4242"
        self.calls_made += 1
        return choices_of(self.columns)  # monday's reading of status and dropdown columns

    def write_batch(self, board: str, writes: list[Write]) -> list[WriteResult]:
        assert board == "4242"
        self.calls_made += 1
        if self.raises:
            raise self.raises.pop(0)
        if self.refuse_request_with is not None and any(w.key == self.refuse_request_with for w in writes):
            raise FixTheData("ColumnValueException for the whole request", vendor_code="ColumnValueException")
        self.batches.append([w.key for w in writes])
        results = []
        for w in writes:
            assert w.operation == "upsert" and w.external_id_field == "text_sfid" and w.external_id == w.key
            if w.key in self.refuse:
                error: Any = self.refuse[w.key]
                results.append(WriteResult(w.key, False, error=error))
                continue
            item = self.items.get(w.key)
            created = item is None
            if item is None:
                item = str(1000 + len(self.items))
                self.items[w.key] = item
            self.values[item] = dict(w.fields)
            results.append(WriteResult(w.key, True, target_id=item, created=created))
        return results


class World:
    def __init__(
        self, tmp_path: Path, rows: list[dict[str, Any]], *, extra: str = "", count: int | None = None
    ):
        path = tmp_path / "crmsync.yaml"
        path.write_text(CONFIG.format(db=tmp_path / "c.db", extra=extra))
        self.runtime = Runtime(load_config(path), upgrade=True)
        self.sf = FakeSalesforce(rows, count)
        self.monday = FakeMonday()
        self.asked: list[str] = []
        self.slept: list[float] = []

        def connector(name: str) -> Any:
            self.asked.append(name)
            return {"salesforce": self.sf, "monday": self.monday}[name]

        self.runtime.connector = connector  # type: ignore[method-assign]

    def migration(self, **kw: Any) -> Migration:
        return Migration(self.runtime, "accounts", sleep=self.slept.append, **kw)

    def links(self) -> dict[str, str]:
        with self.runtime.store.read() as conn:
            rows = conn.execute(sa.select(t.links.c.source_key, t.links.c.target_id)).all()
        return {r.source_key: r.target_id for r in rows}


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(rows: list[dict[str, Any]], **kw: Any) -> World:
        made.append(World(tmp_path, rows, **kw))
        return made[-1]

    yield make
    for w in made:
        w.runtime.store.dispose()


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world([account(n) for n in range(7)])


def counts(summary: m.MigrationSummary) -> tuple[int, int, int, int]:
    return summary.created, summary.updated, summary.skipped, summary.failed


def test_records_are_mapped_upserted_in_batches_linked_shadowed_and_logged(world: World) -> None:
    progress: list[int] = []
    summary = world.migration(progress=progress.append).run()

    assert counts(summary) == (7, 0, 0, 0)
    assert [len(b) for b in world.monday.batches] == [3, 3, 1]  # batches as large as a request
    assert progress == [3, 3, 1]
    assert world.sf.client.used == ["rest"]
    assert world.sf.client.soql[-1] == (
        "SELECT Id, Name, Owner.Name, NumberOfEmployees, SystemModstamp FROM Account ORDER BY Id"
    )
    links = world.links()
    key = account(5)["Id"]
    assert len(links) == 7 and links[key] == world.monday.items[key]
    assert world.monday.values[links[key]] == {
        "text_sfid": key,
        "name": "Account 5",
        "text_owner": "Ada",
        "numbers": 5,
    }
    assert summary.api_calls == {"salesforce": 0, "monday": 3}
    [line] = query(world.runtime.store, "accounts", key)
    assert (line.outcome, line.operation, line.target_id) == ("applied", "create", links[key])


def test_shadows_are_the_ones_the_two_way_engine_keeps(world: World) -> None:
    """What migrate stores in one statement equals what TwoWay.remember stores one record at a time."""
    world.migration().run()
    flow = world.runtime.flows["accounts"]
    key = account(2)["Id"]
    item = world.links()[key]
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)
    store = world.runtime.store
    source = {"Id": key, "Name": "Account 2", "Owner.Name": "Ada", "NumberOfEmployees": 2}
    target = world.monday.values[item]
    world.runtime.twoway.remember(flow, "source", "expected-source", source, at)
    world.runtime.twoway.remember(flow, "target", "expected-target", target, at)
    assert get_shadow(store, "salesforce", "accounts:source", key) == get_shadow(
        store, "salesforce", "accounts:source", "expected-source"
    )
    assert get_shadow(store, "monday", "accounts:target", item) == get_shadow(
        store, "monday", "accounts:target", "expected-target"
    )


def test_large_sources_are_read_through_the_bulk_api(make_world: Callable[..., World]) -> None:
    world = make_world([account(n) for n in range(4)], count=BULK_THRESHOLD)
    summary = world.migration().run()
    assert world.sf.client.used == ["bulk"]
    assert counts(summary) == (4, 0, 0, 0)
    assert world.monday.values[world.links()[account(3)["Id"]]]["numbers"] == 3  # text "3" → number


def test_a_rerun_skips_linked_records_and_the_limit_counts_only_writes(world: World) -> None:
    first = world.migration(limit=4).run()
    assert counts(first) == (4, 0, 0, 0)
    assert [len(b) for b in world.monday.batches] == [3, 1]
    second = world.migration(limit=4).run()
    assert counts(second) == (3, 0, 4, 0)
    third = world.migration().run()
    assert counts(third) == (0, 0, 7, 0)
    assert len(world.monday.items) == 7 and world.monday.calls_made == 3  # [3, 1], [3], none


def test_items_written_but_not_linked_are_updated_not_duplicated(world: World) -> None:
    for n in (0, 1, 4):  # written by a run killed before it recorded its links
        world.monday.items[account(n)["Id"]] = f"90{n}"
    summary = world.migration().run()
    assert counts(summary) == (4, 3, 0, 0)
    assert len(world.monday.items) == 7 and world.links()[account(4)["Id"]] == "904"
    [line] = query(world.runtime.store, "accounts", account(4)["Id"])
    assert line.operation == "update"


def test_retry_later_waits_and_sends_the_batch_again(world: World) -> None:
    world.monday.raises = [
        BudgetExhausted("complexity budget spent", retry_after=7.0),
        RetryLater("monday answered 503"),
        RetryLater("monday answered 503"),
    ]
    summary = world.migration().run()
    assert counts(summary) == (7, 0, 0, 0)
    assert world.slept == [7.0, m.FIRST_WAIT * 2, m.FIRST_WAIT * 4]  # the vendor's wait, then backoff


def test_a_batch_refused_too_often_stops_the_migration_and_keeps_what_was_written(world: World) -> None:
    migration = world.migration(max_attempts=3)
    world.monday.raises = []
    original = world.monday.write_batch

    def second_batch_always_fails(board: str, writes: list[Write]) -> list[WriteResult]:
        if world.monday.batches:
            world.monday.calls_made += 1
            raise RetryLater("monday answered 502")
        return original(board, writes)

    world.monday.write_batch = second_batch_always_fails  # type: ignore[method-assign]
    with pytest.raises(RetryLater) as stopped:
        migration.run()
    assert "after 3 attempts" in str(stopped.value) and "run the migration again" in str(stopped.value)
    assert len(world.links()) == 3 and counts(migration.summary) == (3, 0, 0, 0)
    assert len(world.slept) == 2


def test_a_record_refused_is_failed_and_logged_and_the_others_go_on(world: World) -> None:
    bad = account(3)["Id"]
    world.monday.refuse[bad] = FixTheData("ColumnValueException: invalid value", record=bad)
    summary = world.migration().run()
    assert counts(summary) == (6, 0, 0, 1)
    assert bad not in world.links() and len(world.links()) == 6
    [line] = query(world.runtime.store, "accounts", bad)
    assert line.outcome == "refused" and "invalid value" in (line.message or "")

    world.monday.refuse.clear()  # fixed: a rerun writes only that record
    again = world.migration().run()
    assert counts(again) == (1, 0, 6, 0)


def test_a_record_retried_later_inside_a_batch_is_sent_again_alone(world: World) -> None:
    late = account(1)["Id"]
    world.monday.refuse[late] = RetryLater("request failed after an earlier one of the batch succeeded")
    original = world.monday.write_batch

    def heal(board: str, writes: list[Write]) -> list[WriteResult]:
        results = original(board, writes)
        world.monday.refuse.pop(late, None)
        return results

    world.monday.write_batch = heal  # type: ignore[method-assign]
    summary = world.migration().run()
    assert counts(summary) == (7, 0, 0, 0)
    assert world.monday.batches[:2] == [[account(n)["Id"] for n in range(3)], [late]]


def test_a_whole_request_refused_for_one_record_is_split_until_that_record_is_alone(world: World) -> None:
    bad = account(4)["Id"]
    world.monday.refuse_request_with = bad
    summary = world.migration().run()
    assert counts(summary) == (6, 0, 0, 1)
    assert bad not in world.links()


def test_fatal_stops_the_migration_after_recording_what_was_written(world: World) -> None:
    world.monday.refuse[account(1)["Id"]] = Fatal("token refused", status=401)
    migration = world.migration()
    with pytest.raises(Fatal):
        migration.run()
    assert set(world.links()) == {account(0)["Id"], account(2)["Id"]}
    assert counts(migration.summary) == (2, 0, 0, 0)
    assert migration.summary.api_calls == {"salesforce": 0, "monday": 1}


def test_a_value_no_transform_accepts_fails_that_record_only(make_world: Callable[..., World]) -> None:
    world = make_world([account(0), account(1, NumberOfEmployees="many"), account(2)])
    summary = world.migration().run()
    assert counts(summary) == (2, 0, 0, 1)
    [line] = query(world.runtime.store, "accounts", account(1)["Id"])
    assert line.outcome == "refused" and "number" in (line.message or "")


def test_records_outside_the_flows_when_are_skipped(make_world: Callable[..., World]) -> None:
    rows = [account(n, Type="Customer" if n % 2 else "Prospect") for n in range(6)]
    world = make_world(rows, extra="    when: {field: Type, equals: Customer}\n")
    summary = world.migration().run()
    assert counts(summary) == (3, 0, 3, 0)
    assert "Type" in world.sf.client.soql[-1]


def test_a_dry_run_reads_and_maps_reads_only_the_board_columns_and_stores_nothing(world: World) -> None:
    world.migration(limit=2).run()
    assert len(world.links()) == 2
    calls = world.monday.calls_made

    summary = world.migration(dry_run=True).run()

    assert summary.dry_run and counts(summary) == (5, 0, 2, 0)
    assert world.monday.calls_made == calls + 1  # the columns, to check status and dropdown labels
    assert len(world.links()) == 2
    assert len(query(world.runtime.store, "accounts")) == 2
    assert summary.api_calls["monday"] == 1


@pytest.mark.parametrize(
    ("flow", "problem"),
    [
        ("nope", "unknown flow 'nope'; valid: accounts, back"),
        ("back", "connection 'monday' (type monday) cannot export an object's records (Exports)"),
    ],
)
def test_flows_that_cannot_be_migrated_are_refused(world: World, flow: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Migration(world.runtime, flow)
    assert problem in str(refused.value)


def test_a_flow_without_a_match_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.yaml"
    path.write_text(
        CONFIG.format(db=tmp_path / "c.db", extra="").replace("    match: {field: text_sfid}\n", "")
    )
    runtime = Runtime(load_config(path), store=Store(f"sqlite:///{tmp_path / 'c.db'}"), upgrade=True)
    with pytest.raises(ConfigError) as refused:
        Migration(runtime, "accounts")
    assert "no match column" in str(refused.value)
    runtime.store.dispose()


# -- the command ---------------------------------------------------------------------------------------
def command(world: World, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from typer.testing import CliRunner

    from crmsync.cli.main import app

    def connector(_runtime: Runtime, name: str) -> Any:
        return {"salesforce": world.sf, "monday": world.monday}[name]

    monkeypatch.setattr(Runtime, "connector", connector)
    config = str(world.runtime.config.path)
    return CliRunner().invoke(app, ["migrate", *args, "-c", config])


def test_the_command_prints_the_summary(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    result = command(world, monkeypatch, "accounts", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert "accounts: Account → 4242" in result.output
    assert "│ created               │ 5 " in result.output
    assert "API calls: monday" in result.output
    dry = command(world, monkeypatch, "accounts", "--dry-run")
    assert dry.exit_code == 0 and "Dry run (nothing written)" in dry.output
    assert "│ created               │ 2 (would be written)" in dry.output


def test_the_command_stops_with_status_1_and_says_how_to_resume(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.monday.refuse[account(4)["Id"]] = Fatal("token refused", status=401)
    result = command(world, monkeypatch, "accounts")
    assert result.exit_code == 1
    assert "migration stopped: token refused" in result.output
    assert "Migration stopped" in result.output and "run the same command again to resume" in result.output
    unknown = command(world, monkeypatch, "nope")
    assert unknown.exit_code == 1 and "unknown flow 'nope'" in unknown.output


def test_the_dry_run_names_the_column_and_value_monday_would_refuse_and_what_to_run_next(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = json.dumps({"labels": {"0": "Ada", "1": "Grace"}})
    world.monday.columns = [{"id": "text_owner", "title": "Owner", "type": "status", "settings_str": labels}]
    result = command(world, monkeypatch, "accounts", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Values monday would refuse" not in result.output  # every owner is Ada: a label
    world.monday.columns[0]["settings_str"] = json.dumps({"labels": {"0": "Grace"}})
    result = command(world, monkeypatch, "accounts", "--dry-run")
    assert "Values monday would refuse" in result.output
    assert "text_owner (Owner)" in result.output and "'Ada'" in result.output and "Grace" in result.output
    assert f"then migrate: crmsync migrate accounts -c {world.runtime.config.path}" in result.output


def test_the_fake_board_offers_what_a_migration_asks_for() -> None:
    monday = FakeMonday()
    assert (
        isinstance(monday, Writable) and isinstance(monday, PacedBudget) and isinstance(monday, ChoiceFields)
    )


def test_a_budget_wait_is_told_second_by_second(world: World) -> None:
    migration = world.migration()
    told: list[float | None] = []
    migration.waiting = told.append
    with migration._reporting_waits():
        world.monday.wait_for_budget(2.5)
    assert told == [2.5, 1.5, 0.5, None] and world.monday.slept == [1.0, 1.0, 0.5]
    assert world.monday.report is None  # the target is told to stop reporting when the run ends
    assert migration.waiting_for() == "monday's complexity budget"


def test_ctrl_c_prints_how_to_resume_and_exits_130(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.monday.raises.append(KeyboardInterrupt())
    result = command(world, monkeypatch, "accounts")
    assert result.exit_code == 130
    assert "migration interrupted" in result.output and "Traceback" not in result.output
    assert (
        f"to resume, run the same command again: crmsync migrate accounts -c {world.runtime.config.path}"
        in (result.output)
    )


# -- any target that can be written -------------------------------------------------------------------
def test_a_target_that_cannot_be_written_is_refused_naming_the_capability(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crmsync.connectors.app import AppConnector

    real = world.runtime.connector_type
    monkeypatch.setattr(world.runtime, "connector_type", lambda n: AppConnector if n == "monday" else real(n))
    with pytest.raises(ConfigError) as refused:
        Migration(world.runtime, "accounts")
    assert "connection 'monday' (type monday) cannot be written to (Writable), needed by a migration" in str(
        refused.value
    )


def test_the_command_refuses_a_target_that_cannot_be_written(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crmsync.cli.main import app

    path = tmp_path / "crmsync.yaml"
    text = CONFIG.format(db=tmp_path / "c.db", extra="").replace(
        '  monday: {type: monday, token: t, api_url: "http://127.0.0.1:9/v2"}', "  monday: {type: app}"
    )
    path.write_text(text.split("  back:")[0])
    result = CliRunner().invoke(app, ["migrate", "accounts", "-c", str(path)])
    assert result.exit_code == 1
    assert "connection 'monday' (type app) cannot be written to (Writable)" in result.output


def test_any_writable_target_is_migrated_into_without_budget_or_labels(tmp_path: Path) -> None:
    """An in-memory system as the target: it has no paced budget and no choice fields to ask."""
    system = f"migrate-{tmp_path.name}"
    path = tmp_path / "crmsync.yaml"
    text = CONFIG.format(db=tmp_path / "c.db", extra="").replace(
        '  monday: {type: monday, token: t, api_url: "http://127.0.0.1:9/v2"}',
        f"  monday: {{type: memory, system: {system}}}",
    )
    path.write_text(text.split("  back:")[0].replace('object: "4242"', "object: Account"))
    runtime = Runtime(load_config(path), upgrade=True)
    sf = FakeSalesforce([account(n) for n in range(5)])
    real = runtime.connector
    runtime.connector = lambda name: sf if name == "salesforce" else real(name)  # type: ignore[method-assign]
    try:
        dry = Migration(runtime, "accounts", dry_run=True).run()
        assert counts(dry) == (5, 0, 0, 0) and MemorySystem.named(system).records("Account") == []
        migration = Migration(runtime, "accounts")
        assert migration.waiting_for() == "monday to accept writes again"
        assert counts(migration.run()) == (5, 0, 0, 0)
        records = MemorySystem.named(system).records("Account")
        assert sorted(r.fields["text_sfid"] for r in records) == sorted(account(n)["Id"] for n in range(5))
        assert counts(Migration(runtime, "accounts").run()) == (0, 0, 5, 0)
    finally:
        runtime.close()
        runtime.store.dispose()


def test_the_command_records_its_progress_and_summary_as_a_run_the_dashboard_shows(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crmsync.scheduler import runs

    world.monday.refuse[account(4)["Id"]] = Fatal("token refused", status=401)
    assert command(world, monkeypatch, "accounts").exit_code == 1
    (stopped,) = runs.recent(world.runtime.store, job="migrate:accounts")
    assert stopped.status == "failed" and stopped.finished_at is not None
    assert stopped.message is not None and stopped.message.startswith("stopped: token refused; created 5, ")

    world.monday.refuse.clear()
    result = command(world, monkeypatch, "accounts")
    assert result.exit_code == 0, result.output
    run = runs.recent(world.runtime.store, job="migrate:accounts")[0]
    assert run.id != stopped.id and run.status == "succeeded" and run.finished_at is not None
    assert (run.progress_done, run.progress_total, run.progress_what) == (7, 7, "accounts: Account → 4242")
    assert run.message is not None
    assert run.message.startswith(
        "created 2, updated 0, skipped 5, failed 0; API calls: salesforce 0, monday 1; "
    )
