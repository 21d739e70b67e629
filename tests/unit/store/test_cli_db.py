from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from crmsync.cli import db
from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.errors import FixTheData
from crmsync.store import Store

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    db.register(app)
    return app


def test_db_upgrade_and_status(app: typer.Typer, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    result = runner.invoke(app, ["db", "status", "--url", url])
    assert result.exit_code == 1 and "crmsync db upgrade" in result.output
    result = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert result.exit_code == 0, result.output
    head = Store(url).head_revision()
    assert f"upgraded from empty to revision {head}" in result.output
    assert "up to date" in runner.invoke(app, ["db", "upgrade", "--url", url]).output
    assert runner.invoke(app, ["db", "status", "--url", url]).exit_code == 0


def test_db_upgrade_reads_the_store_url_from_the_configuration(app: typer.Typer, tmp_path: Path) -> None:
    config = tmp_path / "crmsync.yaml"
    config.write_text(f"store:\n  url: sqlite:///{tmp_path}/from-config.db\n")
    result = runner.invoke(app, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert Store(f"sqlite:///{tmp_path}/from-config.db").is_current()


def test_dead_letters_list_show_replay_discard(app: typer.Typer, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    store = Store(url)
    store.upgrade()
    queue = ChangeQueue(store)
    assert runner.invoke(app, ["dead-letters", "list", "--url", url]).output.strip() == "no dead letters"
    queue.enqueue(
        [NewChange("app", "usage", "u1", "upsert", {"n": 1}), NewChange("app", "usage", "u2", "delete", {})]
    )
    ids = [
        queue.dead(c, FixTheData("INVALID_FIELD: n", vendor_code="INVALID_FIELD")) for c in queue.claim("w")
    ]

    listed = runner.invoke(app, ["dead-letters", "list", "--url", url])
    assert listed.exit_code == 0 and "INVALID_FIELD: n" in listed.output and "u1" in listed.output
    shown = runner.invoke(app, ["dead-letters", "show", str(ids[0]), "--url", url])
    assert json.loads(shown.output)["fields"] == {"n": 1}
    assert runner.invoke(app, ["dead-letters", "show", "999", "--url", url]).exit_code == 1

    replayed = runner.invoke(app, ["dead-letters", "replay", str(ids[0]), "--url", url])
    assert replayed.exit_code == 0 and "replayed 1 of 1" in replayed.output
    assert [c.record_key for c in queue.claim("w")] == ["u1"]
    assert runner.invoke(app, ["dead-letters", "replay", str(ids[0]), "--url", url]).exit_code == 1

    discarded = runner.invoke(app, ["dead-letters", "discard", str(ids[1]), "--url", url])
    assert discarded.exit_code == 0 and "discarded 1 of 1" in discarded.output
    lines = runner.invoke(app, ["dead-letters", "list", "--json", "--url", url]).output.splitlines()
    assert [json.loads(line)["state"] for line in lines] == ["replayed"]
    lines = runner.invoke(app, ["dead-letters", "list", "--all", "--json", "--url", url]).output.splitlines()
    assert [json.loads(line)["state"] for line in lines] == ["discarded", "replayed"]
    store.dispose()


def test_a_discard_keeps_its_reason_and_list_filters_by_text(app: typer.Typer, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    store = Store(url)
    store.upgrade()
    queue = ChangeQueue(store)
    queue.enqueue(
        [NewChange("app", "usage", "u1", "upsert", {"n": 1}), NewChange("app", "usage", "u2", "upsert", {})]
    )
    claimed = queue.claim("w")
    queue.dead(claimed[0], FixTheData("STRING_TOO_LONG: product", vendor_code="STRING_TOO_LONG"))
    queue.dead(claimed[1], FixTheData("INVALID_FIELD: n", vendor_code="INVALID_FIELD"))
    found = runner.invoke(app, ["dead-letters", "list", "--json", "--search", "too_long", "--url", url])
    assert [json.loads(line)["record_key"] for line in found.output.splitlines()] == ["u1"]
    done = runner.invoke(
        app, ["dead-letters", "discard", "1", "--reason", "the ad was withdrawn", "--url", url]
    )
    assert done.exit_code == 0, done.output
    shown = json.loads(runner.invoke(app, ["dead-letters", "show", "1", "--url", url]).output)
    assert (shown["state"], shown["discard_reason"]) == ("discarded", "the ad was withdrawn")
    store.dispose()
