"""A store that is down, read-only or full is one line naming it (password hidden) and what to check."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmsync.cli.main import app
from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.errors import FixTheData
from crmsync.store import Store

runner = CliRunner()
DOWN = "postgresql+psycopg://postgres:SECRET-pw@127.0.0.1:1/x"
SHOWN = "postgresql+psycopg://postgres:********@127.0.0.1:1/x"


@pytest.fixture
def down_config(tmp_path: Path) -> Path:
    path = tmp_path / "crmsync.yaml"
    path.write_text(f"version: 1\nstore:\n  url: {DOWN}\n")
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["db", "upgrade"],
        ["db", "status"],
        ["token", "create", "app"],
        ["token", "list"],
        ["dead-letters", "list"],
        ["log"],
    ],
    ids=" ".join,
)
def test_a_store_that_is_down_is_one_line_naming_it(args: list[str], down_config: Path) -> None:
    result = runner.invoke(app, [*args, "-c", str(down_config)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"the store {SHOWN} cannot be reached" in lines[0]
    assert "is the database server running" in lines[0]
    assert "SECRET-pw" not in result.output + result.stderr


def test_db_upgrade_with_a_url_names_the_store_too() -> None:
    result = runner.invoke(app, ["db", "upgrade", "--url", DOWN])
    assert result.exit_code == 1
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert SHOWN in result.stderr and "SECRET-pw" not in result.stderr


def test_a_read_only_store_is_reported_as_read_only(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    store.dispose()
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    result = runner.invoke(app, ["dead-letters", "discard", "1", "--url", url])
    assert result.exit_code == 1
    assert "is read-only" in result.stderr and "cannot be reached" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dead_letters_list_escapes_control_characters_of_keys_and_messages(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    store = Store(url)
    store.upgrade()
    queue = ChangeQueue(store)
    queue.enqueue([NewChange("app", "usage", "evil\x1b[2J\rkey\u202e", "upsert", {"n": 1})])
    for claimed in queue.claim("w"):
        queue.dead(claimed, FixTheData("bad\nvalue\x07"))
    store.dispose()
    result = runner.invoke(app, ["dead-letters", "list", "--url", url])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\r" not in result.stdout and "\u202e" not in result.stdout
    assert "\x07" not in result.stdout and len(result.stdout.strip().splitlines()) == 1
    assert r"evil\x1b[2J\rkey\u202e" in result.stdout and r"bad\nvalue\x07" in result.stdout
