from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from crmsync.cli import log as log_cmd
from crmsync.store import Store
from crmsync.store.links import put_link
from crmsync.store.synclog import record

T0 = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
MONDAY_ITEM = "1234567890"
SF_LEAD = "00Q5g00000AbCdEAAA"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    log_cmd.register(app)
    return app


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration whose SQLite store holds a two-way pair of records and some noise."""
    db = tmp_path / "store.db"
    store = Store(f"sqlite:///{db}")
    store.upgrade()
    put_link(store, "leads", "board", MONDAY_ITEM, "sf", SF_LEAD)
    put_link(store, "leads_back", "sf", SF_LEAD, "board", MONDAY_ITEM)
    leads: dict[str, Any] = {"flow": "leads", "record_key": MONDAY_ITEM}
    lines: list[dict[str, Any]] = [
        {**leads, "outcome": "received", "source": "board", "operation": "upsert"},
        {**leads, "outcome": "retry", "message": "503 from Salesforce", "attempt": 1},
        {**leads, "outcome": "applied", "source": "board", "target": "sf", "target_id": SF_LEAD},
        {
            "flow": "other",
            "record_key": "unrelated",
            "outcome": "dead",
            "message": "[REQUIRED_FIELD_MISSING] Name",
        },
        {
            "flow": "leads_back",
            "record_key": SF_LEAD,
            "outcome": "applied",
            "source": "sf",
            "target": "board",
            "target_id": MONDAY_ITEM,
            "operation": "upsert",
        },
    ]
    for minutes, line in enumerate(lines):
        record(store, at=T0 + timedelta(minutes=minutes), **line)
    store.dispose()
    path = tmp_path / "crmsync.yaml"
    path.write_text(f"version: 1\nstore:\n  url: sqlite:///{db}\n")
    return path


def run(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "220"})


def test_a_record_is_traced_across_systems_from_either_side(app: typer.Typer, config: Path) -> None:
    for record_id in (MONDAY_ITEM, SF_LEAD):
        result = run(app, "log", "-c", str(config), "--record", record_id, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["record"] == record_id
        assert {(link["flow"], link["source_key"], link["target_id"]) for link in data["links"]} == {
            ("leads", MONDAY_ITEM, SF_LEAD),
            ("leads_back", SF_LEAD, MONDAY_ITEM),
        }
        outcomes = [(e["flow"], e["outcome"]) for e in data["entries"]]
        assert outcomes == [  # newest first, both directions, nothing unrelated
            ("leads_back", "applied"),
            ("leads", "applied"),
            ("leads", "retry"),
            ("leads", "received"),
        ]
        assert data["entries"][0]["at"] == "2024-06-01T09:04:00+00:00"


def test_flow_and_limit_narrow_the_trace(app: typer.Typer, config: Path) -> None:
    result = run(
        app, "log", "-c", str(config), "--record", SF_LEAD, "--flow", "leads", "--limit", "2", "--json"
    )
    data = json.loads(result.stdout)
    assert [link["flow"] for link in data["links"]] == ["leads"]
    assert [(e["flow"], e["outcome"]) for e in data["entries"]] == [("leads", "applied"), ("leads", "retry")]


def test_the_table_shows_links_and_lines_newest_first(app: typer.Typer, config: Path) -> None:
    result = run(app, "log", "-c", str(config), "--record", MONDAY_ITEM)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"Record {MONDAY_ITEM}" in out
    assert f"board {MONDAY_ITEM}" in out and f"sf {SF_LEAD}" in out
    assert "Sync log, newest first" in out
    assert (
        out.index("2024-06-01 09:04:00") < out.index("2024-06-01 09:02:00") < out.index("2024-06-01 09:00:00")
    )
    assert "503 from Salesforce" in out and "board → sf" in out
    assert "unrelated" not in out


def test_without_a_record_the_latest_lines_of_everything(app: typer.Typer, config: Path) -> None:
    result = run(app, "log", "-c", str(config), "--limit", "3")
    assert result.exit_code == 0, result.output
    assert "[REQUIRED_FIELD_MISSING] Name" in result.stdout  # shown as written, not read as markup
    assert "limit reached" in result.stdout
    assert "2024-06-01 09:01:00" not in result.stdout
    data = json.loads(run(app, "log", "-c", str(config), "--flow", "other", "--json").stdout)
    assert [e["record_key"] for e in data["entries"]] == ["unrelated"] and data["links"] == []


def test_an_unknown_record_and_an_empty_log_say_so(app: typer.Typer, config: Path, tmp_path: Path) -> None:
    result = run(app, "log", "-c", str(config), "--record", "nope")
    assert result.exit_code == 0
    assert result.stdout.strip() == "No record 'nope' in the sync log or the links."
    result = run(app, "log", "-c", str(config), "--flow", "ghost")
    assert result.stdout.strip() == "No sync log lines for flow ghost."


def test_a_store_without_tables_is_reported(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "crmsync.yaml"
    path.write_text(f"version: 1\nstore:\n  url: sqlite:///{tmp_path / 'new.db'}\n")
    result = run(app, "log", "-c", str(path))
    assert result.exit_code == 1
    assert "has no crmsync tables" in result.stderr and "crmsync db upgrade" in result.stderr
